"""Name -> component registries, so that configs pick backbones and losses by name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from cubepose.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """A dict of named components with a ``register`` decorator and helpful lookup errors."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator adding a component under ``name``; names are unique."""

        def add(item: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = item
            return item

        return add

    def get(self, name: str, key: str = "") -> T:
        """The component called ``name``; an unknown name lists the known ones."""
        if name not in self._items:
            where = f"{key}: " if key else ""
            raise ConfigError(f"{where}unknown {self.kind} {name!r}; known: {', '.join(self.names())}")
        return self._items[name]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items
