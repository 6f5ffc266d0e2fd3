"""A 4-layer MLP diffusion model for 2-D points, trained with the improved-DDPM recipe.

Nichol & Dhariwal (2021): cosine noise schedule (T = 1000), ε-prediction with a learned
interpolated variance (log Σ = v log β_t + (1 − v) log β̃_t), hybrid loss L_simple + λ·L_vlb
(λ = 0.001 on the full T-term VLB, i.e. weight T/1000 on the one sampled term, as in
improved-diffusion; the VLB term trains only the variance), and ancestral sampling on a respaced grid
of timesteps. Optional conditioning on a discrete index (mixture component), for the `oracle`
and `gmm` variants of the toy study.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


#################################################################################
#                                Noise schedule                                 #
#################################################################################

def cosine_alpha_bar(T: int, s: float = 0.008) -> np.ndarray:
    """ᾱ_t for t = 1..T from the cosine schedule, with β clipped at 0.999 (float64, (T,))."""
    f = lambda t: math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2
    betas = np.array([min(1 - f(i + 1) / f(i), 0.999) for i in range(T)], dtype=np.float64)
    return np.cumprod(1.0 - betas)


class Schedule:
    """Per-step quantities of a (possibly respaced) discrete-time Gaussian diffusion, float64."""

    def __init__(self, alpha_bar: np.ndarray, timesteps: np.ndarray):
        self.timesteps = np.asarray(timesteps, dtype=np.int64)        # original index of each step
        ab = np.asarray(alpha_bar, dtype=np.float64)
        ab_prev = np.append(1.0, ab[:-1])
        self.alpha_bar = ab
        self.betas = 1.0 - ab / ab_prev
        self.posterior_var = self.betas * (1.0 - ab_prev) / (1.0 - ab)
        # β̃_0 = 0: use β̃_1 in the log (as improved-DDPM does)
        self.posterior_log_var = np.log(np.append(self.posterior_var[1], self.posterior_var[1:])) \
            if len(ab) > 1 else np.log(self.betas)
        self.coef_x0 = self.betas * np.sqrt(ab_prev) / (1.0 - ab)
        self.coef_xt = (1.0 - ab_prev) * np.sqrt(1.0 - self.betas) / (1.0 - ab)

    def __len__(self) -> int:
        return len(self.alpha_bar)

    @staticmethod
    def cosine(T: int = 1000) -> "Schedule":
        return Schedule(cosine_alpha_bar(T), np.arange(T))

    def respace(self, steps: int) -> "Schedule":
        """`steps` evenly spaced timesteps of this schedule (the improved-DDPM respacing)."""
        if not 1 <= steps <= len(self):
            raise ValueError(f"sampling steps must be in [1, {len(self)}], got {steps}")
        idx = np.unique(np.round(np.linspace(0, len(self) - 1, steps)).astype(np.int64))
        return Schedule(self.alpha_bar[idx], self.timesteps[idx])

    def tensor(self, name: str, t: torch.Tensor) -> torch.Tensor:
        """Gather array `name` at integer steps t, as float32 (N, 1) on t's device."""
        arr = torch.as_tensor(getattr(self, name), dtype=torch.float64, device=t.device)
        return arr[t].float().unsqueeze(-1)


#################################################################################
#                                    Model                                      #
#################################################################################

def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)                    # (N, dim)


@dataclass(frozen=True)
class MLPConfig:
    hidden: int = 256
    layers: int = 4            # number of Linear layers (the paper's "4-layer MLP")
    t_dim: int = 64            # sinusoidal timestep embedding size
    n_classes: int = 0         # 0: unconditional; else conditioning on an index in [0, n_classes)
    c_dim: int = 64            # class embedding size


class DiffusionMLP(nn.Module):
    """ε and variance-interpolation prediction from (x_t, t[, c]): an MLP with SiLU activations."""

    def __init__(self, cfg: MLPConfig):
        super().__init__()
        self.cfg = cfg
        in_dim = 2 + cfg.t_dim + (cfg.c_dim if cfg.n_classes else 0)
        self.class_emb = nn.Embedding(cfg.n_classes, cfg.c_dim) if cfg.n_classes else None
        dims = [in_dim] + [cfg.hidden] * (cfg.layers - 1) + [4]
        self.net = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: torch.Tensor, t: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        h = [x, timestep_embedding(t, self.cfg.t_dim)]                                   # (N, 2), (N, t_dim)
        if self.class_emb is not None:
            if c is None:
                raise ValueError("this model is conditional: pass the component index c")
            h.append(self.class_emb(c))
        h = torch.cat(h, dim=-1)
        for i, lin in enumerate(self.net):
            h = lin(h)
            if i < len(self.net) - 1:
                h = F.silu(h)
        return h                                                                          # (N, 4): ε (2), v (2)


#################################################################################
#                                Loss and sampling                              #
#################################################################################

