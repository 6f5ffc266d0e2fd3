"""Training and sampling of the text-to-DLC model on [DLC | SEP | caption] sequences."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn

from ..common import EMA, PerSampleRNG, seed_for
from ..validate import check, in_range
from .diffusion import ORDERS, masked_diffusion_loss, sample_slots
from .model import JointVocab

__all__ = ["TextDLCTrainConfig", "train_text_dlc", "sample_codes"]


@dataclass(frozen=True)
class TextDLCTrainConfig:
    steps: int = 2000
    batch_size: int = 128
    lr: float = 5e-4
    weight_decay: float = 0.01
    warmup: int = 100                # linear learning-rate warm-up steps
    grad_clip: float = 1.0           # max gradient norm (≤ 0: none)
    eps: float = 1e-3                # p = (1 − eps)·t + eps: the smallest masking probability
    p_uncond: float = 0.1            # captions dropped (all MASK / no prefix): the unconditional model for CFG
    ema: float = 0.999
    seed: int = 0
    log_every: int = 25

    def __post_init__(self):
        check(self, positive=("steps", "batch_size", "lr", "log_every"), non_negative=("weight_decay", "warmup"),
              probability=("ema",))
        in_range("eps", self.eps, 0.0, 1.0, hi_open=True)
        in_range("p_uncond", self.p_uncond, 0.0, 1.0, hi_open=True)


def _forward(model: nn.Module, x: torch.Tensor, prefix: torch.Tensor | None, prefix_mask: torch.Tensor | None):
    return model(x) if prefix is None else model(x, prefix, prefix_mask)


def train_text_dlc(model: nn.Module, vocab: JointVocab, codes: torch.Tensor, text: torch.Tensor | None,
                   text_pad: int, cfg: TextDLCTrainConfig, *, prefix: torch.Tensor | None = None,
                   prefix_mask: torch.Tensor | None = None, device: torch.device | str = "cpu",
                   callback: Callable[[int, dict], None] | None = None) -> tuple[nn.Module, nn.Module, list[float]]:
    """Train `model` on codes (N, L) in [0, V) with captions: token ids text (N, T) (the sequence's caption slots),
    or a frozen encoder's states prefix (N, P, D) with prefix_mask (N, P) (then vocab.T = 0). Every non-pad token
    of the sequence is maskable (joint masking); a fraction p_uncond of the sequences lose their caption (MASK in
    every caption slot, not predicted; no prefix). Returns (model, EMA model, losses per step), in eval mode."""
    dev = torch.device(device)
    torch.manual_seed(cfg.seed)
    model = model.to(dev).train()
    ema = EMA(model, decay=cfg.ema)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    x_all = vocab.sequence(codes, text, text_pad)                               # (N, S)
    g = torch.Generator().manual_seed(seed_for(cfg.seed, 0, stream=3))           # batches and masks, on the CPU
    losses, t0 = [], time.perf_counter()
    for step in range(1, cfg.steps + 1):
        lr = cfg.lr * min(step / cfg.warmup, 1.0) if cfg.warmup else cfg.lr
        for group in opt.param_groups:
            group["lr"] = lr
        idx = torch.randint(len(x_all), (cfg.batch_size,), generator=g)
        x = x_all[idx].to(dev)
        drop = (torch.rand(len(x), generator=g) < cfg.p_uncond).to(dev)         # (B,)
        captions = vocab.text_slots(x) & drop[:, None]
        x = torch.where(captions, torch.full_like(x, vocab.mask), x)
        maskable = (x != vocab.pad) & ~captions
        pre = pm = None
        if prefix is not None:
            pre, pm = prefix[idx].to(dev), prefix_mask[idx].to(dev) & ~drop[:, None]
        mask_draws = torch.Generator().manual_seed(seed_for(cfg.seed, step, stream=4))
        loss = masked_diffusion_loss(lambda xt: _forward(model, xt, pre, pm), x, maskable, vocab.mask, eps=cfg.eps,
                                     generator=mask_draws)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        ema.update(model)
        losses.append(loss.item())
        if callback is not None and (step % cfg.log_every == 0 or step == cfg.steps):
            recent = sum(losses[-cfg.log_every:]) / len(losses[-cfg.log_every:])
            callback(step, {"loss": recent, "lr": lr, "steps_per_s": step / (time.perf_counter() - t0)})
    return model.eval(), ema.model.eval(), losses


@torch.no_grad()
def sample_codes(model: nn.Module, vocab: JointVocab, text: torch.Tensor | None, text_pad: int, *, steps: int,
                 temperature: float = 1.0, order: str = "confidence", cfg_scale: float = 0.0, seed: int = 0,
                 start_index: int = 0, batch_size: int = 256, prefix: torch.Tensor | None = None,
                 prefix_mask: torch.Tensor | None = None, device: torch.device | str = "cpu") -> torch.Tensor:
    """Codes (N, L) in [0, V) for N prompts (caption ids text (N, T), or prefix states), sample i seeded by global
    index start_index + i (see `dlc.text.diffusion`)."""
    if order not in ORDERS:
        raise ValueError(f"unknown unmasking order {order!r}; choose from {', '.join(ORDERS)}")
    dev = torch.device(device)
    model = model.to(dev).eval()
    n = len(text) if text is not None else len(prefix)
    out = []
    for lo in range(0, n, batch_size):
        hi = min(n, lo + batch_size)
        x = (vocab.sequence(None, text[lo:hi], text_pad) if text is not None else
             vocab.sequence(None, None, text_pad, n=hi - lo)).to(dev)
        pre = None if prefix is None else prefix[lo:hi].to(dev)
        pm = None if prefix is None else prefix_mask[lo:hi].to(dev)
        prompt = vocab.text_slots(x)

        def cond(xt, pre=pre, pm=pm):
            return _forward(model, xt, pre, pm)

        def uncond(xt, pre=pre, pm=pm, prompt=prompt):
            xt = torch.where(prompt, torch.full_like(xt, vocab.mask), xt)
            return _forward(model, xt, pre, None if pm is None else torch.zeros_like(pm))

        rng = PerSampleRNG(seed, range(start_index + lo, start_index + hi), device="cpu")
        filled = sample_slots(cond, x, vocab.code_slots(x), vocab.code_ids(dev), vocab.mask, rng, steps=steps,
                              temperature=temperature, order=order, cfg_scale=cfg_scale, uncond_fn=uncond)
        out.append(vocab.to_codes(filled).cpu())
    return torch.cat(out) if out else torch.zeros(0, vocab.L, dtype=torch.long)
