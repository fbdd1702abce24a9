"""Every transfer of bytes in one place: local paths, gs://, s3:// and http(s)://.

``fetch`` turns a location into a local file (downloads are cached and atomic, with an
optional sha256 pin); ``Uploader`` copies files to gs://, s3:// or a folder in the background;
``upload_folder`` publishes a whole folder, sending only changed files.
``backends`` maps a location to its backend and that backend's module (the one place that reads
URL schemes); ``gcs``, ``s3``, ``http`` and ``cache`` hold the per-scheme details.
"""

from cubepose.errors import StorageError, StorageUnreachableError
from cubepose.storage.backends import (
    GCS,
    HTTP,
    LOCAL,
    S3,
    Backend,
    Operation,
    backend_for,
    is_gcs_url,
    is_http_url,
    is_remote,
    normalized,
    scheme_of,
)
from cubepose.storage.folders import upload_folder
from cubepose.storage.locations import default_cache_dir, fetch, sha256_of
from cubepose.storage.uploads import Uploader

__all__ = [
    "GCS",
    "HTTP",
    "LOCAL",
    "S3",
    "Backend",
    "Operation",
    "StorageError",
    "StorageUnreachableError",
    "Uploader",
    "backend_for",
    "default_cache_dir",
    "fetch",
    "is_gcs_url",
    "is_http_url",
    "is_remote",
    "normalized",
    "scheme_of",
    "sha256_of",
    "upload_folder",
]
