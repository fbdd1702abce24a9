"""Which storage backend a location string names: a local path, gs://, s3:// or http(s)://.

The one place that reads URL schemes: every module asks :func:`backend_for` (or the thin
``is_*`` predicates below) instead of testing prefixes, and a remote backend's transfers are the
functions of its module (``Backend.module``), so a new scheme is one entry here and one module:
``parse_url``, ``download`` (an object, or a prefix ending in ``/``, into the cache) and, unless
read-only, ``upload_file``, ``upload_folder`` (changed files only), ``exists`` and ``copy_command``.
"""

from __future__ import annotations

import importlib
import os
import re
from dataclasses import dataclass
from enum import Enum
from types import ModuleType

from cubepose.errors import StorageError

# ``<scheme>://``: two characters at least, so that a Windows drive (``C:``) is never a scheme.
SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]+)://")


class Operation(Enum):
    """What a caller asks of a location."""

    DOWNLOAD_FILE = "download a file"
    DOWNLOAD_FOLDER = "download a folder"
    UPLOAD_FILE = "upload a file"
    UPLOAD_FOLDER = "upload a folder"


UPLOAD_FORMS = "gs://bucket/prefix, s3://bucket/prefix or a local folder"
# How a refusal reads: "cannot <verb> <location>: give <forms>".
REFUSALS = {
    Operation.DOWNLOAD_FILE: ("download", "a path, gs://, s3:// or http(s):// URL"),
    Operation.DOWNLOAD_FOLDER: ("download a folder from", "a local folder, gs://bucket/prefix/ or s3://bucket/prefix/"),
    Operation.UPLOAD_FILE: ("upload to", UPLOAD_FORMS),
    Operation.UPLOAD_FOLDER: ("upload to", UPLOAD_FORMS),
}


@dataclass(frozen=True)
class Backend:
    """One kind of storage: the URL schemes it answers to and the operations it supports."""

    name: str
    schemes: tuple[str, ...]  # empty for local paths
    operations: frozenset[Operation]
    implementation: str | None = None  # the module of a remote backend's transfers

    def module(self) -> ModuleType:
        """The module doing this remote backend's transfers (imported on first use: each needs its own SDK)."""
        if self.implementation is None:
            raise TypeError(f"the {self.name} backend is local: it has no transfer module")
        return importlib.import_module(self.implementation)

    @property
    def remote(self) -> bool:
        """Whether locations of this backend are URLs (downloaded through the cache) rather than paths."""
        return bool(self.schemes)

    @property
    def read_only(self) -> bool:
        """Whether nothing can be uploaded to this backend."""
        return not self.operations & {Operation.UPLOAD_FILE, Operation.UPLOAD_FOLDER}

    def supports(self, operation: Operation) -> bool:
        """Whether this backend can do ``operation``."""
        return operation in self.operations

    def require(self, operation: Operation, location: str | os.PathLike) -> None:
        """Raise a StorageError naming ``location`` and the forms that would work, unless ``operation`` is supported."""
        if not self.supports(operation):
            verb, forms = REFUSALS[operation]
            raise StorageError(f"cannot {verb} {os.fspath(location)}: give {forms}")


LOCAL = Backend("local", (), frozenset(Operation))
GCS = Backend("gcs", ("gs",), frozenset(Operation), "cubepose.storage.gcs")
S3 = Backend("s3", ("s3",), frozenset(Operation), "cubepose.storage.s3")
HTTP = Backend("http", ("http", "https"), frozenset({Operation.DOWNLOAD_FILE}), "cubepose.storage.http")
BACKENDS = (LOCAL, GCS, S3, HTTP)
_BY_SCHEME = {scheme: backend for backend in BACKENDS for scheme in backend.schemes}
SUPPORTED = "a local path or a " + ", ".join(f"{scheme}://" for scheme in _BY_SCHEME) + " URL"


def scheme_of(location: str | os.PathLike) -> str | None:
    """The ``<scheme>`` of a ``<scheme>://...`` location as written, or None for a path (a PathLike is always one)."""
    if not isinstance(location, str):
        return None
    match = SCHEME.match(location)
    return match.group(1) if match else None


def backend_for(location: str | os.PathLike) -> Backend:
    """The backend that handles ``location``; a ``<scheme>://`` no backend handles is refused, never read as a path."""
    scheme = scheme_of(location)
    if scheme is None:
        return LOCAL
    if scheme not in _BY_SCHEME:
        raise StorageError(f"no storage backend for {location}: {scheme}:// is not supported; give {SUPPORTED}")
    return _BY_SCHEME[scheme]


def is_remote(location: str) -> bool:
    """Whether ``location`` is a URL (``<scheme>://``) rather than a local path."""
    return scheme_of(location) is not None


def is_gcs_url(value: str) -> bool:
    """Whether ``value`` is a ``gs://`` URL."""
    return _BY_SCHEME.get(scheme_of(value)) is GCS


def normalized(location: str) -> str:
    """A remote ``location`` with repeated slashes after the scheme collapsed (``gs://b/data/`` + ``/train`` from a
    pipeline parameter must not name an empty path segment); a path as it is."""
    scheme = scheme_of(location)
    if scheme is None:
        return location
    return f"{scheme}://" + re.sub("/{2,}", "/", location[len(scheme) + 3 :])


def is_http_url(value: str) -> bool:
    """Whether ``value`` is an http:// or https:// URL."""
    return _BY_SCHEME.get(scheme_of(value)) is HTTP
