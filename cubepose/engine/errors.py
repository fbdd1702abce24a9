"""One clean message for a CubeposeError under ``edflow`` / ``edeval``, and no empty run folder.

edflow creates ``logs/<timestamp>_<name>/`` before cubepose checks the config or opens the data,
and lets every exception reach Python's default hook, which prints a traceback through edflow's
internals that a user cannot act on. ``install_error_handler()`` (called when cubepose's edflow
entry modules are imported, and only when the running program is edflow or edeval) sets a
``sys.excepthook`` that, for a CubeposeError, writes ``error: <message>`` to stderr, removes what
edflow created for this run if it holds nothing of value, and lets Python exit with status 1.
Any other exception goes to the previous hook unchanged, traceback included.

edflow's batches are fetched on helper threads (chainer's prefetch loop, fed by worker
processes). A CubeposeError there (an image that cannot be decoded mid-training) used to print
two tracebacks and leave the main thread waiting for a batch forever. The thread hook records the
error and signals the main thread (SIGUSR1), whose handler raises it there: edflow's exception
path runs (its checkpoint of the current, finite state included) and the error ends the run as
the same one line.

What counts as value: a checkpoint, evaluation outputs (``model_outputs``, ``metrics.json``,
reports) or logged training steps (``train/<split>/log_op`` images). A new run without any is
removed whole; for a run given with ``-p`` only the evaluation folder edflow made for this
invocation is removed, never the run.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
import threading
from pathlib import Path
from types import FrameType, TracebackType

from cubepose.errors import CubeposeError
from cubepose.training.distributed import launched_ranks

logger = logging.getLogger(__name__)

EDFLOW_PROGRAMS = ("edflow", "edeval")
LOG_FILE = "log.txt"  # edflow's log of each folder: not worth keeping on its own
RELAY_SIGNAL = getattr(signal, "SIGUSR1", None)  # carries a helper thread's error to the main thread (POSIX)

_thread_errors: list[CubeposeError] = []  # CubeposeErrors raised on helper threads, oldest first


def install_error_handler() -> None:
    """Install the CubeposeError hook once, when this process is the edflow or edeval command.

    In any other program (pytest, the ``cubepose`` CLI, a notebook) the hook stays untouched, so
    errors keep their tracebacks where a developer wants them.
    """
    if os.path.basename(sys.argv[0]) not in EDFLOW_PROGRAMS or getattr(sys.excepthook, "cubepose", False):
        return
    previous = sys.excepthook

    def hook(kind: type[BaseException], error: BaseException, trace: TracebackType | None) -> None:
        if not isinstance(error, CubeposeError) and _thread_errors:
            error = _thread_errors[0]  # what the main thread raised is a consequence of the helper's error
        if isinstance(error, CubeposeError):
            report_error(error)
        else:
            previous(kind, error, trace)

    hook.cubepose = True  # marks the hook as installed
    sys.excepthook = hook
    _install_thread_relay()


def _install_thread_relay() -> None:
    """Route a CubeposeError raised on a helper thread to the main thread (see the module docstring).

    Only from the main thread (signal handlers can only be set there) and only where SIGUSR1 is
    free; elsewhere helper-thread errors keep Python's default handling.
    """
    relay_free = RELAY_SIGNAL is not None and signal.getsignal(RELAY_SIGNAL) == signal.SIG_DFL
    if threading.current_thread() is not threading.main_thread() or not relay_free:
        return
    signal.signal(RELAY_SIGNAL, _raise_thread_error)
    previous = threading.excepthook

    def thread_hook(args: threading.ExceptHookArgs) -> None:
        if isinstance(args.exc_value, CubeposeError):
            _thread_errors.append(args.exc_value)
            signal.pthread_kill(threading.main_thread().ident, RELAY_SIGNAL)
        else:
            previous(args)

    threading.excepthook = thread_hook


def _raise_thread_error(signum: int, frame: FrameType | None) -> None:
    """The relay signal's handler: raise the helper thread's error in the main thread."""
    if _thread_errors:
        raise _thread_errors[0]


def report_error(error: CubeposeError) -> None:
    """Write ``error: <message>`` to stderr and remove this run's folder if it holds nothing of value. An error
    every torchrun rank raises together (``reported_by_rank_zero``) is written by rank 0 alone."""
    if not (getattr(error, "reported_by_rank_zero", False) and launched_ranks().rank != 0):
        _error_stream().error("%s", error)
    removed = remove_valueless_run_folder()
    if removed is not None:
        logger.info("removed %s: it held no checkpoint and no evaluation outputs", removed)


def _error_stream() -> logging.Logger:
    """A logger that writes bare ``error: ...`` lines to stderr, apart from edflow's handlers."""
    stream = logging.getLogger("cubepose.error")
    if not stream.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("error: %(message)s"))
        stream.addHandler(handler)
        stream.propagate = False
    return stream


def remove_valueless_run_folder() -> Path | None:
    """Remove what edflow created for this invocation if it holds nothing of value; return what was removed.

    A new run (no ``-p``) is its whole folder; a run given with ``-p`` (edflow's ``run.resumed``)
    only gets a new ``eval/<timestamp>/`` folder, which is all that may go.
    """
    from edflow.custom_logging import run

    if not getattr(run, "exists", False):  # edeval, or an error before edflow set a run up
        return None
    folder = Path(run.latest_eval) if run.resumed else Path(run.root)
    if not folder.is_dir() or holds_value(folder):
        return None
    shutil.rmtree(folder, ignore_errors=True)
    return folder


def holds_value(folder: Path) -> bool:
    """Whether a run or evaluation folder holds a checkpoint, evaluation outputs or logged training steps.

    edflow itself only writes ``log.txt`` files, ``configs/``, ``code/`` and TensorBoard event files
    (the config summary) before the first step; none of those is worth a folder on its own.
    """
    if any(folder.glob("train/checkpoints/*.ckpt")):
        return True
    logged = [folder / "train"] if (folder / "train").is_dir() else []
    evaluated = [folder / "eval"] if (folder / "eval").is_dir() else [folder]
    for place in logged + evaluated:
        for path in place.rglob("*"):
            if path.is_file() and path.name != LOG_FILE and "checkpoints" not in path.relative_to(place).parts:
                return True
    return False
