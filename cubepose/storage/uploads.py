"""Copies of local files at a remote prefix (gs://, s3://) or in a folder, made on a background thread.

Training goes on while a checkpoint uploads. Each upload is tried ``attempts`` times with
doubling pauses; a failure is logged with the command that finishes the job by hand, and
the local file is never touched.
"""

from __future__ import annotations

import logging
import shutil
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from cubepose.io.atomic import atomic_open
from cubepose.storage.backends import Operation, backend_for

logger = logging.getLogger(__name__)


class Uploader:
    """Uploads files to ``destination`` (gs:// or s3://bucket/prefix, or a local folder), one at a time, in order."""

    def __init__(self, destination: str, attempts: int = 3, backoff: float = 2.0) -> None:
        self.backend = backend_for(destination)
        self.backend.require(Operation.UPLOAD_FILE, destination)
        if self.backend.remote:
            self.backend.module().parse_url(destination)  # names a bucket
        self.destination = destination.rstrip("/")
        self.attempts = max(1, attempts)
        self.backoff = backoff
        self.failed: list[tuple[Path, str]] = []
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cubepose-upload")
        self._pending: list[Future] = []

    def target(self, name: str) -> str:
        """Where a file called ``name`` goes."""
        return f"{self.destination}/{name}" if self.backend.remote else str(Path(self.destination) / name)

    def submit(self, local: str | Path, name: str | None = None) -> Future:
        """Queue ``local`` for upload as ``name`` (its own name by default); returns a future of success."""
        local = Path(local)
        future = self._pool.submit(self._upload, local, self.target(name or local.name))
        self._pending.append(future)
        return future

    def close(self) -> None:
        """Wait for every queued upload to finish (or fail and be reported)."""
        for future in self._pending:
            future.result()
        self._pending.clear()
        self._pool.shutdown(wait=True)

    def _upload(self, local: Path, target: str) -> bool:
        for attempt in range(1, self.attempts + 1):
            try:
                self._copy(local, target)
            except Exception as err:  # noqa: BLE001 - a background failure must be reported, whatever it is
                if attempt == self.attempts:
                    self.failed.append((local, target))
                    logger.error(
                        "upload of %s to %s failed after %d attempts (%s); the local copy is kept. "
                        "Copy it yourself once the cause is fixed: %s",
                        local,
                        target,
                        attempt,
                        err,
                        _copy_command(local, target),
                    )
                    return False
                pause = self.backoff * 2 ** (attempt - 1)
                logger.warning(
                    "upload of %s to %s failed (%s); attempt %d of %d in %.1f s",
                    local,
                    target,
                    err,
                    attempt + 1,
                    self.attempts,
                    pause,
                )
                time.sleep(pause)
            else:
                logger.info("uploaded %s to %s", local, target)
                return True
        return False

    @staticmethod
    def _copy(local: Path, target: str) -> None:
        backend = backend_for(target)
        if backend.remote:
            backend.module().upload_file(local, target)
            return
        with open(local, "rb") as source, atomic_open(target, "wb") as destination:
            shutil.copyfileobj(source, destination)


def _copy_command(local: Path, target: str) -> str:
    backend = backend_for(target)
    return backend.module().copy_command(local, target) if backend.remote else f"cp {local} {target}"
