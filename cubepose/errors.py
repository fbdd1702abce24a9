"""Exceptions for mistakes a user can make, each message naming the thing and the fix."""


class CubeposeError(Exception):
    """Base class of errors caused by user input (configs, paths, files)."""


class ConfigError(CubeposeError, ValueError):
    """A config key is unknown, mistyped or out of range."""


class DatasetError(CubeposeError, ValueError):
    """A dataset cannot be used as a whole (missing root, no captures, ...)."""


class CheckpointError(CubeposeError, ValueError):
    """A checkpoint file is missing, truncated or does not fit the model."""


class StorageError(CubeposeError):
    """A location (gs://, s3://, http(s)://, path) cannot be read or written: malformed, missing, denied, damaged."""


class StorageUnreachableError(StorageError):
    """A remote store could not be reached; raised only when no complete cached copy exists."""
