"""Checks of config values, one line each: `positive("hidden", self.hidden)` in a config's `__post_init__`.

Every check raises `ConfigError` (a ValueError) whose text is `<field>=<value> <problem> (<fix>)`, the one-line
form the `dlc-bench` command line prints as `error: ...`; `bench.config` prefixes the dotted path of a nested
group, so `steps` of `prior.train` is reported as `prior.train.steps=0 ...`. Torch-free (the device and dtype
checks import torch when called).

    check(self, positive=("steps", "batch_size", "lr"), non_negative=("warmup",), probability=("ema",))
    choice("sampler", self.sampler, SAMPLERS)
    within_memory(self.estimate(), "lower eval.n_samples")     # refuses what the machine cannot hold
"""
from __future__ import annotations

import math
import numbers
import os
from typing import Any, Callable, Iterable, Mapping

from .registry import did_you_mean

__all__ = ["ConfigError", "finite", "positive", "non_negative", "in_range", "probability", "at_least", "choice",
           "interval", "nonempty", "check", "machine_memory", "format_bytes", "within_memory", "check_device", "check_dtype",
           "DTYPES"]


class ConfigError(ValueError):
    """A bad config value: `field`, `value`, `problem` and `fix`; str() is '<field>=<value> <problem> (<fix>)'."""

    def __init__(self, field: str, value: Any, problem: str, fix: str | None = None):
        self.field, self.value, self.problem, self.fix = field, value, problem, fix
        super().__init__(self.statement + (f" ({fix})" if fix else ""))

    @property
    def statement(self) -> str:
        """'<field>=<value> <problem>', without the fix."""
        return f"{self.field}={_show(self.value)} {self.problem}"

    def at(self, prefix: str) -> "ConfigError":
        """The same error with `prefix` (a dotted group path such as 'prior.train.') before the field name."""
        if not prefix or self.field.startswith(prefix):
            return self
        return ConfigError(prefix + self.field, self.value, self.problem, self.fix)


class _Plain(str):
    """A value shown as it is (an amount such as '3.2 GiB'), not quoted like a string setting."""


def _show(v: Any) -> str:
    if isinstance(v, str) and not isinstance(v, _Plain):
        return repr(v)
    if isinstance(v, (tuple, list)):
        return "[" + ",".join(_show(x) for x in v) + "]"
    return str(v)


def _number(name: str, v: Any, fix: str | None = None) -> float:
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise ConfigError(name, v, "is not a number", fix or "set a number")
    if not math.isfinite(v):
        raise ConfigError(name, v, "is not a finite number", fix or "set a finite value")
    return v


def finite(name: str, v: Any) -> None:
    """A real number, not nan or ±inf."""
    _number(name, v)


def at_least(name: str, v: Any, lo: float, fix: str | None = None) -> None:
    """A finite number ≥ lo."""
    fix = fix or f"set a value of at least {lo:g}"
    if _number(name, v, fix) < lo:
        raise ConfigError(name, v, f"must be ≥ {lo:g}", fix)


def positive(name: str, v: Any, fix: str | None = None) -> None:
    """Sizes, counts, steps (integers ≥ 1) and rates, scales (finite numbers > 0)."""
    if isinstance(v, numbers.Integral) and not isinstance(v, bool):
        at_least(name, v, 1, fix or "set a positive integer")
    elif _number(name, v, fix := fix or "set a finite number greater than 0") <= 0:
        raise ConfigError(name, v, "must be > 0", fix)


def non_negative(name: str, v: Any, fix: str | None = None) -> None:
    """Counts where 0 turns something off, weights, decays: finite and ≥ 0."""
    at_least(name, v, 0, fix or "set 0 or a positive value")


def in_range(name: str, v: Any, lo: float, hi: float, *, lo_open: bool = False, hi_open: bool = False,
             fix: str | None = None) -> None:
    """lo ≤ v ≤ hi (strict at an open end)."""
    span = f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
    fix = fix or f"set a value in {span}"
    x = _number(name, v, fix)
    if x < lo or x > hi or (lo_open and x == lo) or (hi_open and x == hi):
        raise ConfigError(name, v, f"must be in {span}", fix)


def probability(name: str, v: Any) -> None:
    """A probability or share in [0, 1]."""
    in_range(name, v, 0.0, 1.0)


