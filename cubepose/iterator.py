"""Where configs and old runs' meta.yaml find the Iterator (``iterator: cubepose.iterator.Iterator``)."""

from cubepose.engine.iterator import Iterator

__all__ = ["Iterator"]
