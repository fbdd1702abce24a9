"""Every transfer of bytes in one place: local paths, gs:// and http(s)://.

``fetch`` turns a location into a local file (downloads are cached and atomic, with an
optional sha256 pin); ``Uploader`` copies files to gs:// or a folder in the background;
``upload_folder`` publishes a whole folder, sending only changed files.
``gcs``, ``http`` and ``cache`` hold the per-scheme details.
"""

from cubepose.errors import StorageError, StorageUnreachableError
from cubepose.storage.folders import upload_folder
from cubepose.storage.gcs import download_gcs, gcs_client, is_gcs_url, parse_gcs_url, upload_gcs
from cubepose.storage.http import download_http, is_http_url
from cubepose.storage.locations import default_cache_dir, fetch, is_remote, sha256_of
from cubepose.storage.uploads import Uploader

__all__ = [
    "StorageError",
    "StorageUnreachableError",
    "Uploader",
    "default_cache_dir",
    "download_gcs",
    "download_http",
    "fetch",
    "gcs_client",
    "is_gcs_url",
    "is_http_url",
    "is_remote",
    "parse_gcs_url",
    "sha256_of",
    "upload_folder",
    "upload_gcs",
]
