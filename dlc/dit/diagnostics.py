"""Does a conditional DiT use its condition? The code-swap gap (a forward pass over held-out images, seconds).

For held-out clean images x_0 with their own conditions c, noise them to a time t drawn uniformly inside each
noise-level bin and measure the clean-image error ‖x̂_0 − x_0‖² (mean over pixels) of the model's prediction
given (a) the true c, (b) a shuffled c (the condition of another image: row i gets row i−1's), (c) the null
condition. A model that ignores c has ratios shuffled/true = null/true = 1 in every bin; one that uses it has
large ratios at high noise, where x_t no longer determines x_0. The error is read in x_0 units on purpose: in
ε units a gap at high noise is down-weighted by the SNR and vanishes (< 1 % of the ε-loss at laptop scale).

Noise level: flow time t ∈ [0, 1] for `FlowMatching`; t / T for a `GaussianDiffusion` (index ⌊u·T⌋).
Noise and times come from `PerSampleRNG(seed, indices)`, so the numbers depend only on the images' indices.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..common import PerSampleRNG, resolve_device
from .diffusion import GaussianDiffusion, mean_flat
from .flow import FlowMatching

__all__ = ["DEFAULT_BINS", "code_swap_gap"]

DEFAULT_BINS = ((0.0, 0.5), (0.5, 0.7), (0.7, 0.85), (0.85, 1.0))


def _noisy_and_denoise(process: GaussianDiffusion | FlowMatching, model_fn, x0: torch.Tensor, u: torch.Tensor,
                       noise: torch.Tensor):
    """(x_t, a function c ↦ x̂_0) at noise level u ∈ [0, 1) for either process."""
    if isinstance(process, FlowMatching):
        t = u.clamp(min=1e-4)
        x_t = process.q_sample(x0, t, noise)
        return lambda c, drop: process.pred_xstart(model_fn(x_t, process.model_timesteps(t), c, drop), x_t, t)
    t = (u * process.num_timesteps).long().clamp(max=process.num_timesteps - 1)
    x_t = process.q_sample(x0, t, noise)
    return lambda c, drop: process.p_mean_variance(model_fn(x_t, process.model_timesteps(t), c, drop), x_t,
                                                   t)["pred_xstart"]


@torch.no_grad()
def code_swap_gap(model: nn.Module, process: GaussianDiffusion | FlowMatching, x0: torch.Tensor, cond: torch.Tensor,
                  *, bins: Sequence[tuple[float, float]] = DEFAULT_BINS, seed: int = 0,
                  indices: Sequence[int] | None = None, batch_size: int = 128,
                  device: str | torch.device = "cpu") -> list[dict]:
    """One row per bin: {"t_lo", "t_hi", "true", "shuffled", "null", "shuffled_ratio", "null_ratio", "n"}.

    model: a conditional DiT called as model(x_t, t, c, drop=mask); x0: (N, C, H, W) held-out inputs of the DiT
    (pixels in [−1, 1] or latents); cond: their N conditions (row i belongs to image i); N ≥ 2.
    """
    n = len(x0)
    if n < 2 or len(cond) != n:
        raise ValueError(f"need ≥ 2 images with one condition each (got {n} images, {len(cond)} conditions)")
    if any(not 0 <= lo < hi <= 1 for lo, hi in bins):
        raise ValueError(f"bins must be intervals inside [0, 1] (got {list(bins)})")
    ids = list(range(n)) if indices is None else [int(i) for i in indices]
    dev = resolve_device(device)
    m = getattr(model, "module", model)
    was_training = m.training
    m.eval().to(dev)
    shuffled = torch.roll(cond, 1, dims=0)                               # image i gets the condition of i−1
    fn = lambda x, t, c, drop: m(x, t, c, drop=drop)
    sums = torch.zeros(len(bins), 3, dtype=torch.float64)
    try:
        for lo in range(0, n, batch_size):
            sl = slice(lo, min(n, lo + batch_size))
            x = x0[sl].to(dev).float()
            k = len(x)
            for b, (t_lo, t_hi) in enumerate(bins):
                rng = PerSampleRNG(seed, ids[sl], device=dev, stream=11 + b)
                u = t_lo + (t_hi - t_lo) * rng.rand()
                denoise = _noisy_and_denoise(process, fn, x, u, rng.randn(*x.shape[1:]))
                keep, null = torch.zeros(k, dtype=torch.bool, device=dev), torch.ones(k, dtype=torch.bool, device=dev)
                for j, (c, drop) in enumerate(((cond[sl], keep), (shuffled[sl], keep), (cond[sl], null))):
                    sums[b, j] += mean_flat((denoise(c.to(dev), drop).float() - x) ** 2).double().sum().cpu()
    finally:
        m.train(was_training)
    rows = []
    for b, (t_lo, t_hi) in enumerate(bins):
        true, shuf, null = (sums[b] / n).tolist()
        rows.append({"t_lo": float(t_lo), "t_hi": float(t_hi), "true": true, "shuffled": shuf, "null": null,
                     "shuffled_ratio": shuf / true if true > 0 else float("inf"),
                     "null_ratio": null / true if true > 0 else float("inf"), "n": n})
    return rows
