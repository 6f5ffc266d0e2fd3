"""Class-conditional sampling of token grids with classifier-free guidance on the discrete scores.

Guidance (seed 004, eq. of Sec. 3.1): s = s_c^(1+w) · s_u^(−w), i.e. log s = (1 + w)·log s(x | y) − w·log s(x | ∅)
with w = `cfg_scale` (0: the conditional model alone, no extra forward). For MaskGIT decoding the same combination
of the logits is the usual logit guidance. `Guided` binds a TokenSEDD to the labels of a batch and exposes the
label-free interface of `dlc.sedd.sample_sedd`, so every sampler there (analytic, euler, corrector, maskgit) runs
unchanged; sample i uses the randomness of global index start_index + i (independent of batching).
"""
from __future__ import annotations

import torch
from torch import nn

from ..sedd.sampling import sample_sedd

__all__ = ["Guided", "sample_tokens"]


class Guided(nn.Module):
    """tokens (B, L), σ (B,) → guided log-scores (B, L, dim) of `net` for the bound `labels` (B,)."""

    def __init__(self, net: nn.Module, labels: torch.Tensor, cfg_scale: float = 0.0):
        super().__init__()
        self.net = net
        self.config = net.config
        self.cfg_scale = float(cfg_scale)
        self.register_buffer("labels", torch.as_tensor(labels).long(), persistent=False)

    def forward(self, tokens: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        y = self.labels
        if self.cfg_scale == 0.0:
            return self.net(tokens, sigma, y)
        null = torch.full_like(y, self.net.config.num_classes)
        both = self.net(torch.cat([tokens, tokens]), torch.cat([sigma, sigma]), torch.cat([y, null]))  # (2B, L, dim)
        cond, uncond = both.chunk(2)
        return (1.0 + self.cfg_scale) * cond - self.cfg_scale * uncond


@torch.no_grad()
def sample_tokens(model: nn.Module, labels: torch.Tensor, *, sampler: str = "analytic", steps: int,
                  cfg_scale: float = 0.0, seed: int = 0, start_index: int = 0, batch_size: int = 256,
                  device: str | torch.device = "auto", maskgit_temperature: float = 4.5, **kw) -> torch.Tensor:
    """Token grids (n, L) long on the CPU, sample i conditioned on labels[i] (the null label: unconditional).
    sampler, steps, maskgit_temperature and **kw (eta, t0, t1, denoise) as in `dlc.sedd.sample_sedd`."""
    m = getattr(model, "module", model)
    labels = torch.as_tensor(labels).long()
    if labels.ndim != 1:
        raise ValueError(f"labels must be (n,), got shape {tuple(labels.shape)}")
    if not cfg_scale >= 0.0:
        raise ValueError(f"cfg_scale={cfg_scale} must be ≥ 0 (0: no guidance)")
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be ≥ 1")
    out = []
    for lo in range(0, len(labels), batch_size):
        y = labels[lo:lo + batch_size]
        out.append(sample_sedd(Guided(m, y, cfg_scale), len(y), sampler=sampler, steps=steps, seed=seed,
                               start_index=start_index + lo, batch_size=len(y), device=device,
                               maskgit_temperature=maskgit_temperature, **kw))
    return torch.cat(out) if out else torch.empty(0, m.config.seq_len, dtype=torch.long)