def interval(name: str, v: Any, lo: float, hi: float, *, lo_open: bool = False) -> None:
    """A pair (a, b) with lo ≤ a ≤ b ≤ hi (lo < a when lo_open): crop scales, aspect ratios, σ ranges."""
    if not isinstance(v, (tuple, list)) or len(v) != 2:
        raise ConfigError(name, v, "must be a pair of numbers (low, high)", f"write e.g. {name}=[{lo:g},{hi:g}]")
    for x in v:
        in_range(name, x, lo, hi, lo_open=lo_open)
    if v[0] > v[1]:
        raise ConfigError(name, v, "is not an interval: its low end is above its high end", "swap the two values")


def nonempty(name: str, v: Any, fix: str | None = None) -> None:
    """A string, tuple or list with at least one element."""
    if not v:
        raise ConfigError(name, v, "is empty", fix or "give at least one value")


def choice(name: str, v: Any, options: Iterable[Any], what: str | None = None) -> None:
    """One of `options`, with a did-you-mean for near misses; `what` names the kind ('is an unknown sampler')."""
    options = list(options)
    if v not in options:
        hint = did_you_mean(str(v), [str(o) for o in options])
        raise ConfigError(name, v, (f"is an unknown {what}" if what else "is not a valid choice")
                          + (f".{hint}" if hint else ""),
                          f"choose one of {', '.join(str(o) for o in options)}")


_RULES: Mapping[str, Callable[[str, Any], None]] = {"finite": finite, "positive": positive,
                                                     "non_negative": non_negative, "probability": probability}


def check(obj: Any, **rules: Iterable[str]) -> None:
    """Apply named rules to fields of `obj`: check(self, positive=("steps", "lr"), probability=("ema",)).
    Rules: finite, positive, non_negative, probability; a None value (an optional field left unset) passes."""
    for rule, names in rules.items():
        fn = _RULES[rule]
        for name in names:
            value = getattr(obj, name)
            if value is not None:
                fn(name, value)


# ----------------------------------------------------------------------------- resources
def machine_memory() -> int:
    """Physical memory of this machine in bytes (0 when unknown)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        try:
            import psutil

            return int(psutil.virtual_memory().total)
        except Exception:   # noqa: BLE001 - no way to tell: do not refuse
            return 0


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} PiB"


def within_memory(parts: Mapping[str, float], fix: str, available: int | None = None) -> None:
    """Refuse (ConfigError naming the estimate and its largest parts) a run whose estimated memory, the sum of
    `parts` ({what: bytes}), exceeds the machine's physical memory."""
    available = machine_memory() if available is None else available
    total = sum(parts.values())
    if available and total > available:
        top = sorted(parts.items(), key=lambda kv: -kv[1])[:3]
        raise ConfigError("memory estimate", _Plain(format_bytes(total)),
                          f"exceeds this machine's {format_bytes(available)} (largest: "
                          + ", ".join(f"{k} {format_bytes(v)}" for k, v in top) + ")", fix)


# ----------------------------------------------------------------------------- device and dtype
DTYPES = ("float32", "bfloat16")   # what runs support (--dtype)


def check_device(device: str) -> str:
    """'auto', 'cpu', 'cuda', 'cuda:N' or 'mps' that exists on this machine; ConfigError otherwise."""
    import torch

    text = str(device).strip().lower()
    if text == "auto":
        return text
    fix = "use --device auto, cpu" + (", cuda" if torch.cuda.is_available() else "") + (
        ", mps" if torch.backends.mps.is_available() else "")
    try:
        dev = torch.device(text)
    except (RuntimeError, ValueError):
        raise ConfigError("--device", device, "is not a device", fix) from None
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if not n:
            raise ConfigError("--device", device, "asks for CUDA, which this machine does not have", fix)
        if dev.index is not None and dev.index >= n:
            raise ConfigError("--device", device, f"does not exist: this machine has {n} CUDA device(s)",
                              f"use cuda:0 … cuda:{n - 1}")
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigError("--device", device, "asks for Apple MPS, which is not available here", fix)
    elif dev.type != "cpu":
        raise ConfigError("--device", device, f"is a {dev.type} device, which runs do not support", fix)
    return text


def check_dtype(dtype: str, device: str = "cpu") -> str:
    """One of DTYPES (aliases fp32, bf16), supported by `device`; its canonical name, or ConfigError."""
    import torch

    text = {"fp32": "float32", "float": "float32", "bf16": "bfloat16"}.get(str(dtype).strip().lower(),
                                                                          str(dtype).strip().lower())
    choice("--dtype", text if text in DTYPES else dtype, DTYPES)
    cuda = str(device).startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if text == "bfloat16" and cuda and not torch.cuda.is_bf16_supported():
        raise ConfigError("--dtype", dtype, f"is not supported by {device}", "use --dtype float32")
    return text
