"""`edflow` as one rank of a torchrun job: ``torchrun --nproc_per_node N -m cubepose.engine.ranked_edflow <edflow
arguments>`` runs the same `edflow` command in every rank.

edflow names a new run folder (and each evaluation folder) by the second it starts, so ranks started together
would make the same folder and the second would fail; every rank but 0 therefore runs with its ``-n`` name
suffixed ``.rank<R>``, and the Iterator removes that folder once it knows rank 0's
(cubepose.training.distributed.share_run_folder). Rank 0 runs the command as given.
"""

from __future__ import annotations

import runpy
import shutil
import sys
from pathlib import Path

from cubepose.errors import ConfigError
from cubepose.training.distributed import launched_ranks

NAME_OPTIONS = ("-n", "--name")


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


def edflow_script() -> str:
    """The `edflow` command of this environment."""
    found = Path(sys.executable).parent / "edflow"
    script = str(found) if found.exists() else shutil.which("edflow")
    if script is None:
        raise ConfigError("no edflow command in this environment; install cubepose's requirements (make setup)")
    return script


def main() -> None:
    script = edflow_script()
    sys.argv = [script, *ranked_arguments(sys.argv[1:], launched_ranks().rank)]
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
