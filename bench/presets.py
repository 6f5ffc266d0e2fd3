"""YAML presets: `include:` composition, reserved keys `seeds:` / `sweep:`, and the resolved config of a run.

Presets live in `bench/configs/<experiment>/<preset>.yaml` (shipped in the package; $DLC_BENCH_CONFIGS
points elsewhere) and hold a subset of the experiment's config fields (nested groups as nested mappings)
plus three reserved keys:

    include: laptop                    # or a list; another preset of this experiment,
                                       # `<experiment>/<preset>`, or a path ending in .yaml (relative to
                                       # this file). Mappings deep-merge, this file's keys win, lists replace.
    seeds: [0, 1, 2]
    sweep: {prior_sampling.eta: [0, 0.01, 0.1]}   # dotted keys → values; several keys: the cartesian product

Files whose name starts with '_' are include-only bases, not listed or run as presets; `sweep: null`
drops an included sweep. A user's own file (`dlc-bench run NAME --config FILE.yaml`) has the same form
and may include built-in presets (`include: dlc-pipeline/laptop`).

Experiment and preset names (`--preset P`, `include: P`, `include: E/P`) are names, `[a-z0-9_-]+`, looked
up only as `<presets folder>/<E>/<P>.yaml`: a path (`../x`, `/tmp/x`, `x.y`) is a UserError, never read.
Only an include ending in .yaml is a path (relative to the including file).
"""
from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from .config import Sweep, _one_line, build, check_sweep, coerce, override, parse_sweep_args
from .errors import UserError
from .registry import did_you_mean

RESERVED_PRESET_KEYS = ("include", "seeds", "sweep")
_NAME = re.compile(r"[a-z0-9_-]+")     # experiment and preset names: never a path


def configs_dir() -> Path:
    """The presets shipped in the package (`bench/configs/`), or $DLC_BENCH_CONFIGS."""
    env = os.environ.get("DLC_BENCH_CONFIGS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent / "configs"


#################################################################################
#                                 Presets                                       #
#################################################################################

def preset_path(experiment: str, preset: str) -> Path:
    return configs_dir() / experiment / f"{preset}.yaml"


def _preset_names(experiment: str, bases: bool = False) -> list[str]:
    d = configs_dir() / experiment
    if not d.is_dir():
        return []
    return sorted(p.stem for p in d.glob("*.yaml") if bases or not p.stem.startswith("_"))


def available_presets(experiment: str) -> list[str]:
    """The runnable presets of `experiment` (include-only bases, named '_*', are not listed)."""
    return _preset_names(experiment)


def _preset_file(experiment: str, preset: str, where: str = "", include: bool = False) -> Path:
    prefix = f"{where}: " if where else ""
    for kind, name in (("experiment", experiment), ("preset", preset)):
        if not _NAME.fullmatch(name):
            raise UserError(f"{prefix}{kind} {name!r} is not a name: use only a-z, 0-9, '_' and '-'",
                            hint="include a path ending in .yaml, relative to this file" if include
                            else "use --config FILE.yaml for your own file")
    path = preset_path(experiment, preset)
    if not include and preset.startswith("_") and path.exists():
        raise UserError(f"{prefix}preset {preset!r} of {experiment!r} is an include-only base, not a preset",
                        hint=f"use one of {', '.join(available_presets(experiment)) or '(none)'}, or include it")
    if path.is_file():
        return path
    if not (configs_dir() / experiment).is_dir():
        exps = sorted(p.name for p in configs_dir().iterdir() if p.is_dir()) if configs_dir().is_dir() else []
        raise UserError(f"{prefix}experiment {experiment!r} has no presets.{did_you_mean(experiment, exps)}",
                        hint=f"experiments with presets in {configs_dir()}: {', '.join(exps) or '(none)'}")
    have = _preset_names(experiment, bases=include)
    raise UserError(f"{prefix}experiment {experiment!r} has no preset {preset!r}.{did_you_mean(preset, have)}",
                    hint=f"available presets: {', '.join(have) or '(none)'}")


def _show_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(configs_dir().resolve()))
    except ValueError:
        return str(path)


def _load_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise UserError(f"preset file {path} is not valid YAML: {_one_line(e)}", hint="fix the YAML syntax") from None
    except OSError as e:
        raise UserError(f"cannot read preset file {path}: {e.strerror or e}") from None
    if not isinstance(data, dict):
        raise UserError(f"preset file {path} must hold a mapping of config keys", hint="write key: value lines")
    return data


def merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict:
    """Deep merge: `over`'s keys win, nested mappings merge key by key, lists (and everything else) replace."""
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


