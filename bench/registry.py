"""The harness's registries (experiments, metrics, feature extractors, conditionings).

The generic registry and the did-you-mean helper live in the torch-free `dlc.registry`; here the
registry's unknown-name error is the CLI's one-line `UserError` (`error: unknown metric 'kdi'. Did you
mean 'kid'? (valid metric names: ...)`, exit status 2).
"""
from __future__ import annotations

from typing import TypeVar

from dlc.registry import Registry as _Registry, did_you_mean

from .errors import UserError

__all__ = ["Registry", "did_you_mean"]

T = TypeVar("T")


class Registry(_Registry[T]):
    """`dlc.registry.Registry` raising `UserError` for an unknown name."""

    error = UserError
