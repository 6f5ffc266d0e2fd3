"""Sampling a DiT: for a Gaussian diffusion ancestral (DDPM, 250 respaced steps by default) or DDIM; for flow
matching Euler or Heun ODE steps; with classifier-free guidance.

Every random number of sample i comes from `PerSampleRNG(seed, [i])`, where i is the sample's *global*
index (start_index + row, or `indices`), so the result does not depend on the batch size, on how the
samples are split across processes, or on which other samples are drawn alongside.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from torch import nn

from ..common import PerSampleRNG, autocast, resolve_device
from .diffusion import GaussianDiffusion
from .flow import FLOW_SAMPLERS, FlowMatching
from .vae import PixelVAE, SDVAE, to_uint8

__all__ = ["sample_dit", "decode_latents"]


def _rows(cond: Any, sl: slice) -> Any:
    return None if cond is None else cond[sl]


@torch.no_grad()
def sample_dit(model: nn.Module, diffusion: GaussianDiffusion | FlowMatching, cond: Any = None, *,
               num_samples: int | None = None,
               cfg_scale: float = 1.0, guided_channels: int | None = None, steps: int | str | None = 250,
               seed: int = 0, start_index: int = 0, indices: Sequence[int] | None = None, batch_size: int = 64,
               device: str | torch.device = "auto", sampler: str = "ddpm", eta: float = 0.0,
               clip_denoised: bool = False, progress: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """Draw x ~ p(x | cond) with `model` (a dlc.dit.DiT); returns float32 latents (N, C, H, W) on the CPU.

    cond: N conditions (tokens (N, L), soft codes (N, L, V), vectors (N, d), labels (N,)), or None for an
      unconditional DiT (then give num_samples).
    cfg_scale: guidance scale s (1: the conditional model, no null pass); guided_channels: how many leading ε
      channels are guided (None: all in_channels, the DLC convention; 3: the DiT/RCG convention).
    steps: respacing of a Gaussian `diffusion` (e.g. 250; None keeps it as given) or the ODE steps of a flow.
    sampler: "ddpm" (ancestral) or "ddim" for a GaussianDiffusion; "euler" or "heun" for a FlowMatching.
    seed, start_index / indices: sample i uses the noise of global index start_index + i (or indices[i]).
    """
    flow = isinstance(diffusion, FlowMatching)
    samplers = FLOW_SAMPLERS if flow else ("ddpm", "ddim")
    if sampler not in samplers:
        raise ValueError(f"sampler={sampler!r} for {type(diffusion).__name__}; choose one of {samplers}")
    if flow and (not isinstance(steps, int) or steps < 1):
        raise ValueError(f"flow matching needs an integer number of ODE steps ≥ 1 (got steps={steps!r})")
    if batch_size < 1:
        raise ValueError(f"batch_size must be ≥ 1; got {batch_size}")
    n = len(cond) if cond is not None else num_samples
    if n is None:
        raise ValueError("pass cond (one condition per sample) or, for an unconditional DiT, num_samples")
    if cond is not None and num_samples is not None and num_samples != len(cond):
        raise ValueError(f"num_samples={num_samples} but cond has {len(cond)} rows")
    ids = list(range(start_index, start_index + n)) if indices is None else [int(i) for i in indices]
    if len(ids) != n:
        raise ValueError(f"indices has {len(ids)} entries for {n} samples")
    dev = resolve_device(device)
    m = getattr(model, "module", model)
    cfg = m.config
    if cfg.cond == "none" and cond is not None:
        raise ValueError("this DiT is unconditional (cond='none'); pass cond=None and num_samples")
    if cfg.cond != "none":
        if cond is None:
            raise ValueError(f"this DiT is conditioned on {cfg.cond!r}; pass cond (one row per sample)")
        m.y_embedder.check(cond, n)
    guide = cfg_scale != 1.0
    if guide and cond is None:
        raise ValueError("cfg_scale ≠ 1 needs a condition (classifier-free guidance)")
    sdiff = diffusion if flow else diffusion.respace(steps)
    shape = (cfg.in_channels, cfg.input_size, cfg.input_size)

    was_training = m.training
    m.eval().to(dev)
    out = []
    try:
        for lo in range(0, n, batch_size):
            sl = slice(lo, min(lo + batch_size, n))
            c = _rows(cond, sl)
            c = c.to(dev) if isinstance(c, torch.Tensor) else c
            rng = PerSampleRNG(seed, ids[sl], device=dev)
            if guide:
                model_fn = lambda x, t: m.forward_with_cfg(x, t, c, cfg_scale, guided_channels)
            else:
                model_fn = lambda x, t: m(x, t, c)
            with autocast(dev):
                if flow:
                    x = sdiff.sample_loop(model_fn, (sl.stop - sl.start, *shape), rng, steps=steps, sampler=sampler,
                                          clip_denoised=clip_denoised, progress=progress)
                elif sampler == "ddpm":
                    x = sdiff.p_sample_loop(model_fn, (sl.stop - sl.start, *shape), rng,
                                            clip_denoised=clip_denoised, progress=progress)
                else:
                    x = sdiff.ddim_sample_loop(model_fn, (sl.stop - sl.start, *shape), rng, eta=eta,
                                               clip_denoised=clip_denoised, progress=progress)
            out.append(x.float().cpu())
    finally:
        m.train(was_training)
    return torch.cat(out) if out else torch.empty(0, *shape)


@torch.no_grad()
def decode_latents(vae: SDVAE | PixelVAE, latents: torch.Tensor, *, batch_size: int = 32,
                   device: str | torch.device = "auto") -> torch.Tensor:
    """Latents (N, C, h, w) → uint8 images (N, H, W, 3) via vae.decode and clamp(127.5x + 128)."""
    dev = resolve_device(device)
    vae = vae.to(dev)
    return torch.cat([to_uint8(vae.decode(latents[i:i + batch_size].to(dev))).cpu()
                      for i in range(0, len(latents), batch_size)]) if len(latents) else \
        torch.empty(0, dtype=torch.uint8)
