"""Frozen-dataclass configs, YAML presets and type-checked `key=value` overrides.

An experiment declares a frozen dataclass; presets live in `configs/<experiment>/<preset>.yaml`
and hold a subset of its fields (nested dataclasses as nested mappings) plus the reserved key
`seeds`. Overrides use dotted keys (`--set model.hidden=256`) and are parsed against the field's
annotation: int, float, bool, str, Optional[...], Literal[...], tuple[X, ...] / list[X].
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import types
import typing
from pathlib import Path
from typing import Any, Literal, Mapping, get_args, get_origin

import yaml

from .errors import UserError
from .registry import did_you_mean

RESERVED_PRESET_KEYS = ("seeds",)


def configs_dir() -> Path:
    """`configs/` of this checkout, or $DLC_BENCH_CONFIGS."""
    env = os.environ.get("DLC_BENCH_CONFIGS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1] / "configs"


#################################################################################
#                               Type coercion                                   #
#################################################################################

def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _resolve_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert `value` (a YAML object or a command-line string) to annotation `tp`, or raise UserError."""
    origin = get_origin(tp)
    args = get_args(tp)

    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        non_none = [a for a in args if a is not type(None)]
        if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null", "~")):
            if type(None) in args:
                return None
        errors = []
        for a in non_none:
            try:
                return coerce(value, a, key)
            except UserError as e:
                errors.append(e.message)
        raise UserError(f"config key {key!r}: expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        for a in args:
            if value == a or (isinstance(value, str) and str(a) == value):
                return a
        raise UserError(f"config key {key!r}: {value!r} is not one of {', '.join(repr(a) for a in args)}",
                        hint=f"choose one of {', '.join(str(a) for a in args)}")
    if origin in (tuple, list):
        if isinstance(value, str):
            s = value.strip()
            if s.startswith("[") or s.startswith("("):
                s = s[1:-1]
            items: list[Any] = [v.strip() for v in s.split(",") if v.strip()] if s else []
        elif isinstance(value, (list, tuple)):
            items = list(value)
        else:
            items = [value]
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            out = tuple(coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(items))
        elif origin is tuple and args:
            if len(items) != len(args):
                raise UserError(f"config key {key!r}: expected {len(args)} values, got {len(items)} ({value!r})")
            out = tuple(coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(items, args)))
        else:
            elem = args[0] if args else Any
            out = [coerce(v, elem, f"{key}[{i}]") for i, v in enumerate(items)]
            out = tuple(out) if origin is tuple else out
        return out
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "yes", "1", "on"):
            return True
        if isinstance(value, str) and value.strip().lower() in ("false", "no", "0", "off"):
            return False
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise UserError(f"config key {key!r}: expected a boolean (true/false), got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise UserError(f"config key {key!r}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            s = value.strip().replace("_", "")
            try:
                return int(s)
            except ValueError:
                try:
                    f = float(s)
                    if f.is_integer():
                        return int(f)
                except ValueError:
                    pass
        raise UserError(f"config key {key!r}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, bool):
            raise UserError(f"config key {key!r}: expected a number, got {value!r}")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                pass
        raise UserError(f"config key {key!r}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise UserError(f"config key {key!r}: expected a string, got {value!r}")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, Mapping):
            return build(tp, value, prefix=f"{key}.")
        raise UserError(f"config key {key!r} is a group of settings; set its fields with {key}.<field>=value",
                        hint=f"fields: {', '.join(f.name for f in dataclasses.fields(tp))}")
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise UserError(f"config key {key!r}: cannot convert {value!r} to {_type_name(tp)}")


#################################################################################
#                          Building and overriding                              #
#################################################################################

def valid_keys(cls: type, prefix: str = "") -> list[str]:
    """All settable dotted keys of a (nested) config dataclass."""
    keys = []
    hints = _resolve_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            keys.extend(valid_keys(tp, prefix=f"{prefix}{f.name}."))
        else:
            keys.append(prefix + f.name)
    return keys


def _unknown_key(cls: type, key: str, root: type | None = None) -> UserError:
    keys = valid_keys(root or cls)
    return UserError(f"unknown config key {key!r}.{did_you_mean(key, keys)}", hint=f"valid keys: {', '.join(keys)}")


def build(cls: type, values: Mapping[str, Any], prefix: str = "", root: type | None = None, base: Any = None) -> Any:
    """Instantiate dataclass `cls` from a (nested) mapping, validating names and types."""
    hints = _resolve_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for name, raw in values.items():
        if name not in fields:
            raise _unknown_key(cls, prefix + str(name), root or cls)
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            if not isinstance(raw, Mapping):
                raise UserError(f"config key {prefix + name!r} is a group of settings, not a single value")
            kwargs[name] = build(tp, raw, prefix=f"{prefix}{name}.", root=root or cls,
                                 base=_field_default(fields[name]))
        else:
            kwargs[name] = coerce(raw, tp, prefix + name)
    try:
        # a nested group starts from its field's default (e.g. a default_factory with tuned values), so a
        # preset's partial mapping and `--set` overrides agree on what an unstated field is
        obj = dataclasses.replace(base, **kwargs) if base is not None else cls(**kwargs)
    except TypeError as e:  # a required field is missing
        raise UserError(f"incomplete config for {cls.__name__}: {e}") from None
    except ValueError as e:  # __post_init__ checks
        raise UserError(f"invalid config: {e}") from None
    _validate(obj)
    return obj


def _field_default(f: dataclasses.Field) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None if f.default is dataclasses.MISSING else f.default


def _validate(obj: Any) -> None:
    check = getattr(obj, "validate", None)
    if callable(check):
        try:
            check()
        except ValueError as e:
            raise UserError(f"invalid config: {e}") from None


def override(config: Any, assignments: list[str]) -> Any:
    """Apply `key=value` strings (dotted keys for nested groups) to a frozen config."""
    for a in assignments:
        if "=" not in a:
            raise UserError(f"malformed override {a!r}", hint="use --set key=value")
        key, raw = a.split("=", 1)
        key = key.strip()
        config = _set_path(config, key.split("."), raw, key, type(config))
    _validate(config)
    return config


def _set_path(obj: Any, parts: list[str], raw: str, full: str, root: type) -> Any:
    hints = _resolve_hints(type(obj))
    names = {f.name for f in dataclasses.fields(obj)}
    head = parts[0]
    if head not in names:
        raise _unknown_key(type(obj), full, root)
    tp = hints[head]
    if len(parts) == 1:
        try:
            return dataclasses.replace(obj, **{head: coerce(raw, tp, full)})
        except ValueError as e:  # __post_init__ checks
            raise UserError(f"invalid config: {e}") from None
    if not dataclasses.is_dataclass(tp):
        raise _unknown_key(type(obj), full, root)
    try:
        return dataclasses.replace(obj, **{head: _set_path(getattr(obj, head), parts[1:], raw, full, root)})
    except ValueError as e:
        raise UserError(f"invalid config: {e}") from None


#################################################################################
#                                 Presets                                       #
#################################################################################

def preset_path(experiment: str, preset: str) -> Path:
    return configs_dir() / experiment / f"{preset}.yaml"


def available_presets(experiment: str) -> list[str]:
    d = configs_dir() / experiment
    return sorted(p.stem for p in d.glob("*.yaml")) if d.is_dir() else []


def read_preset(experiment: str, preset: str) -> dict:
    path = preset_path(experiment, preset)
    if not path.exists():
        have = available_presets(experiment)
        raise UserError(f"experiment {experiment!r} has no preset {preset!r}.{did_you_mean(preset, have)}",
                        hint=f"available presets: {', '.join(have) or '(none)'}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise UserError(f"preset file {path} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise UserError(f"preset file {path} must hold a mapping of config keys")
    return data


def load_config(cls: type, experiment: str, preset: str, overrides: list[str] | None = None
                ) -> tuple[Any, tuple[int, ...] | None]:
    """Resolved config (defaults ← preset ← overrides) and the preset's seeds (or None)."""
    data = read_preset(experiment, preset)
    seeds = data.pop("seeds", None)
    config = build(cls, data)
    if overrides:
        config = override(config, overrides)
    if seeds is not None:
        seeds = tuple(coerce(seeds, tuple[int, ...], "seeds"))
    return config, seeds


def to_dict(config: Any) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(config), default=list))


def config_hash(config: Any) -> str:
    """sha256 of the canonical JSON of a resolved config (first 16 hex digits)."""
    blob = json.dumps(to_dict(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def to_yaml(config: Any) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False)


def parse_seeds(text: str) -> tuple[int, ...]:
    """'0,1,2' or '0-4' (inclusive range) or '3' (a single seed)."""
    text = text.strip()
    try:
        if "-" in text and "," not in text and not text.startswith("-"):
            a, b = text.split("-", 1)
            lo, hi = int(a), int(b)
            if hi < lo:
                raise ValueError
            return tuple(range(lo, hi + 1))
        seeds = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise UserError(f"cannot parse --seeds {text!r}", hint="use a list like 0,1,2 or a range like 0-4") from None
    if not seeds:
        raise UserError("--seeds is empty", hint="use a list like 0,1,2 or a range like 0-4")
    if len(set(seeds)) != len(seeds):
        raise UserError(f"--seeds {text!r} repeats a seed")
    return seeds
