"""Frozen-dataclass configs: type-checked building, `key=value` overrides and sweeps.

An experiment declares a frozen dataclass. `build` makes one from a (nested) mapping, `override` applies
dotted `--set model.hidden=256` strings, `expand_sweep` makes one config per point of a sweep; values are
parsed against the field's annotation: int, float, bool, str, Optional[...], Literal[...], tuple[X, ...] /
list[X]. Every problem (unknown key, wrong type, a config's own `__post_init__` / `validate()` ValueError)
is a one-line `UserError` (a `dlc.validate` check names the full dotted key); `preflight` checks, when a run
starts, what depends on the machine: device, dtype, data directories, memory. Preset files (`include:`,
`seeds:`, `sweep:`) and `resolve_config` / `load_config` live in `bench.presets` and are importable from here.
"""
from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import types
import typing
from typing import Any, Literal, Mapping, Sequence, get_args, get_origin

import yaml

from dlc.validate import ConfigError

from .errors import UserError
from .registry import did_you_mean

# bench.presets' API, importable from bench.config as before (loaded on first use: presets imports this module)
_PRESETS_API = ("RESERVED_PRESET_KEYS", "configs_dir", "preset_path", "available_presets", "read_preset",
                "read_config_file", "merge", "LoadedConfig", "resolve_config", "load_config")


def __getattr__(name: str) -> Any:
    if name in _PRESETS_API:
        from . import presets

        return getattr(presets, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_PRESETS_API])


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


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split("\n")).strip()


def _invalid(e: ValueError, where: str = "", hint: str | None = None, prefix: str = "") -> UserError:
    """A config's own ValueError (`__post_init__` / `validate()`) as a one-line UserError. A dlc.validate
    ConfigError of the group at dotted `prefix` names the full key (`prior.train.steps=0 ...`) and adds its fix."""
    if isinstance(e, ConfigError):
        e = e.at(prefix)
        return UserError(f"invalid config{' ' + where if where else ''}: {e.statement}",
                         hint="; ".join(h for h in (hint, e.fix) if h) or None)
    return UserError(f"invalid config{' ' + where if where else ''}: {_one_line(e)}", hint=hint)


def field_type(cls: type, key: str) -> Any:
    """The annotation of dotted `key` in config class `cls`, or a UserError with a did-you-mean."""
    tp: Any = cls
    for part in key.split("."):
        if not dataclasses.is_dataclass(tp) or part not in {f.name for f in dataclasses.fields(tp)}:
            raise _unknown_key(cls, key)
        tp = _resolve_hints(tp)[part]
    return tp


def _coerce_hinted(value: Any, tp: Any, key: str, hint: str | None) -> Any:
    try:
        return coerce(value, tp, key)
    except UserError as e:
        if e.hint is None:
            e.hint = hint
        raise


def _default_group(f: dataclasses.Field, tp: Any) -> Any:
    """The default instance of a nested config group (its default_factory's), or None."""
    if f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    elif f.default is not dataclasses.MISSING:
        value = f.default
    else:
        return None
    return value if isinstance(value, tp) else None


def build(cls: type, values: Mapping[str, Any], prefix: str = "", root: type | None = None,
          base: Any = None) -> Any:
    """Instantiate dataclass `cls` from a (nested) mapping, validating names, types and the config's checks.

    The mapping's values are set over the defaults, group by group: a nested group that the mapping names
    starts from the field's default (its default_factory's instance, which may differ from the group class's
    own defaults), exactly as `--set group.key=value` would; `base` is such a starting instance."""
    hints = _resolve_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for name, raw in values.items():
        if name not in fields:
            raise _unknown_key(cls, prefix + str(name), root or cls)
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            if not isinstance(raw, Mapping):
                raise UserError(f"config key {prefix + name!r} is a group of settings, not a single value",
                                hint=f"set its fields as a mapping, e.g. "
                                     f"{name}: {{{dataclasses.fields(tp)[0].name}: ...}}")
            sub = getattr(base, name) if base is not None else _default_group(fields[name], tp)
            kwargs[name] = build(tp, raw, prefix=f"{prefix}{name}.", root=root or cls, base=sub)
        else:
            kwargs[name] = coerce(raw, tp, prefix + name)
    try:
        obj = dataclasses.replace(base, **kwargs) if base is not None else cls(**kwargs)
    except TypeError as e:  # a required field is missing
        raise UserError(f"incomplete config for {cls.__name__}: {e}") from None
    except ValueError as e:  # the config's own __post_init__ check
        where = "" if isinstance(e, ConfigError) else prefix.rstrip(".")
        raise _invalid(e, where, hint="change the preset's value or override it with --set", prefix=prefix) from None
    _validate(obj, hint="change the preset's value or override it with --set", prefix=prefix)
    return obj


