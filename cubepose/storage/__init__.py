"""Every transfer of bytes in one place: local paths, gs:// and http(s)://.

``fetch`` turns a location into a local file (downloads are cached and atomic, with an
optional sha256 pin); ``Uploader`` copies files to gs:// or a folder in the background;
``upload_folder`` publishes a whole folder, sending only changed files.
``backends`` maps a location to its backend (the one place that reads URL schemes);
``gcs``, ``http`` and ``cache`` hold the per-scheme details.
"""

from cubepose.errors import StorageError, StorageUnreachableError
from cubepose.storage.backends import (
    GCS,
    HTTP,
    LOCAL,
    Backend,
    Operation,
    backend_for,
    is_gcs_url,
    is_http_url,
    is_remote,
    scheme_of,
)
from cubepose.storage.folders import upload_folder
from cubepose.storage.gcs import download_gcs, gcs_client, parse_gcs_url, upload_gcs
from cubepose.storage.http import download_http
from cubepose.storage.locations import default_cache_dir, fetch, sha256_of
from cubepose.storage.uploads import Uploader

__all__ = [
    "GCS",
    "HTTP",
    "LOCAL",
    "Backend",
    "Operation",
    "StorageError",
    "StorageUnreachableError",
    "Uploader",
    "backend_for",
    "default_cache_dir",
    "download_gcs",
    "download_http",
    "fetch",
    "gcs_client",
    "is_gcs_url",
    "is_http_url",
    "is_remote",
    "parse_gcs_url",
    "scheme_of",
    "sha256_of",
    "upload_folder",
    "upload_gcs",
]
