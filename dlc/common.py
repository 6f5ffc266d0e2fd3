"""Small utilities shared by every model in `dlc/`: devices and dtypes, per-sample seeding,
checkpoints (safetensors + JSON config), EMA and atomic file writes.

`dlc/` never imports the benchmark harness; the harness imports `dlc/`.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from .io import atomic_write, atomic_write_bytes

__all__ = [
    "resolve_device", "resolve_dtype", "autocast", "seed_for", "PerSampleRNG",
    "atomic_write", "atomic_write_bytes", "save_checkpoint", "load_checkpoint", "EMA",
    "config_to_dict", "count_params",
]


#################################################################################
#                               Devices and dtypes                              #
#################################################################################

_DTYPES = {
    "float32": torch.float32, "fp32": torch.float32, "float": torch.float32,
    "float64": torch.float64, "fp64": torch.float64, "double": torch.float64,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
}


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """'auto' (or None) picks CUDA when present, else CPU. Any torch device string is accepted."""
    if isinstance(device, torch.device):
        return device
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available; use device='cpu' or 'auto'")
    return dev


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    try:
        return _DTYPES[str(dtype).lower()]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {sorted(set(_DTYPES))}") from None


def autocast(device: torch.device | str, enabled: bool = True, dtype: torch.dtype = torch.bfloat16):
    """bf16 autocast on CUDA when enabled; a no-op context on CPU (CPU training stays float32)."""
    device = torch.device(device)
    if enabled and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=dtype)
    return contextlib.nullcontext()


#################################################################################
#                    Seeds derived from global sample indices                   #
#################################################################################

_MASK64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def seed_for(seed: int, index: int, stream: int = 0) -> int:
    """A 63-bit seed for global sample `index` of a run seeded with `seed`.

    Independent of batch size, rank and world size: sample i always gets the same randomness.
    `stream` separates independent uses (e.g. noise vs. class draws) for the same sample.
    """
    h = _splitmix64((int(seed) & _MASK64) ^ _splitmix64(int(stream) & _MASK64))
    return _splitmix64(h ^ (int(index) & _MASK64)) & ((1 << 63) - 1)


class PerSampleRNG:
    """One torch.Generator per global sample index; draws are stacked along dim 0.

    Use it for every random draw during sampling so results do not depend on how samples are
    split into batches or across processes:

        rng = PerSampleRNG(seed, indices=range(start, start + B), device=dev)
        x = rng.randn(C, H, W)          # (B, C, H, W)
    """

    def __init__(self, seed: int, indices: Sequence[int] | torch.Tensor, device: str | torch.device = "cpu",
                 stream: int = 0):
        if isinstance(indices, torch.Tensor):
            indices = indices.tolist()
        self.indices = [int(i) for i in indices]
        self.device = torch.device(device)
        self.generators = []
        for i in self.indices:
            g = torch.Generator(device=self.device)
            g.manual_seed(seed_for(seed, i, stream))
            self.generators.append(g)

    def __len__(self) -> int:
        return len(self.generators)

    def randn(self, *shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return torch.stack([torch.randn(shape, generator=g, device=self.device, dtype=dtype)
                            for g in self.generators])

    def rand(self, *shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return torch.stack([torch.rand(shape, generator=g, device=self.device, dtype=dtype)
                            for g in self.generators])

    def randint(self, high: int, *shape: int) -> torch.Tensor:
        return torch.stack([torch.randint(high, shape, generator=g, device=self.device)
                            for g in self.generators])

    def multinomial(self, probs: torch.Tensor, num_samples: int = 1, replacement: bool = False) -> torch.Tensor:
        """probs: (B, K) with B == len(self); returns (B, num_samples)."""
        if probs.shape[0] != len(self):
            raise ValueError(f"probs has {probs.shape[0]} rows but the RNG holds {len(self)} samples")
        return torch.stack([torch.multinomial(p, num_samples, replacement=replacement, generator=g)
                            for p, g in zip(probs, self.generators)])


#################################################################################
#                                 Atomic writes                                 #
#################################################################################

# atomic_write and atomic_write_bytes live in the torch-free `dlc.io`; re-exported here (see imports).


#################################################################################
#                     Checkpoints: safetensors + JSON config                    #
#################################################################################

def config_to_dict(config: Any) -> dict:
    """A dataclass (possibly nested), a mapping or None, as a JSON-able dict."""
    if config is None:
        return {}
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        config = dataclasses.asdict(config)
    return json.loads(json.dumps(dict(config), default=_json_default))


def _json_default(o: Any) -> Any:
    if isinstance(o, (tuple, set)):
        return list(o)
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, torch.dtype):
        return str(o).replace("torch.", "")
    if isinstance(o, torch.device):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def save_checkpoint(path: str | os.PathLike, model: nn.Module | Mapping[str, torch.Tensor],
                    config: Any = None, meta: Mapping[str, Any] | None = None) -> Path:
    """Save weights to `path` (.safetensors) and the model config + metadata to `path`.json.

    Both are written atomically; tensors are made contiguous and moved to CPU. Shared tensors
    (tied weights) are cloned so safetensors accepts them.
    """
    from safetensors.torch import save as st_save

    path = Path(path)
    if path.suffix != ".safetensors":
        path = path.with_suffix(".safetensors")
    state = model.state_dict() if isinstance(model, nn.Module) else dict(model)
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}
    sidecar = {"config": config_to_dict(config), "meta": dict(meta or {}),
               "sha256": hashlib.sha256(b"".join(k.encode() for k in sorted(tensors))).hexdigest()[:16]}
    atomic_write_bytes(path, st_save(tensors))
    atomic_write_bytes(path.with_suffix(".json"), json.dumps(sidecar, indent=2, default=_json_default).encode())
    return path


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[dict, dict, dict]:
    """Returns (state_dict, config dict, meta dict) saved by `save_checkpoint`."""
    from safetensors.torch import load_file

    path = Path(path)
    if path.suffix != ".safetensors":
        path = path.with_suffix(".safetensors")
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    state = load_file(str(path), device=str(device))
    side = path.with_suffix(".json")
    info = json.loads(side.read_text()) if side.exists() else {}
    return state, info.get("config", {}), info.get("meta", {})


#################################################################################
#                                      EMA                                      #
#################################################################################

class EMA:
    """Exponential moving average of a model's parameters (buffers are copied).

    With `warmup=True` the decay is min(decay, (1 + n) / (10 + n)) as in SEDD.
    """

    def __init__(self, model: nn.Module, decay: float = 0.9999, warmup: bool = False):
        import copy

        self.decay = float(decay)
        self.warmup = warmup
        self.num_updates = 0
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        model = getattr(model, "module", model)  # unwrap DDP
        self.num_updates += 1
        d = self.decay
        if self.warmup:
            d = min(d, (1 + self.num_updates) / (10 + self.num_updates))
        ema_params = dict(self.model.named_parameters())
        for name, p in model.named_parameters():
            ema_params[name].lerp_(p.detach(), 1.0 - d)
        ema_bufs = dict(self.model.named_buffers())
        for name, b in model.named_buffers():
            ema_bufs[name].copy_(b)

    def state_dict(self) -> dict:
        return self.model.state_dict()


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
