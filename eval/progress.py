"""How right the training progress line's estimate of the time left is, on a real `edflow` run.

    .venv/bin/python eval/progress.py --steps 600 --epoch-steps 100 -- \
        -b configs/base.yaml configs/cpu.yaml configs/zoom_cpu.yaml --data/validation/sample_size 300

Trains with the real `edflow` command (what users run; arguments after ``--`` name the configs and any
overrides) for ``--steps`` steps in epochs cut to ``--epoch-steps`` steps (edflow's ``max_batches_per_epoch``),
so the run holds several evaluations, a progress line every ``--every`` steps. Then reads the run's output and,
at each line said before an evaluation, compares the estimated time left with the time the run then took (to its last
line, after the final evaluation): the table of estimates at 10, 25, 50 and 75% of the steps and the median
ratio estimated / actual over all lines, and the run's last line. edflow runs in ``--work`` (default: the
repository, where the configs' relative data roots are) and the run folder is removed unless ``--keep``.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EDFLOW = REPO / ".venv" / "bin" / "edflow"
LINE = re.compile(r"step (\d+)/(\d+) \(\d+%\) \| ([\d.]+) images/s \| elapsed (\S+) \| left ~(\S+)")


def seconds(text: str) -> float:
    """A progress line's duration ('1h02m', '3m05s', '42.5s') in seconds."""
    hours, minutes, rest = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:([\d.]+)s)?", text).groups()
    return 3600 * int(hours or 0) + 60 * int(minutes or 0) + float(rest or 0)


def run(steps: int, epoch_steps: int, every: int, arguments: list[str], work: Path, keep: bool) -> str:
    """Train with edflow in ``work``; the run's console output (its run folder removed unless ``keep``)."""
    before = set((work / "logs").glob("*_progress_estimate"))
    # edflow turns num_steps into epochs of the whole split, which max_batches_per_epoch then shortens: the run's
    # length is set in epochs of epoch_steps instead (configs that set num_steps must not be given)
    epochs = -(-steps // epoch_steps)
    command = [str(EDFLOW), "-n", "progress_estimate", "-t", *arguments, "--num_epochs", str(epochs)]
    command += ["--max_batches_per_epoch", str(epoch_steps), "--progress_freq", str(every)]
    result = subprocess.run(command, cwd=work, capture_output=True, text=True, check=False)
    for folder in set((work / "logs").glob("*_progress_estimate")) - before:
        if not keep:
            shutil.rmtree(folder)
    if result.returncode != 0:
        raise SystemExit(f"edflow failed:\n{result.stderr[-3000:]}")
    return result.stdout + result.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--epoch-steps", type=int, default=100)
    parser.add_argument("--every", type=int, default=20)
    parser.add_argument("--work", type=Path, default=REPO, help="the folder edflow runs in")
    parser.add_argument("--keep", action="store_true", help="keep the run folder (logs/<ts>_progress_estimate)")
    parser.add_argument("edflow", nargs=argparse.REMAINDER, help="after --: configs and overrides for edflow")
    options = parser.parse_args()
    # config files named from here stay found when edflow runs in --work
    arguments = [str(Path(a).resolve()) if Path(a).is_file() else a for a in options.edflow if a != "--"]
    output = run(options.steps, options.epoch_steps, options.every, arguments, options.work, options.keep)
    lines = [(int(m[1]), float(m[3]), seconds(m[4]), seconds(m[5])) for m in LINE.finditer(output)]
    total = int(LINE.search(output)[2])
    if total != options.steps:
        raise SystemExit(f"the run had {total} steps, not {options.steps}: do the configs set num_steps?")
    end = lines[-1][2]
    before_evaluation = {}
    for step, rate, elapsed, left in lines:  # the first line at a step: said before that step's evaluation
        before_evaluation.setdefault(step, (rate, elapsed, left))
    rows = [(step, rate, left, end - elapsed) for step, (rate, elapsed, left) in before_evaluation.items()]
    rows = [row for row in rows if row[0] < options.steps and row[3] > 0]
    print(f"{options.steps} steps in {end:.1f} s, an evaluation every {options.epoch_steps} steps")
    print("| step | images/s | estimated left (s) | actual left (s) | estimated / actual |")
    print("|---|---|---|---|---|")
    for share in (0.10, 0.25, 0.50, 0.75):
        step, rate, left, actual = min(rows, key=lambda row: abs(row[0] - share * options.steps))
        print(f"| {step} | {rate:.1f} | {left:.1f} | {actual:.1f} | {left / actual:.2f} |")
    ratios = [left / actual for _, _, left, actual in rows]
    within = sum(abs(ratio - 1) <= 0.25 for ratio in ratios)
    print(f"median ratio over {len(ratios)} lines: {statistics.median(ratios):.2f}; within 25%: {within}")
    print("last line:", [line for line in output.splitlines() if LINE.search(line)][-1].split("]: ", 1)[-1])


if __name__ == "__main__":
    main()