def _validate(obj: Any, hint: str | None = None, where: str = "", prefix: str = "") -> None:
    check = getattr(obj, "validate", None)
    if callable(check):
        try:
            check()
        except ValueError as e:
            raise _invalid(e, where, hint, prefix) from None


def _apply(obj: Any, changes: Mapping[tuple[str, ...], Any], where: str, hint: str | None, prefix: str = "") -> Any:
    """`obj` with already-coerced values at dotted paths, each (nested) group replaced once."""
    direct: dict[str, Any] = {}
    nested: dict[str, dict[tuple[str, ...], Any]] = {}
    for parts, value in changes.items():
        if len(parts) == 1:
            direct[parts[0]] = value
        else:
            nested.setdefault(parts[0], {})[parts[1:]] = value
    for head, sub in nested.items():
        direct[head] = _apply(getattr(obj, head), sub, where, hint, f"{prefix}{head}.")
    try:
        return dataclasses.replace(obj, **direct)
    except ValueError as e:  # __post_init__ of the replaced group
        raise _invalid(e, where, hint, prefix) from None


def assign(config: Any, values: Mapping[str, Any], where: str = "", hint: str | None = None) -> Any:
    """`config` with dotted keys set to `values` (strings or YAML objects, coerced to each field's
    type), then validated. The one path of --set overrides and sweep points."""
    changes = {}
    for key, raw in values.items():
        tp = field_type(type(config), key)
        changes[tuple(key.split("."))] = _coerce_hinted(raw, tp, key, hint)
    if not changes:
        return config
    config = _apply(config, changes, where, hint)
    _validate(config, hint, where)
    return config


def override(config: Any, assignments: Sequence[str]) -> Any:
    """Apply `key=value` strings (dotted keys for nested groups) to a frozen config; later ones win."""
    values: dict[str, str] = {}
    for a in assignments:
        if "=" not in a:
            raise UserError(f"malformed override {a!r}", hint="use --set key=value")
        key, raw = a.split("=", 1)
        values.pop(key.strip(), None)
        values[key.strip()] = raw
    if not assignments:
        _validate(config)
        return config
    return assign(config, values, hint="change the --set value" + ("s" if len(values) > 1 else "") + " "
                  + " ".join(f"{k}={v}" for k, v in values.items()))


#################################################################################
#                                   Sweeps                                      #
#################################################################################

Sweep = tuple[tuple[str, tuple], ...]


def dotted_items(data: Mapping, prefix: str = "") -> list[tuple[str, Any]]:
    """(dotted key, leaf value) of a nested mapping, in order: {'a': {'b': 1}} → [('a.b', 1)]."""
    out: list[tuple[str, Any]] = []
    for k, v in data.items():
        key = f"{prefix}{str(k).strip()}"
        if isinstance(v, Mapping):
            out.extend(dotted_items(v, prefix=key + "."))
        else:
            out.append((key, v))
    return out


