"""Training loop for diffusion models over pre-extracted data (DiT on latents/pixels, RDM on vectors).

Works unchanged under `torchrun` (DDP through dlc.dist): each rank reads its shard of a shared epoch
permutation, the batch size is global, EMA and checkpoints live on every rank / are written by rank 0.
bf16 autocast is used on GPU only. All randomness (batches, timesteps, noise, condition drops) comes from
generators seeded from (seed, rank), so a run is reproducible.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from .. import dist as ddist
from ..common import EMA, autocast, seed_for
from .diffusion import GaussianDiffusion
from .flow import FlowMatching
from .models import save_dit

__all__ = ["TrainResult", "train_diffusion", "train_dit"]

Callback = Callable[[int, dict], None]


@dataclass
class TrainResult:
    """What a training run returns: the trained model, its EMA copy and the per-step losses."""
    model: nn.Module
    ema: nn.Module
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    monitor: list[dict] = field(default_factory=list)   # {"step": s, **monitor(ema, s)} every monitor_every steps


def _optimizer(params, lr: float, weight_decay: float, device: torch.device) -> torch.optim.Optimizer:
    fused = device.type in ("cpu", "cuda")
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=fused or None)


def train_diffusion(model: nn.Module, diffusion: GaussianDiffusion | FlowMatching, data: torch.Tensor,
                    cond: Any = None, *,
                    steps: int, batch_size: int, lr: float, weight_decay: float = 0.0, warmup_steps: int = 0,
                    ema_decay: float = 0.9999,
                    ema_warmup: bool = False, seed: int = 0, device: str | torch.device = "auto",
                    grad_clip: float | None = None, drop_prob: float = 0.0, log_every: int = 100,
                    callback: Callback | None = None, save: Callable[[nn.Module, int], Any] | None = None,
                    save_every: int | None = None, monitor: Callable[[nn.Module, int], dict] | None = None,
                    monitor_every: int | None = None) -> TrainResult:
    """Generic loop: model(x_t, t) or model(x_t, t, cond, drop=...) is trained with diffusion.training_losses at
    times diffusion.sample_timesteps (a GaussianDiffusion: uniform indices; a FlowMatching: flow times).

    data: (N, ...) training examples; cond: None or a tensor with N rows; drop_prob: per-row probability of
    the null condition; warmup_steps: the learning rate rises linearly from lr/warmup_steps to lr over the first
    warmup_steps steps (0: constant). callback(step, logs) is called every `log_every` steps and at the end on rank 0, with
    logs = {loss: mean over the interval, mse / vb: last step, lr, steps_per_s};
    save(ema_model, step) every `save_every` steps and at the end on rank 0; monitor(ema_model, step) → dict
    (e.g. `dlc.dit.diagnostics.code_swap_gap` on held-out data) every `monitor_every` steps and at the end on
    rank 0, kept in TrainResult.monitor.
    """
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be ≥ 1 (got steps={steps}, batch_size={batch_size})")
    if cond is not None and len(cond) != len(data):
        raise ValueError(f"cond has {len(cond)} rows but data has {len(data)}; they must match row for row")
    info = ddist.setup(device)
    dev = info.device
    if batch_size % info.world_size:
        raise ValueError(f"batch_size={batch_size} must be divisible by the world size {info.world_size}")
    local_bs = batch_size // info.world_size

    model = model.to(dev).train()
    ema = EMA(model, decay=ema_decay, warmup=ema_warmup)
    net = ddist.wrap_ddp(model, info)
    opt = _optimizer([p for p in model.parameters() if p.requires_grad], lr, weight_decay, dev)
    batches = ddist.index_stream(len(data), local_bs, info, seed)
    g = torch.Generator(device=dev).manual_seed(seed_for(seed, info.rank, stream=2))

    losses: list[torch.Tensor] = []
    watched: list[dict] = []
    t0 = time.perf_counter()
    for step in range(1, steps + 1):
        idx = next(batches)
        x = data[idx].to(dev, non_blocking=True).float()
        t = diffusion.sample_timesteps(local_bs, g, dev)
        noise = torch.randn(x.shape, generator=g, device=dev)
        if cond is None:
            model_fn = lambda xt, tt: net(xt, tt)
        else:
            c = cond[idx].to(dev, non_blocking=True)
            drop = torch.rand(local_bs, generator=g, device=dev) < drop_prob
            model_fn = lambda xt, tt: net(xt, tt, c, drop=drop)
        with autocast(dev):
            terms = diffusion.training_losses(model_fn, x, t, noise)
        loss = terms["loss"].float().mean()
        opt.zero_grad(set_to_none=True)
        if warmup_steps:
            for group in opt.param_groups:
                group["lr"] = lr * min(1.0, step / warmup_steps)
        loss.backward()
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        opt.step()
        ema.update(model)
        losses.append(loss.detach())

        last = step == steps
        if info.is_main and callback is not None and (step % log_every == 0 or last):
            recent = torch.stack(losses[-log_every:]).mean().item()
            logs = {"loss": recent, "mse": terms["mse"].mean().item(), "lr": lr,
                    "steps_per_s": step / (time.perf_counter() - t0)}
            if "vb" in terms:
                logs["vb"] = terms["vb"].mean().item()
            callback(step, logs)
        if info.is_main and save is not None and (last or (save_every and step % save_every == 0)):
            save(ema.model, step)
        if info.is_main and monitor is not None and (last or (monitor_every and step % monitor_every == 0)):
            watched.append({"step": step, **monitor(ema.model, step)})
    ddist.barrier()
    return TrainResult(model=model, ema=ema.model, losses=torch.stack(losses).float().cpu().tolist(),
                       seconds=time.perf_counter() - t0, monitor=watched)


def train_dit(model: nn.Module, diffusion: GaussianDiffusion | FlowMatching, latents: torch.Tensor, cond: Any = None, *,
              steps: int, batch_size: int = 256, lr: float = 1e-4, weight_decay: float = 0.0, warmup_steps: int = 0,
              ema_decay: float = 0.9999, ema_warmup: bool = False, seed: int = 0,
              device: str | torch.device = "auto", grad_clip: float | None = None, log_every: int = 100,
              callback: Callback | None = None, save_path: str | Path | None = None,
              save_every: int | None = None, monitor: Callable[[nn.Module, int], dict] | None = None,
              monitor_every: int | None = None) -> TrainResult:
    """Train a DiT on pre-extracted latents (N, C, H, W) (or pixels in [-1, 1]) with conditions `cond`
    (None for cond='none'; tokens (N, L), soft codes (N, L, V), vectors (N, d) or labels (N,)).

    DiT recipe: AdamW lr 1e-4, weight decay 0, EMA 0.9999, the null condition with the model's drop_prob.
    save_path: the EMA weights are written there (safetensors + config) every `save_every` steps and at the end;
    a '{step}' field in it (e.g. 'ckpt/step-{step:08d}') keeps one checkpoint per save instead of overwriting.
    """
    m = ddist.unwrap(model)
    cfg = getattr(m, "config", None)
    if cfg is None or not hasattr(cfg, "cond"):
        raise ValueError("train_dit expects a dlc.dit.DiT; use train_diffusion for other models")
    if cond is None and cfg.cond != "none":
        raise ValueError(f"this DiT is conditioned on {cfg.cond!r}: pass cond (one row per latent)")
    if cond is not None and cfg.cond == "none":
        raise ValueError("this DiT is unconditional (cond='none'); pass cond=None")
    if not isinstance(latents, torch.Tensor) or latents.ndim != 4:
        raise ValueError("latents must be a (N, C, H, W) tensor")
    m.check_inputs(latents[:1].float(), torch.zeros(1, dtype=torch.long), None if cond is None else cond[:1])
    if cond is not None:
        m.y_embedder.check(cond, len(latents))  # every row, once, before the first step
    save = None
    if save_path is not None:
        def save(ema_model: nn.Module, step: int) -> None:   # a '{step}' field in save_path: one file per save
            path = str(save_path).format(step=step) if "{step" in str(save_path) else save_path
            save_dit(path, ema_model, meta={"step": step, "ema_decay": ema_decay})
    return train_diffusion(model, diffusion, latents, cond, steps=steps, batch_size=batch_size, lr=lr,
                           weight_decay=weight_decay, warmup_steps=warmup_steps, ema_decay=ema_decay,
                           ema_warmup=ema_warmup, seed=seed,
                           device=device, grad_clip=grad_clip, drop_prob=cfg.drop_prob if cond is not None else 0.0,
                           log_every=log_every, callback=callback, save=save, save_every=save_every,
                           monitor=monitor, monitor_every=monitor_every)
