"""Advisory locks (flock) on files and folders: shared or exclusive, released by the kernel when the holder closes
them or dies, so a killed process never leaves a lock behind.

Where the file system has no flock (some network mounts), locking does nothing: the holder goes on as if it held the
lock, and ``is_locked`` reports nothing locked.
"""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)


class Lock:
    """An flock on one open file or folder, held together with others (shared) or alone (exclusive) until closed."""

    def __init__(self, fd: int, path: str | os.PathLike) -> None:
        self.fd = fd
        self.path = Path(path)
        self.supported = True  # False once the file system refused flock: nothing is locked then
        self.held: str | None = None  # "shared", "exclusive" or None

    @classmethod
    def open(cls, path: str | os.PathLike) -> Lock:
        """A lock on ``path`` (a file or a folder), not yet taken."""
        return cls(os.open(path, os.O_RDONLY), path)

    def __enter__(self) -> Lock:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the lock with its descriptor (once: closing again does nothing)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        self.held = None

    def shared(self) -> None:
        """Hold ``path`` together with other shared holders; waits while someone holds it exclusively."""
        self._flock(fcntl.LOCK_SH)
        self.held = "shared"

    def exclusive(self, wait: bool = False) -> bool:
        """Hold ``path`` alone. Without ``wait``: False when someone else holds it, and a shared lock held before is
        taken again (flock converts by unlocking first, so a failed conversion drops it)."""
        try:
            self._flock(fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if self.held == "shared":
                self.shared()
            return False
        self.held = "exclusive"
        return True

    def _flock(self, operation: int) -> None:
        if not self.supported:
            return
        try:
            fcntl.flock(self.fd, operation)
        except BlockingIOError:
            raise
        except OSError as err:  # ENOLCK, EOPNOTSUPP: no locks on this file system
            logger.debug("no flock on %s (%s); going on without a lock", self.path, err)
            self.supported = False


def is_locked(path: str | os.PathLike) -> bool:
    """Whether some open file, of any process (this one included), holds ``path`` exclusively.

    False where that cannot be told: no flock on its file system, or ``path`` cannot be opened.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # released by the close below
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
    return False