def _include_target(ref: Any, experiment: str, including: Path) -> tuple[Path, str]:
    where = f"in {_show_path(including)}: include {ref!r}"
    if not isinstance(ref, str) or not ref.strip():
        raise UserError(f"in {_show_path(including)}: include entries must be preset names or .yaml paths, "
                        f"got {ref!r}",
                        hint="write include: laptop, include: dlc-pipeline/laptop or include: base.yaml")
    ref = ref.strip()
    if ref.endswith((".yaml", ".yml")):
        path = Path(ref).expanduser()
        path = path if path.is_absolute() else including.parent / path
        if not path.is_file():
            raise UserError(f"{where}: file {path} not found",
                            hint="paths ending in .yaml are relative to the including file")
        return path, experiment
    if "/" in ref:
        exp, _, name = ref.partition("/")
        return _preset_file(exp, name, where, include=True), exp
    return _preset_file(experiment, ref, where, include=True), experiment


def _read_tree(path: Path, experiment: str, stack: tuple[Path, ...] = ()) -> dict:
    """A preset file with its `include:`s resolved (depth first, in order) and merged under its own keys."""
    real = path.resolve()
    if real in stack:
        chain = [*stack[stack.index(real):], real]
        raise UserError("include cycle: " + " → ".join(_show_path(p) for p in chain),
                        hint="remove one of these include: entries")
    data = _load_yaml(path)
    inc = data.pop("include", None)
    refs = [] if inc is None else [inc] if isinstance(inc, str) else inc
    if not isinstance(refs, list):
        raise UserError(f"in {_show_path(path)}: include must be a name, a path or a list of them, got {inc!r}",
                        hint="write include: laptop or include: [laptop, extra.yaml]")
    merged: dict = {}
    for ref in refs:
        target, exp = _include_target(ref, experiment, path)
        merged = merge(merged, _read_tree(target, exp, (*stack, real)))
    return merge(merged, data)


def read_preset(experiment: str, preset: str) -> dict:
    """The preset's mapping with its includes merged (still holding the reserved keys seeds / sweep)."""
    return _read_tree(_preset_file(experiment, preset), experiment)


def read_config_file(path: str | os.PathLike, experiment: str) -> dict:
    """A user's own preset file (--config), whose includes may name built-in presets."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise UserError(f"config file {p} not found", hint="pass an existing YAML file to --config")
    return _read_tree(p, experiment)


@dataclasses.dataclass(frozen=True)
class LoadedConfig:
    """A resolved config (defaults ← preset / --config file ← --set), its seeds and its sweep axes."""
    config: Any
    seeds: tuple[int, ...] | None
    sweep: Sweep = ()
    preset: str | None = None      # what results record: the preset's name, or the --config file's stem


def resolve_config(cls: type, experiment: str, preset: str | None, overrides: Sequence[str] | None = None,
                   config_file: str | os.PathLike | None = None,
                   sweeps: Sequence[str] | None = None) -> LoadedConfig:
    """defaults ← preset ← `config_file` (deep-merged over the preset, or alone) ← `overrides` (--set);
    sweep axes from the files' `sweep:` key, then `sweeps` (--sweep KEY=V1,V2, replacing a file's axis)."""
    if preset is None and config_file is None:
        raise UserError("no config given", hint="pass --preset NAME (see `dlc-bench list`) or --config FILE.yaml")
    data: dict = read_preset(experiment, preset) if preset is not None else {}
    if config_file is not None:
        data = merge(data, read_config_file(config_file, experiment))
    seeds = data.pop("seeds", None)
    sweep_data = data.pop("sweep", None)
    config = build(cls, data)
    overrides = list(overrides or [])
    if overrides:
        config = override(config, overrides)
    if seeds is not None:
        seeds = tuple(coerce(seeds, tuple[int, ...], "seeds"))
        if not seeds:
            raise UserError("the preset's seeds list is empty", hint="give at least one seed, or pass --seeds")
    if sweep_data is not None and not isinstance(sweep_data, Mapping):
        raise UserError(f"sweep must map config keys to lists of values, got {sweep_data!r}",
                        hint="write e.g. sweep: {prior_sampling.eta: [0.0, 0.01, 0.1]}")
    axes = dict(check_sweep(cls, sweep_data))
    for key, values in check_sweep(cls, parse_sweep_args(sweeps or []), source="--sweep"):
        axes[key] = values
    set_keys = {a.split("=", 1)[0].strip() for a in overrides}
    both = [k for k in axes if k in set_keys]
    if both:
        raise UserError(f"config key {both[0]!r} is both set with --set and swept",
                        hint=f"drop one of them (--sweep {both[0]}=VALUE runs a single value)")
    label = Path(config_file).stem if config_file is not None else preset
    return LoadedConfig(config=config, seeds=seeds, sweep=tuple(axes.items()), preset=label)


def load_config(cls: type, experiment: str, preset: str | None, overrides: Sequence[str] | None = None,
                config_file: str | os.PathLike | None = None) -> tuple[Any, tuple[int, ...] | None]:
    """Resolved config (defaults ← preset ← overrides) and the preset's seeds (or None); see resolve_config."""
    loaded = resolve_config(cls, experiment, preset, overrides, config_file)
    return loaded.config, loaded.seeds
