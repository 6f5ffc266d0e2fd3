"""Name → object registries and the one "did you mean …" helper used by every unknown-name error.

Torch-free on purpose: `dlc.*` builders (backbones, SEDD / DiT presets, data sets) and the `bench`
harness (experiments, metrics, feature extractors) all spell their unknown-name errors through
`did_you_mean`, so a typo gets the same suggestion everywhere (lm-evaluation-harness / torch-fidelity
style).
"""
from __future__ import annotations

import difflib
import re
from typing import Callable, Generic, Iterable, Iterator, TypeVar

T = TypeVar("T")

__all__ = ["did_you_mean", "Registry", "UnknownNameError"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+\-]*$")


def did_you_mean(name: str, choices: Iterable[str], n: int = 3) -> str:
    """' Did you mean 'x'?' (or ' Did you mean 'x' or 'y'?'), or '' when nothing is close.

    Close means difflib ratio ≥ 0.5, tried case-sensitively first, then ignoring case."""
    choices = [str(c) for c in choices]
    name = str(name)
    close = difflib.get_close_matches(name, choices, n=n, cutoff=0.5)
    if not close:
        lowered = {c.lower(): c for c in choices}
        close = [lowered[c] for c in difflib.get_close_matches(name.lower(), list(lowered), n=n, cutoff=0.5)]
    if not close:
        return ""
    return " Did you mean " + " or ".join(repr(c) for c in close) + "?"


class UnknownNameError(ValueError):
    """An unknown registry name; `message` names the problem, `hint` lists the valid names."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class Registry(Generic[T]):
    """A named collection of objects of one kind ('experiment', 'metric', 'feature extractor').

    Names are validated (no whitespace or path separators), duplicates raise ValueError, and `get` of
    an unknown name raises `self.error(message, hint)` with a did-you-mean suggestion. Subclasses pick
    the error type (bench's registries raise its one-line `UserError`)."""

    error: Callable[[str, str], Exception] = UnknownNameError

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
        except (KeyError, TypeError):
            raise type(self).error(
                f"unknown {self.kind} {name!r}.{did_you_mean(str(name), self.names())}",
                f"valid {self.kind} names: {', '.join(self.names()) or '(none registered)'}",
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
