"""The training progress line: its estimate of the time left, the validation headline and the best so far,
on a scripted clock and in a real `edflow` run."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from tensorboard_events import summary_values

from conftest import BIN, REPO
from cubepose.training.progress import TrainingProgress, format_duration


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def metrics(share: float, add_cm: float) -> dict:
    return {
        "translation_error_cm_mean": 2.0,
        "rotation_error_deg_mean": 3.0,
        "accuracy_5cm_5deg": share,
        "add_cm_mean": add_cm,
    }


def run_epoch(progress: TrainingProgress, clock: Clock, first: int, steps: int, step_seconds: float) -> list[str]:
    """``steps`` training steps of ``step_seconds`` each from global step ``first``; the lines said."""
    lines = []
    for step in range(first, first + steps):
        clock.now += step_seconds
        line = progress.step_done(step)
        lines += [line] if line else []
    return lines


def test_the_estimate_counts_the_steps_and_the_evaluations_left():
    clock = Clock()
    progress = TrainingProgress(40, 10, images_per_step=8, every=5, validation_images=30, clock=clock)
    progress.start(0)
    lines = run_epoch(progress, clock, 0, 10, 0.5)
    assert [line.split(" |")[0] for line in lines] == ["step 5/40 (12%)", "step 10/40 (25%)"]
    # before any evaluation: 30 steps of 0.5 s and 4 evaluations guessed at 30 images / 8 x 0.5 s / 3
    assert progress.seconds_left() == pytest.approx(30 * 0.5 + 4 * 30 / 8 * 0.5 / 3)
    assert progress.images_per_second() == pytest.approx(16.0)
    progress.epoch_ended()
    clock.now += 9.0  # the first evaluation: one-off costs
    line = progress.evaluated(10, metrics(0.25, 4.0))
    assert "validation at step 10: mean error 2.00 cm and 3.00 deg, 25.0 % within 5 cm and 5 deg" in line
    run_epoch(progress, clock, 10, 10, 0.5)
    assert progress.seconds_left() == pytest.approx(20 * 0.5 + 3 * 9.0)  # the only evaluation seen so far
    progress.epoch_ended()
    clock.now += 3.0
    progress.evaluated(20, metrics(0.20, 3.0))
    run_epoch(progress, clock, 20, 10, 0.5)
    assert progress.seconds_left() == pytest.approx(10 * 0.5 + 2 * 3.0)  # the first, warm-up one dropped
    assert "best: 25.0 % within 5 cm and 5 deg at step 10" in progress.line()
    progress.epoch_ended()
    progress.evaluated(30, metrics(0.25, 2.0))  # as good within 5 cm 5 deg, lower ADD: the new best
    assert progress.best.step == 30 and progress.evaluations_left() == 1
    assert set(progress.scalars()) == {"images_per_second", "elapsed_minutes", "minutes_left", "best_accuracy_5cm_5deg"}


def test_a_resumed_run_counts_from_its_restart_and_a_null_frequency_says_nothing_between_evaluations():
    clock = Clock()
    progress = TrainingProgress(40, 10, images_per_step=8, every=None, clock=clock)
    progress.start(25)
    assert run_epoch(progress, clock, 25, 5, 1.0) == []
    assert progress.evaluations_left() == 2  # the ends of epochs 3 and 4
    assert progress.seconds_left() == pytest.approx(10 * 1.0)
    assert progress.line().startswith("step 30/40 (75%) | 8.0 images/s | elapsed 5.0s | left ~")


@pytest.mark.parametrize(
    ("seconds", "text"), [(4.26, "4.3s"), (75, "1m15s"), (3723, "1h02m"), (float("nan"), "?"), (-1, "0.0s")]
)
def test_durations_read_as_a_person_writes_them(seconds, text):
    assert format_duration(seconds) == text


def _scalar_tags(run: Path) -> set[str]:
    """Every scalar tag in a run's TensorBoard event files."""
    return {value.tag for value in summary_values(run) if value.HasField("simple_value")}


@pytest.mark.alone  # its own timing: under other tests' load, its first half runs slower than its second
def test_a_real_run_estimates_at_half_way_the_time_it_then_takes(tiny_data, tmp_path):
    """eval/progress.py on the real `edflow`: 48 steps, 8 epochs of 6 steps over the 48 training images, an
    evaluation after each."""
    overrides = ["--network/image_size", "32", "--batch_size", "8", "--n_data_processes", "1", "--log_freq", "100"]
    overrides += ["--test_batch_size", "8"]
    for split, root in tiny_data.items():
        overrides += [f"--data/{split}/root", str(root)]
    configs = [str(REPO / "configs" / name) for name in ("base.yaml", "cpu.yaml")]
    flags = ["--steps", "48", "--epoch-steps", "6", "--every", "4", "--work", str(tmp_path), "--keep"]
    result = subprocess.run(
        [str(BIN / "python"), str(REPO / "eval" / "progress.py"), *flags, "--", "-b", *configs, *overrides],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    table = [line.strip("|").split("|") for line in result.stdout.splitlines() if re.match(r"\| \d+ \|", line)]
    rows = {int(cells[0]): [float(cell) for cell in cells[1:]] for cells in table}
    rate, estimated, actual, ratio = rows[24]  # half-way, said before that epoch's evaluation
    assert abs(ratio - 1) <= 0.25, f"estimated {estimated:.1f} s left at half-way, took {actual:.1f} s"
    assert sorted(rows) == [4, 12, 24, 36] and rate > 0
    last = result.stdout.splitlines()[-1]
    assert last.startswith("last line: step 48/48 (100%)") and "validation at step 48: mean error" in last
    assert "best: " in last
    (run,) = (tmp_path / "logs").glob("*_progress_estimate")
    assert {"progress/images_per_second", "progress/minutes_left", "progress/elapsed_minutes"} <= _scalar_tags(run)
