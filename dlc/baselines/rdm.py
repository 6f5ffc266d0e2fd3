"""RDM-style prior over continuous representations (RCG, Li, Katabi, He 2024): a residual-MLP diffusion model
so that RCG / DINOv2-conditioned DiTs can generate unconditionally (r ~ p(r), then x ~ p(x | r)).

SimpleMLP (RCG `rdm/modules/diffusionmodules/latentmlp.py`): Linear(dim → width), `depth` ResBlocks, then
LN → SiLU → zero-initialised Linear(width → dim). ResBlock: [LN, SiLU, Linear] + [SiLU, Linear](t_emb), then
LN → SiLU → Dropout → zero-initialised Linear, plus the residual. t_emb: sinusoidal(width) → Linear → SiLU → Linear.
Diffusion: T=1000, LDM "linear" β = linspace(√0.0015, √0.0195)², x0-prediction, L2 loss (dlc.dit.diffusion with
those parameters), DDIM sampling (250 steps, η=1 by default).
Representations can be standardised per dimension with dataset statistics kept in the model (raw DINOv2
embeddings are far from unit scale; RCG's representations are already standardised per sample).
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn

from ..common import PerSampleRNG, autocast, count_params, load_checkpoint, resolve_device, save_checkpoint
from ..dit.diffusion import GaussianDiffusion, get_betas
from ..dit.models import timestep_embedding
from ..dit.train import TrainResult, train_diffusion
from ..validate import check, in_range

__all__ = ["RDMConfig", "SimpleMLP", "RDM_MODELS", "rdm_diffusion", "train_rdm", "sample_rdm", "save_rdm",
           "load_rdm"]


@dataclass(frozen=True)
class RDMConfig:
    """SimpleMLP size. Defaults: RCG's `mocov3vitb_simplemlp_l12_w1536` (256-d representations)."""
    dim: int = 256
    width: int = 1536
    time_embed_dim: int = 256
    depth: int = 12
    dropout: float = 0.0

    def __post_init__(self):
        check(self, positive=("dim", "width", "time_embed_dim", "depth"))
        in_range("dropout", self.dropout, 0.0, 1.0, hi_open=True)


#################################################################################
#                                   SimpleMLP                                   #
#################################################################################

def _zero(layer: nn.Linear) -> nn.Linear:
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class ResBlock(nn.Module):
    """Pre-norm residual MLP block with an additive timestep embedding; its output layer starts at zero."""

    def __init__(self, width: int, emb_dim: int, dropout: float):
        super().__init__()
        self.in_layers = nn.Sequential(nn.LayerNorm(width), nn.SiLU(), nn.Linear(width, width))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, width))
        self.out_layers = nn.Sequential(nn.LayerNorm(width), nn.SiLU(), nn.Dropout(dropout),
                                        _zero(nn.Linear(width, width)))

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        return x + self.out_layers(self.in_layers(x) + self.emb_layers(emb))


