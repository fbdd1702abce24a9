"""The benchmark scripts under eval/ run and print their table."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO


def test_train_speed_prints_a_table_with_a_row_per_config():
    result = subprocess.run(
        [sys.executable, str(REPO / "eval" / "train_speed.py"), "configs/cpu.yaml", "--steps", "1", "--repeats", "1"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    row = [line for line in result.stdout.splitlines() if line.startswith("| configs/cpu.yaml")]
    assert len(row) == 1 and "| small_cnn | 64 | 32 |" in row[0]
    assert float(row[0].split("|")[5]) > 0
