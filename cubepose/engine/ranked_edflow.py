"""`edflow` as one rank of a torchrun job: ``torchrun --nproc_per_node N -m cubepose.engine.ranked_edflow <edflow
arguments>`` runs the same `edflow` command in every rank.

edflow names a new run folder (and each evaluation folder) by the second it starts, so ranks started together
would make the same folder and the second would fail; every rank but 0 therefore runs with its ``-n`` name
suffixed ``.rank<R>``, and the Iterator removes that folder once it knows rank 0's
(cubepose.training.distributed.shared_run_folder). Rank 0 runs the command as given.

When torchrun restarts the ranks (``--max-restarts``, after one failed), a training command that names no run
(``-p``) resumes the newest run of its name that holds a checkpoint, in the folder the ranks share: the job goes
on from its last checkpoint instead of starting again.
"""

from __future__ import annotations

import logging
import os
import runpy
import shutil
import sys
from pathlib import Path

from cubepose.errors import ConfigError
from cubepose.training.distributed import launched_ranks

NAME_OPTIONS = ("-n", "--name")
PROJECT_OPTIONS = ("-p", "--project")
TRAIN_OPTIONS = ("-t", "--train")
logger = logging.getLogger(__name__)


def ranked_arguments(arguments: list[str], rank: int) -> list[str]:
    """``arguments`` of `edflow` with the run's name suffixed ``.rank<rank>`` (rank 0: as they are)."""
    if rank == 0:
        return list(arguments)
    suffix = f"rank{rank}"
    for position, argument in enumerate(arguments):
        if argument in NAME_OPTIONS and position + 1 < len(arguments):
            return [*arguments[: position + 1], f"{arguments[position + 1]}.{suffix}", *arguments[position + 2 :]]
        for option in NAME_OPTIONS:
            if argument.startswith(f"{option}="):
                return [*arguments[:position], f"{argument}.{suffix}", *arguments[position + 1 :]]
    return [*arguments, "-n", suffix]


def option_value(arguments: list[str], names: tuple[str, ...]) -> str | None:
    """The value of the first of ``names`` in ``arguments`` (``-n x`` or ``--name=x``), or None."""
    for position, argument in enumerate(arguments):
        if argument in names and position + 1 < len(arguments):
            return arguments[position + 1]
        for name in names:
            if argument.startswith(f"{name}="):
                return argument.split("=", 1)[1]
    return None


def latest_run(name: str | None, logs: Path = Path("logs")) -> Path | None:
    """The newest run folder ``logs/<time>_<name>`` (any name when None) that holds a checkpoint."""
    pattern = f"*_{name}" if name else "*"
    runs = [run for run in logs.glob(pattern) if run.is_dir() and any(run.glob("train/checkpoints/model-*.ckpt"))]
    return max(runs, key=lambda run: run.name, default=None)


def restarted_arguments(arguments: list[str], restart: int) -> list[str]:
    """On torchrun's ``restart`` > 0, a training command without ``-p`` resumes the newest run of its name."""
    if restart == 0 or not any(a in TRAIN_OPTIONS for a in arguments) or option_value(arguments, PROJECT_OPTIONS):
        return list(arguments)
    run = latest_run(option_value(arguments, NAME_OPTIONS))
    if run is None:
        return list(arguments)
    logger.warning("restart %d of the torchrun job: resuming %s from its last checkpoint", restart, run)
    return [*arguments, "-p", str(run)]


def edflow_script() -> str:
    """The `edflow` command of this environment."""
    found = Path(sys.executable).parent / "edflow"
    script = str(found) if found.exists() else shutil.which("edflow")
    if script is None:
        raise ConfigError("no edflow command in this environment; install cubepose's requirements (make setup)")
    return script


def main() -> None:
    script = edflow_script()
    arguments = restarted_arguments(sys.argv[1:], int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0))
    sys.argv = [script, *ranked_arguments(arguments, launched_ranks().rank)]
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