class SimpleMLP(nn.Module):
    """Residual MLP denoiser over (N, dim) vectors; predicts x0. Holds the data standardisation (mean, std)."""

    def __init__(self, config: RDMConfig = RDMConfig()):
        super().__init__()
        self.config = c = config
        self.time_embed = nn.Sequential(nn.Linear(c.width, c.time_embed_dim), nn.SiLU(),
                                        nn.Linear(c.time_embed_dim, c.time_embed_dim))
        self.input_proj = nn.Linear(c.dim, c.width)
        self.res_blocks = nn.ModuleList([ResBlock(c.width, c.time_embed_dim, c.dropout) for _ in range(c.depth)])
        self.out = nn.Sequential(nn.LayerNorm(c.width, eps=1e-6), nn.SiLU(), _zero(nn.Linear(c.width, c.dim)))
        self.register_buffer("data_mean", torch.zeros(c.dim))
        self.register_buffer("data_std", torch.ones(c.dim))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if x.ndim != 2 or x.shape[1] != self.config.dim:
            raise ValueError(f"x must have shape (N, {self.config.dim}); got {tuple(x.shape)}")
        emb = self.time_embed(timestep_embedding(t, self.config.width))     # (N, E)
        h = self.input_proj(x)                                              # (N, W)
        for block in self.res_blocks:
            h = block(h, emb)
        return self.out(h)                                                  # (N, dim)

    def normalize(self, r: torch.Tensor) -> torch.Tensor:
        return (r - self.data_mean) / self.data_std

    def denormalize(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.data_std + self.data_mean


RDM_MODELS: dict[str, Callable[..., SimpleMLP]] = {
    "RDM-L12-W1536": lambda **kw: SimpleMLP(RDMConfig(**kw)),                                   # RCG
    "RDM-small": lambda **kw: SimpleMLP(RDMConfig(**{"width": 512, "depth": 6, **kw})),
    "RDM-tiny": lambda **kw: SimpleMLP(RDMConfig(**{"width": 64, "time_embed_dim": 32, "depth": 2, **kw})),
}


def rdm_diffusion(steps: int | str | None = None, *, num_timesteps: int = 1000, linear_start: float = 0.0015,
                  linear_end: float = 0.0195) -> GaussianDiffusion:
    """RCG's RDM process: LDM "linear" β, x0-prediction, fixed (posterior) variance, L2 loss."""
    betas = get_betas("ldm_linear", num_timesteps, start=linear_start, end=linear_end)
    return GaussianDiffusion(betas, mean_type="x0", var_type="fixed_small").respace(steps)


#################################################################################
#                              Training and sampling                            #
#################################################################################

def _check_vectors(r: torch.Tensor, dim: int) -> None:
    if not isinstance(r, torch.Tensor) or r.ndim != 2 or r.shape[1] != dim or not r.dtype.is_floating_point:
        got = tuple(r.shape) if isinstance(r, torch.Tensor) else type(r).__name__
        raise ValueError(f"representations must be a float tensor of shape (N, {dim}); got {got}")


def train_rdm(model: SimpleMLP, diffusion: GaussianDiffusion, reps: torch.Tensor, *, steps: int,
              batch_size: int = 512, lr: float = 5.12e-4, weight_decay: float = 0.01, ema_decay: float = 0.9999,
              ema_warmup: bool = False, normalize: bool = False, seed: int = 0, device: str | torch.device = "auto",
              log_every: int = 100, callback: Callable[[int, dict], None] | None = None,
              save_path: str | Path | None = None, save_every: int | None = None) -> TrainResult:
    """Fit the prior p(r) on representations (N, dim). RCG recipe: AdamW lr 1e-6·512, wd 0.01, EMA 0.9999.
    normalize=True standardises each dimension with the data's mean/std (stored in the model and undone by
    sample_rdm); use it for raw embeddings."""
    m = getattr(model, "module", model)
    _check_vectors(reps, m.config.dim)
    with torch.no_grad():
        if normalize:
            m.data_mean.copy_(reps.double().mean(0).float())
            m.data_std.copy_(reps.double().std(0).float().clamp_min(1e-6))
        else:
            m.data_mean.zero_()
            m.data_std.fill_(1.0)
        data = m.normalize(reps.float().to(m.data_mean.device))
    save = None
    if save_path is not None:
        save = lambda ema_model, step: save_rdm(save_path, ema_model, meta={"step": step})
    return train_diffusion(model, diffusion, data, None, steps=steps, batch_size=batch_size, lr=lr,
                           weight_decay=weight_decay, ema_decay=ema_decay, ema_warmup=ema_warmup, seed=seed,
                           device=device, log_every=log_every, callback=callback, save=save, save_every=save_every)


@torch.no_grad()
def sample_rdm(model: SimpleMLP, diffusion: GaussianDiffusion, num_samples: int, *, steps: int | str | None = 250,
               eta: float = 1.0, seed: int = 0, start_index: int = 0, batch_size: int = 1024,
               device: str | torch.device = "auto") -> torch.Tensor:
    """r ~ p(r) by DDIM over `steps` respaced steps (η=1 as RCG); returns (N, dim) float32 on the CPU, in the
    original (de-standardised) scale. Sample i uses the noise of global index start_index + i."""
    if num_samples < 0 or batch_size < 1:
        raise ValueError(f"num_samples must be ≥ 0 and batch_size ≥ 1 (got {num_samples}, {batch_size})")
    dev = resolve_device(device)
    m = getattr(model, "module", model)
    was_training = m.training
    m.eval().to(dev)
    sdiff = diffusion.respace(steps)
    out = []
    try:
        for lo in range(0, num_samples, batch_size):
            hi = min(lo + batch_size, num_samples)
            rng = PerSampleRNG(seed, range(start_index + lo, start_index + hi), device=dev)
            with autocast(dev):
                z = sdiff.ddim_sample_loop(m, (hi - lo, m.config.dim), rng, eta=eta)
            out.append(m.denormalize(z.float()).cpu())
    finally:
        m.train(was_training)
    return torch.cat(out) if out else torch.empty(0, m.config.dim)


def save_rdm(path: str | Path, model: nn.Module, meta: Mapping[str, Any] | None = None) -> Path:
    model = getattr(model, "module", model)
    return save_checkpoint(path, model, config=model.config,
                           meta={"kind": "rdm", "params": count_params(model), **(meta or {})})


def load_rdm(path: str | Path, device: str | torch.device = "cpu") -> tuple[SimpleMLP, dict]:
    state, config, meta = load_checkpoint(path)
    known = {f.name for f in fields(RDMConfig)}
    if not config or set(config) - known:
        raise ValueError(f"{path}: not an RDM checkpoint (config keys {sorted(config)}; expected {sorted(known)})")
    model = SimpleMLP(RDMConfig(**config))
    model.load_state_dict(state)
    return model.to(device).eval(), meta
