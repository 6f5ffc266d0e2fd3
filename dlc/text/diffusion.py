"""Masked discrete diffusion over token sequences (LLaDA, Nie et al. 2025): the joint masking loss and the
slot-filling sampler, for any network mapping (N, S) ids to (N, S, K) logits (`TextDLCModel`, a Hugging Face
masked LM through `dlc.text.hf`).

Loss. Per sequence t ~ U(0, 1), p = (1 − ε)·t + ε; each maskable token is replaced by MASK with probability p and
the loss is Σ_masked CE(x̂, x) / (p · N), N the sequence's maskable tokens: an upper bound on −log p(x) / N.

Sampler. The slots (the L code positions) start as MASK; at each of `steps` steps the network predicts every slot,
the logits restricted to the allowed ids (the V code ids: a slot can never receive a text token), with optional
classifier-free guidance against the prompt-masked sequence, ℓ = ℓ_u + (1 + w)(ℓ_c − ℓ_u); a token is drawn per
masked slot at `temperature` (0: argmax), and the `n_k` masked slots with the highest confidence (the drawn token's
probability; `order="random"`: random slots) keep their token, the others stay masked. n_k = ⌊L/steps⌋ (+1 for the
first L mod steps steps), so every slot is filled after `steps` steps. Randomness comes from one generator per
global sample index (`dlc.common.PerSampleRNG`): a sample does not depend on the batch it was drawn in.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from ..common import PerSampleRNG

__all__ = ["masked_diffusion_loss", "reveal_counts", "sample_slots", "ORDERS"]

ORDERS = ("confidence", "random")


def masked_diffusion_loss(logits_fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                          maskable: torch.Tensor, mask_id: int, *, eps: float = 1e-3,
                          generator: torch.Generator | None = None) -> torch.Tensor:
    """The joint masking loss of clean sequences x (N, S) (see the module doc); maskable (N, S) bool."""
    n = len(x)
    t = torch.rand(n, generator=generator).to(x.device)                         # drawn on the CPU: any device
    p = (1.0 - eps) * t + eps                                                   # (N,)
    masked = (torch.rand(x.shape, generator=generator).to(x.device) < p[:, None]) & maskable
    xt = torch.where(masked, torch.full_like(x, mask_id), x)
    logits = logits_fn(xt)                                                      # (N, S, K)
    ce = F.cross_entropy(logits.float().transpose(1, 2), x, reduction="none")  # (N, S)
    per_seq = (ce * masked).sum(1) / p / maskable.sum(1).clamp_min(1)
    return per_seq.mean()


def reveal_counts(n_slots: int, steps: int) -> list[int]:
    """Slots unmasked at each step: ⌊n/steps⌋, one more for the first n mod steps steps (sums to n)."""
    if not 1 <= steps <= n_slots:
        raise ValueError(f"steps must be in [1, {n_slots}] (the number of slots to fill); got {steps}")
    base, extra = divmod(n_slots, steps)
    return [base + (k < extra) for k in range(steps)]


@torch.no_grad()
def sample_slots(logits_fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, slots: torch.Tensor,
                 allowed: torch.Tensor, mask_id: int, rng: PerSampleRNG, *, steps: int, temperature: float = 1.0,
                 order: str = "confidence", cfg_scale: float = 0.0,
                 uncond_fn: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """Fill the `slots` (N, S) bool of x (N, S) (every row the same number of slots) with ids from `allowed` (A,);
    returns the filled x. `uncond_fn`: logits of the prompt-masked sequence (needed when cfg_scale ≠ 0)."""
    if order not in ORDERS:
        raise ValueError(f"unknown unmasking order {order!r}; choose from {', '.join(ORDERS)}")
    if temperature < 0:
        raise ValueError(f"temperature must be ≥ 0 (got {temperature})")
    if cfg_scale and uncond_fn is None:
        raise ValueError("classifier-free guidance needs uncond_fn (the logits without the prompt)")
    n_slots = slots.sum(1)
    if len(n_slots) and not (n_slots == n_slots[0]).all():
        raise ValueError("every row must have the same number of slots")
    N, S = x.shape
    A = len(allowed)
    x = torch.where(slots, torch.full_like(x, mask_id), x)
    allowed = allowed.to(x.device)
    for n_k in reveal_counts(int(n_slots[0]) if N else 1, steps):
        u = rng.rand(S, A + 1).to(x.device)                                     # (N, S, A+1): draws, then order
        logits = logits_fn(x)[..., allowed].float()                             # (N, S, A)
        if cfg_scale:
            un = uncond_fn(x)[..., allowed].float()
            logits = un + (1.0 + cfg_scale) * (logits - un)
        logp = torch.log_softmax(logits, -1)
        if temperature > 0:
            gumbel = -torch.log(-torch.log(u[..., :A].clamp(1e-12, 1 - 1e-7)))
            choice = (logp / temperature + gumbel).argmax(-1)                   # (N, S) ~ softmax(ℓ / T)
        else:
            choice = logp.argmax(-1)
        conf = logp.gather(-1, choice[..., None]).squeeze(-1) if order == "confidence" else u[..., A]
        masked = slots & (x == mask_id)
        conf = torch.where(masked, conf, torch.full_like(conf, -torch.inf))
        keep = conf.topk(n_k, dim=1).indices                                    # (N, n_k)
        x = x.scatter(1, keep, allowed[choice].gather(1, keep))
    return x
