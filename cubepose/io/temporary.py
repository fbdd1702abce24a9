"""Names of temporary files and folders, and the removal of those a killed writer left (orphans).

Whatever is written in place of a file or folder (an atomic write, a download, an image cache build, a zip
extraction) is first written to ``.<name>.<pid>-<random>.tmp`` beside it, then renamed onto ``<name>``. The name
records the writing process, and ``temporary_beside`` holds an exclusive flock on it while it is written. A
temporary is an orphan when its process is gone here and no one holds it locked: the lock covers what the pid
cannot (a writer in another container sharing the folder, whose pid means nothing here), the pid covers the moment
between creating and locking it, and writers that cannot lock (no flock on the file system, a library opening it).

Names an older cubepose left are recognised too: ``.<name>.partial-<pid>-<random>`` (downloads, the image cache),
``.<name>.extracting-<pid>-<random>`` (zip extractions) and ``.<name>.<random>.tmp`` (atomic writes). The last
record no process, so they are orphans only where the caller holds the folder alone (``alone=True``).
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cubepose.io.locks import Lock, is_locked

logger = logging.getLogger(__name__)

SUFFIX = ".tmp"
NAME_ATTEMPTS = 100  # fresh random names tried before giving up (a clash of 32 random bits is already rare)
_PATTERNS = (  # the current name first: it also matches the older atomic one
    re.compile(r"\.(?P<target>.+)\.(?P<pid>\d+)-[0-9a-f]+\.tmp"),
    re.compile(r"\.(?P<target>.+)\.(?:partial|extracting)-(?P<pid>\d+)-[^./]+"),
    re.compile(r"\.(?P<target>.+?)(?:\.[^.]*)?\.tmp"),  # mkstemp's, without a pid
)


@dataclass(frozen=True)
class TemporaryName:
    """What a temporary's name says: the name it will be renamed to and the process writing it (None: unknown)."""

    target: str
    pid: int | None


def parse_temporary(name: str) -> TemporaryName | None:
    """The target and writer that a file name records, or None when it is not a temporary's name."""
    for pattern in _PATTERNS:
        if match := pattern.fullmatch(name):
            pid = match.groupdict().get("pid")
            return TemporaryName(match["target"], int(pid) if pid else None)
    return None


def is_temporary(name: str) -> bool:
    """Whether a file or folder name is a temporary's (of this or an older cubepose): never a finished file."""
    return parse_temporary(name) is not None


def temporary_path(target: Path) -> Path:
    """A fresh temporary name beside ``target`` naming this process, for writers that create the file themselves."""
    return target.with_name(f".{target.name}.{os.getpid()}-{secrets.token_hex(4)}{SUFFIX}")


@contextmanager
def temporary_beside(target: Path, folder: bool = False) -> Iterator[Path]:
    """A new temporary file (or folder) beside ``target``, locked while the block runs, removed after it unless the
    block renamed it onto ``target``. Its permissions are a plain open()'s (mkdir()'s): 0666 (0777) minus the umask.
    """
    path, fd = _create(Path(target), folder)
    lock = Lock(fd, path)
    try:
        lock.exclusive(wait=True)  # waits only while a probe of is_orphan holds it for an instant
        yield path
    finally:
        _remove(path)
        lock.close()


def _create(target: Path, folder: bool) -> tuple[Path, int]:
    """Create a temporary beside ``target`` that did not exist; return it and a descriptor open on it."""
    for _ in range(NAME_ATTEMPTS):
        path = temporary_path(target)
        try:
            if folder:
                path.mkdir(0o777)
                return path, os.open(path, os.O_RDONLY | os.O_DIRECTORY)
            return path, os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
    raise FileExistsError(f"found no free temporary name beside {target} in {NAME_ATTEMPTS} tries")


def is_orphan(path: Path, alone: bool = False) -> bool:
    """Whether ``path`` is a temporary that its writer left: the process it names is gone and no one holds it locked.

    ``alone``: the caller holds the folder alone (no other process writes there), so a temporary that names no
    process (an older cubepose's ``.<name>.<random>.tmp``) counts as left too.
    """
    name = parse_temporary(path.name)
    if name is None:
        return False
    writer_gone = alone if name.pid is None else not _pid_alive(name.pid)
    return writer_gone and not is_locked(path)


def remove_orphans(folder: Path, name: str | None = None, *, alone: bool = False) -> int:
    """Remove the orphaned temporaries in ``folder`` (only those of ``name``, when given); return how many.

    ``alone`` as for ``is_orphan``. A folder that does not exist holds none.
    """
    try:
        names = os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return 0
    return _remove_orphans_among(Path(folder), names, name, alone)


def remove_orphans_under(folder: Path, *, alone: bool = False) -> int:
    """Remove the orphaned temporaries in ``folder`` and every folder below it; return how many.

    A temporary folder is one temporary: removed whole or kept whole, never searched.
    """
    removed = 0
    for parent, folders, files in os.walk(folder):
        removed += _remove_orphans_among(Path(parent), folders + files, None, alone)
        folders[:] = [sub for sub in folders if not is_temporary(sub)]
    return removed


def _remove_orphans_among(folder: Path, names: list[str], target: str | None, alone: bool) -> int:
    removed = 0
    for name in names:
        parsed = parse_temporary(name)
        if parsed and target in (None, parsed.target) and is_orphan(folder / name, alone):
            logger.info("removing %s, left by an interrupted write", folder / name)
            _remove(folder / name)
            removed += 1
    return removed


def _remove(path: Path) -> None:
    """Delete a temporary file or folder, if it is still there."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine."""
    if pid <= 0:
        return False  # 0 and negative ids signal process groups, never one writer
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by another user
        return True
    except OverflowError:  # no process has such an id
        return False
    return True
