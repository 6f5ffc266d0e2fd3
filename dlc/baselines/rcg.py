"""Continuous representations for the RCG-style baselines: a frozen random projection of the backbone embedding
to 256-d, standardised per sample (RCG), and the raw backbone (DINOv2) embedding.

RCG (Li, Katabi, He 2024) standardises its 256-d MoCo-v3 representation per sample: r ← (r − mean(r)) / std(r)
over the 256 dimensions (`rdm/models/diffusion/ddpm.py::get_input`, torch.std, i.e. unbiased). The DLC reference
defines (but never calls) `vit_large_rcg`, a randomly initialised MLP 1024 → 2048 → GELU → 2048 → GELU → 256 with
zero biases and PyTorch's default weight init, applied to the DINOv2 embedding; `RCGProjector` is that MLP,
seeded so that a config reproduces the same projection anywhere.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from ..common import load_checkpoint, save_checkpoint
from ..validate import check, non_negative

__all__ = ["RCGProjectorConfig", "RCGProjector", "standardize_per_sample", "rcg_representation",
           "raw_representation", "REPRESENTATIONS", "save_projector", "load_projector"]


@dataclass(frozen=True)
class RCGProjectorConfig:
    """The frozen random MLP in_dim → hidden → GELU → hidden → GELU → out_dim (DINOv2 ViT-L: in_dim 1024)."""
    in_dim: int = 1024
    hidden: int = 2048
    out_dim: int = 256
    seed: int = 0

    def __post_init__(self):
        non_negative("in_dim", self.in_dim, "set the embedding's dimension (0: to be filled in from the data)")
        check(self, positive=("hidden", "out_dim"))


def standardize_per_sample(r: torch.Tensor) -> torch.Tensor:
    """(N, d) → (r − mean) / std along d (unbiased std, as RCG's torch.std)."""
    if r.ndim != 2 or r.shape[1] < 2:
        raise ValueError(f"expected representations of shape (N, d) with d ≥ 2; got {tuple(r.shape)}")
    r = r.float()
    std = r.std(dim=1, keepdim=True).clamp_min(torch.finfo(r.dtype).tiny)
    return (r - r.mean(dim=1, keepdim=True)) / std


class RCGProjector(nn.Module):
    """Frozen, seeded random MLP projecting backbone embeddings to RCG's 256-d representation space."""

    def __init__(self, config: RCGProjectorConfig = RCGProjectorConfig()):
        super().__init__()
        self.config = c = config
        self.mlp = nn.Sequential(nn.Linear(c.in_dim, c.hidden), nn.GELU(), nn.Linear(c.hidden, c.hidden), nn.GELU(),
                                 nn.Linear(c.hidden, c.out_dim))
        self.reset_parameters()
        self.requires_grad_(False).eval()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """PyTorch's default Linear weight init U(±1/√fan_in), drawn from a generator seeded by config.seed;
        zero biases."""
        g = torch.Generator().manual_seed(self.config.seed)
        for layer in self.mlp:
            if isinstance(layer, nn.Linear):
                bound = 1.0 / math.sqrt(layer.in_features)
                layer.weight.copy_((torch.rand(layer.weight.shape, generator=g, dtype=torch.float64) * 2 - 1) * bound)
                layer.bias.zero_()

    def train(self, mode: bool = True) -> "RCGProjector":  # always frozen
        return super().train(False)

    @torch.no_grad()
    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(N, in_dim) backbone embeddings → (N, out_dim) projections (not yet standardised)."""
        if not isinstance(features, torch.Tensor) or features.ndim != 2 or features.shape[1] != self.config.in_dim:
            got = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
            raise ValueError(f"features must have shape (N, {self.config.in_dim}) (the backbone embedding "
                             f"dimension; DINOv2 ViT-L/14 gives 1024); got {got}")
        w = self.mlp[0].weight
        return self.mlp(features.to(device=w.device, dtype=w.dtype))


@torch.no_grad()
def rcg_representation(features: torch.Tensor, projector: RCGProjector) -> torch.Tensor:
    """RCG-style representation: the frozen random projection, standardised per sample. (N, in_dim) → (N, 256)."""
    return standardize_per_sample(projector(features))


@torch.no_grad()
def raw_representation(features: torch.Tensor) -> torch.Tensor:
    """The raw backbone embedding as float32 (the "DINOv2" baseline). (N, d) → (N, d)."""
    if not isinstance(features, torch.Tensor) or features.ndim != 2:
        raise ValueError("features must be a (N, d) tensor")
    return features.float()


REPRESENTATIONS = {"rcg": rcg_representation, "dinov2": raw_representation}


def save_projector(path: str | Path, projector: RCGProjector, meta: Mapping[str, Any] | None = None) -> Path:
    return save_checkpoint(path, projector, config=projector.config, meta={"kind": "rcg_projector", **(meta or {})})


def load_projector(path: str | Path, device: str | torch.device = "cpu") -> RCGProjector:
    state, config, _ = load_checkpoint(path)
    proj = RCGProjector(RCGProjectorConfig(**config))
    proj.load_state_dict(state)
    return proj.to(device)
