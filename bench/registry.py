"""One generic name → object registry, used for experiments, metrics and feature extractors.

Names are validated (no whitespace or path separators), duplicates raise, and an unknown name
fails with "did you mean …" (lm-evaluation-harness / torch-fidelity style).
"""
from __future__ import annotations

import difflib
import re
from typing import Callable, Generic, Iterator, TypeVar

from .errors import UserError

T = TypeVar("T")

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+\-]*$")


def did_you_mean(name: str, choices: list[str] | tuple[str, ...], n: int = 3) -> str:
    """' Did you mean 'x'?' (or '') for an unknown name."""
    close = difflib.get_close_matches(name, list(choices), n=n, cutoff=0.5)
    if not close:
        lowered = {c.lower(): c for c in choices}
        close = [lowered[c] for c in difflib.get_close_matches(name.lower(), list(lowered), n=n, cutoff=0.5)]
    if not close:
        return ""
    return " Did you mean " + " or ".join(repr(c) for c in close) + "?"


class Registry(Generic[T]):
    """A named collection of objects of one kind ('experiment', 'metric', 'feature extractor')."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str, obj: T) -> T:
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"invalid {self.kind} name {name!r}: use letters, digits, '-', '_', '.', '+' "
                             "and no whitespace or path separators")
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is already registered; names must be unique")
        self._items[name] = obj
        return obj

    def decorator(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            return self.register(name, obj)
        return deco

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise UserError(
                f"unknown {self.kind} {name!r}.{did_you_mean(name, self.names())}",
                hint=f"valid {self.kind} names: {', '.join(self.names()) or '(none registered)'}",
            ) from None

    def unregister(self, name: str) -> None:
        """For tests: remove a registration."""
        self._items.pop(name, None)

    def names(self) -> list[str]:
        return sorted(self._items)

    def items(self) -> Iterator[tuple[str, T]]:
        return iter(sorted(self._items.items()))

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __len__(self) -> int:
        return len(self._items)