def check_sweep(cls: type, sweep: Mapping[str, Any] | Sequence[tuple[str, Any]] | None,
                source: str = "sweep") -> Sweep:
    """Sweep axes ((dotted key, values), ...) with every value coerced to the key's field type.

    `sweep` maps dotted keys (or nested mappings) to lists of values; a command-line string value is
    split like --set values are parsed. Unknown keys, groups, empty or repeated values raise UserError."""
    if sweep is None:
        return ()
    if isinstance(sweep, Mapping):
        items = dotted_items(sweep)
    elif isinstance(sweep, (list, tuple)):
        items = [tuple(it) for it in sweep]
    else:
        raise UserError(f"{source} must map config keys to lists of values, got {sweep!r}",
                        hint="write e.g. sweep: {prior_sampling.eta: [0.0, 0.01, 0.1]}")
    axes: list[tuple[str, tuple]] = []
    for key, values in items:
        key = str(key).strip()
        if key == "seeds":
            raise UserError(f"{source}: seeds cannot be swept", hint="set them with seeds: [...] or --seeds 0,1,2; "
                            "every sweep point runs every seed")
        tp = field_type(cls, key)
        if dataclasses.is_dataclass(tp):
            raise UserError(f"{source}: config key {key!r} is a group of settings and cannot be swept",
                            hint=f"sweep one of its fields, e.g. {key}.{dataclasses.fields(tp)[0].name}")
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
            raise UserError(f"{source}: config key {key!r} needs a list of values, got {values!r}",
                            hint=f"write {key}: [value1, value2, ...]")
        if not values:
            raise UserError(f"{source}: config key {key!r} has no values", hint=f"give {key} at least one value")
        coerced = tuple(_coerce_hinted(v, tp, key, f"give {key} values of type {_type_name(tp)}") for v in values)
        for i, v in enumerate(coerced):
            if v in coerced[:i]:
                raise UserError(f"{source}: config key {key!r} repeats the value {v!r}",
                                hint="list each value once")
        if any(k == key for k, _ in axes):
            raise UserError(f"{source}: config key {key!r} is swept twice", hint="give it one list of values")
        axes.append((key, coerced))
    return tuple(axes)


def split_values(text: str) -> list[str]:
    """'0,0.01,[a,b]' → ['0', '0.01', '[a,b]']: commas outside brackets separate values."""
    out, depth, cur = [], 0, ""
    for ch in text:
        if ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    out.append(cur.strip())
    return [v for v in out if v != ""]


def parse_sweep_args(args: Sequence[str]) -> list[tuple[str, list[str]]]:
    """--sweep KEY=V1,V2,... (repeatable) → [(key, [values])]; a key given twice keeps the last."""
    out: dict[str, list[str]] = {}
    for a in args:
        key, sep, raw = a.partition("=")
        key = key.strip()
        values = split_values(raw)
        if not sep or not key or not values:
            raise UserError(f"malformed --sweep {a!r}", hint="use --sweep key=value1,value2,...")
        out.pop(key, None)
        out[key] = values
    return list(out.items())


def expand_sweep(config: Any, sweep: Sweep | Mapping[str, Any] | None) -> list[tuple[dict[str, Any], Any]]:
    """One (labels, config) pair per point of the cartesian product of the sweep's axes (the first axis
    varies slowest): labels = {dotted key: value}, config = `config` with those keys set through the
    --set path (coerced, validated). An empty sweep gives [({}, config)]."""
    axes = check_sweep(type(config), sweep) if isinstance(sweep, Mapping) else \
        check_sweep(type(config), list(sweep or ()))
    if not axes:
        return [({}, config)]
    points = []
    for combo in itertools.product(*(values for _, values in axes)):
        labels = {key: value for (key, _), value in zip(axes, combo)}
        shown = ", ".join(f"{k}={_show_value(v)}" for k, v in labels.items())
        points.append((labels, assign(config, labels, where=f"at sweep point {shown}",
                                      hint="change or drop that sweep value")))
    return points


def _show_value(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(_show_value(x) for x in v) + "]"
    return str(v)


def preflight(config: Any, device: str = "auto", dtype: str = "float32",
              points: Sequence[tuple[dict, Any]] | None = None) -> tuple[str, str]:
    """What depends on this machine, checked before a run does any work (UserError otherwise): the device
    exists, the dtype is supported, and the config (and every sweep point's) fits in memory by its own
    `check_resources()` (see dlc.validate.within_memory). Returns the checked (device, dtype) names."""
    from dlc.validate import check_device, check_dtype

    try:
        device = check_device(device)
        dtype = check_dtype(dtype, device)
        for c in [config, *(c for _, c in points or ())]:
            _check_resources(c)
    except ConfigError as e:
        raise UserError(e.statement, hint=e.fix) from None
    return device, dtype


def _check_resources(obj: Any, prefix: str = "") -> None:
    """Every (nested) group's own `check_resources()`, innermost first; errors name the dotted key."""
    for f in dataclasses.fields(obj):
        if dataclasses.is_dataclass(sub := getattr(obj, f.name)):
            _check_resources(sub, f"{prefix}{f.name}.")
    if callable(getattr(obj, "check_resources", None)):
        try:
            obj.check_resources()
        except ConfigError as e:
            raise e.at(prefix) from None


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
