"""The experiment registry: `@experiment("name", description=..., config=ConfigClass)`.

An experiment is a function `fn(ctx: RunContext) -> None` that reads `ctx.config` and
`ctx.seeds`, computes through cached stages (`ctx.stage`), and reports metric rows
(`ctx.add_metric`) and figures (`ctx.add_figure`). The harness writes results, reports and the
run-store record around it.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .config import available_presets
from .registry import Registry


@dataclass(frozen=True)
class Experiment:
    name: str
    description: str
    config_cls: type
    fn: Callable
    version: str = "1"
    code: tuple[str, ...] = ()   # packages/modules whose source defines the code version of cached stages

    def presets(self) -> list[str]:
        return available_presets(self.name)

    def code_version(self) -> str:
        """sha256 over the source of the experiment's module and the packages it declares.

        Any edit to that code changes the version, so cached stage outputs are never stale."""
        mods = [self.fn.__module__, *self.code]
        h = hashlib.sha256(self.version.encode())
        for path in sorted({p for m in mods for p in _source_files(m)}):
            h.update(str(path.name).encode())
            h.update(path.read_bytes())
        return h.hexdigest()[:16]


def _source_files(module: str) -> list[Path]:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        return []
    origin = Path(spec.origin)
    if spec.submodule_search_locations:  # a package: every .py below it
        return sorted(p for loc in spec.submodule_search_locations for p in Path(loc).rglob("*.py"))
    return [origin]


EXPERIMENTS: Registry[Experiment] = Registry("experiment")


def experiment(name: str, *, description: str, config: type, version: str = "1",
               code: tuple[str, ...] = ()) -> Callable:
    """Register `fn(ctx)` as experiment `name` with the frozen config dataclass `config`."""
    if not (dataclasses.is_dataclass(config) and config.__dataclass_params__.frozen):
        raise TypeError(f"experiment {name!r}: config must be a frozen dataclass")

    def deco(fn: Callable) -> Callable:
        EXPERIMENTS.register(name, Experiment(name=name, description=description, config_cls=config, fn=fn,
                                              version=version, code=tuple(code)))
        return fn
    return deco


_LOADED = False


def load_builtin_experiments() -> Registry[Experiment]:
    """Import the modules that register the built-in experiments (once)."""
    global _LOADED
    if not _LOADED:
        importlib.import_module("bench.experiments")
        _LOADED = True
    return EXPERIMENTS


def get_experiment(name: str) -> Experiment:
    return load_builtin_experiments().get(name)


__all__ = ["Experiment", "EXPERIMENTS", "experiment", "get_experiment", "load_builtin_experiments"]