def normal_kl(mean1, logvar1, mean2, logvar2):
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def p_mean_logvar(out: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, sch: Schedule, clip_x0: float | None = None):
    """Mean and log-variance of p(x_{t-1} | x_t) from the network output (ε, v).

    `clip_x0` clamps the implied x̂0 to [-clip, clip] (ADM's clip_denoised, for data with known bounds)."""
    eps, v = out[:, :2], out[:, 2:]
    frac = (v + 1) / 2
    log_var = frac * sch.tensor("betas", t).log() + (1 - frac) * sch.tensor("posterior_log_var", t)
    ab = sch.tensor("alpha_bar", t)
    x0 = (x_t - (1 - ab).sqrt() * eps) / ab.sqrt()
    if clip_x0 is not None:
        x0 = x0.clamp(-clip_x0, clip_x0)
    mean = sch.tensor("coef_x0", t) * x0 + sch.tensor("coef_xt", t) * x_t
    return mean, log_var


def hybrid_loss(model: nn.Module, x0: torch.Tensor, c: torch.Tensor | None, sch: Schedule,
                generator: torch.Generator | None = None, vlb_weight: float = 1.0) -> torch.Tensor:
    n = x0.shape[0]
    t = torch.randint(0, len(sch), (n,), generator=generator, device=x0.device)
    noise = torch.randn(x0.shape, generator=generator, device=x0.device)
    ab = sch.tensor("alpha_bar", t)
    x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
    out = model(x_t, t, c)
    l_simple = ((out[:, :2] - noise) ** 2).mean(1)
    # VLB term with a frozen mean: it trains the variance only
    frozen = torch.cat([out[:, :2].detach(), out[:, 2:]], dim=1)
    mean, log_var = p_mean_logvar(frozen, x_t, t, sch)
    true_mean = sch.tensor("coef_x0", t) * x0 + sch.tensor("coef_xt", t) * x_t
    true_logvar = sch.tensor("posterior_log_var", t)
    kl = normal_kl(true_mean, true_logvar, mean, log_var).mean(1) / math.log(2.0)            # bits per dim
    nll0 = 0.5 * (math.log(2 * math.pi) + log_var + (x0 - mean) ** 2 / log_var.exp()).mean(1) / math.log(2.0)
    l_vlb = torch.where(t == 0, nll0, kl)
    return (l_simple + vlb_weight * len(sch) / 1000.0 * l_vlb).mean()


@torch.no_grad()
def sample(model: nn.Module, n: int, sch: Schedule, c: torch.Tensor | None = None,
           generator: torch.Generator | None = None, device: str | torch.device = "cpu",
           batch_size: int = 65536, clip_x0: float | None = None) -> torch.Tensor:
    """Ancestral sampling on `sch` (typically a respaced schedule); returns (n, 2) float32."""
    model.eval()
    out = []
    t_orig = torch.as_tensor(sch.timesteps, device=device)
    for s in range(0, n, batch_size):
        m = min(batch_size, n - s)
        cb = c[s:s + m] if c is not None else None
        x = torch.randn((m, 2), generator=generator, device=device)
        for i in reversed(range(len(sch))):
            step = torch.full((m,), i, device=device, dtype=torch.long)
            o = model(x, t_orig[step], cb)
            mean, log_var = p_mean_logvar(o, x, step, sch, clip_x0)
            if i > 0:
                x = mean + (0.5 * log_var).exp() * torch.randn((m, 2), generator=generator, device=device)
            else:
                x = mean
        out.append(x)
    return torch.cat(out)


@torch.no_grad()
def score(model: nn.Module, x: torch.Tensor, t: int, sch: Schedule, c: torch.Tensor | None = None) -> torch.Tensor:
    """Estimated score ∇ log p_t(x) = −ε̂(x, t) / √(1 − ᾱ_t) at original timestep t."""
    model.eval()
    tt = torch.full((x.shape[0],), int(t), dtype=torch.long, device=x.device)
    eps = model(x, tt, c)[:, :2]
    return -eps / math.sqrt(1.0 - float(sch.alpha_bar[int(t)]))


def train(model: nn.Module, data: torch.Tensor, labels: torch.Tensor | None, *, steps: int, batch_size: int,
          lr: float, seed: int, sch: Schedule | None = None, warmup: int = 100,
          callback: Callable[[int, float], None] | None = None) -> list[float]:
    """AdamW with linear warm-up then cosine decay; minibatches drawn with replacement. Returns the loss curve."""
    sch = sch or Schedule.cosine()
    g = torch.Generator(device=data.device).manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / max(1, warmup)) * (0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))
                                                             * 0.9 + 0.1))
    model.train()
    losses = []
    for step in range(steps):
        idx = torch.randint(0, data.shape[0], (batch_size,), generator=g, device=data.device)
        loss = hybrid_loss(model, data[idx], labels[idx] if labels is not None else None, sch, generator=g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        if callback is not None:
            callback(step, losses[-1])
    return losses
