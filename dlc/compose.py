"""Composing K images' representations into new codes (DLC reference, `dit/sample_comp_imgs.py`).

- compose_tokens: every position of every new code takes the token of one of the K source DLCs, chosen
  uniformly at random and independently per position ("per-position random mixture").
- compose_soft: the reference's recipe: average the K soft SEMs (L, V) — each a softmax at temperature T —
  then draw every position from its averaged distribution (multinomial). As T → 0 the soft SEMs are one-hot,
  and this equals compose_tokens in distribution; larger T also samples other plausible tokens.
- compose_continuous: continuous representations (DINOv2 / RCG baselines) compose by averaging.

All randomness comes from dlc.common.PerSampleRNG over global sample indices, so sample i is the same whatever
the batch size or number of processes. Categorical draws use inverse-CDF sampling in float64.
"""
from __future__ import annotations

from typing import Sequence

import torch

from .common import PerSampleRNG

__all__ = ["compose_tokens", "compose_soft", "average_soft", "retemper", "sample_positions", "compose_continuous"]


def _indices(n: int | None, indices: Sequence[int] | torch.Tensor | None) -> list[int]:
    if indices is None:
        if n is None or n < 1:
            raise ValueError(f"give the number of samples n ≥ 1 or their global indices (got n={n})")
        return list(range(n))
    idx = indices.tolist() if isinstance(indices, torch.Tensor) else [int(i) for i in indices]
    if n is not None and n != len(idx):
        raise ValueError(f"n={n} but {len(idx)} indices were given; pass one or make them agree")
    if not idx:
        raise ValueError("indices is empty")
    return idx


def compose_tokens(sources: torch.Tensor, n: int | None = None, *, seed: int = 0,
                   indices: Sequence[int] | torch.Tensor | None = None, V: int | None = None) -> torch.Tensor:
    """sources (K, L) DLCs → (n, L): position l of sample i is sources[k, l] with k ~ U{0..K−1}, independent
    over positions and samples. `V` (optional) checks that every source token is < V."""
    if not isinstance(sources, torch.Tensor) or sources.ndim != 2 or sources.dtype.is_floating_point:
        raise ValueError(f"sources must be an integer tensor (K, L) of DLC tokens; got "
                         f"{getattr(sources, 'shape', type(sources).__name__)}")
    if V is not None and sources.numel() and (int(sources.min()) < 0 or int(sources.max()) >= V):
        raise ValueError(f"source tokens must lie in [0, V={V}); found [{int(sources.min())}, {int(sources.max())}]")
    idx = _indices(n, indices)
    K, L = sources.shape
    rng = PerSampleRNG(seed, idx, device=sources.device)
    choice = rng.randint(K, L)                                           # (n, L) source per position
    return sources[choice, torch.arange(L, device=sources.device)[None, :]]


def retemper(soft: torch.Tensor, temperature: float, source_temperature: float = 1.0) -> torch.Tensor:
    """Soft SEMs at temperature τ_s → the same logits at temperature T: softmax(log p · τ_s / T).
    T = 0 gives the one-hot argmax; a one-hot source (τ_s = 0) is returned unchanged."""
    if temperature < 0 or source_temperature < 0:
        raise ValueError(f"temperatures must be ≥ 0 (got T={temperature}, source τ={source_temperature})")
    p = soft.double()
    if source_temperature == 0:
        return p
    if temperature == 0:
        return torch.nn.functional.one_hot(p.argmax(-1), p.shape[-1]).double()
    return torch.softmax(torch.log(p) * (source_temperature / temperature), dim=-1)


def _check_soft(soft: torch.Tensor) -> None:
    if not isinstance(soft, torch.Tensor) or soft.ndim != 3 or not soft.dtype.is_floating_point:
        raise ValueError(f"soft SEMs must be a float tensor (K, L, V); got {getattr(soft, 'shape', type(soft).__name__)}")
    if (soft < 0).any() or not torch.allclose(soft.double().sum(-1), torch.ones(1, dtype=torch.float64), atol=1e-2):
        raise ValueError("soft SEMs must be probabilities over V (non-negative, summing to 1 at every position)")


def average_soft(soft: torch.Tensor, temperature: float | None = None, source_temperature: float = 1.0) -> torch.Tensor:
    """(K, L, V) soft SEMs → (L, V) float64 average; with `temperature`, each is first re-tempered (retemper)."""
    _check_soft(soft)
    p = soft.double() if temperature is None else retemper(soft, temperature, source_temperature)
    return p.mean(0)


def sample_positions(probs: torch.Tensor, n: int | None = None, *, seed: int = 0,
                     indices: Sequence[int] | torch.Tensor | None = None) -> torch.Tensor:
    """probs (L, V) → (n, L) long: every position drawn independently from its row (inverse CDF, float64)."""
    idx = _indices(n, indices)
    p = probs.double()
    p = p / p.sum(-1, keepdim=True)
    cdf = p.cumsum(-1)                                                   # (L, V)
    cdf[:, -1] = 1.0
    u = PerSampleRNG(seed, idx, device=probs.device).rand(p.shape[0], dtype=torch.float64)   # (n, L)
    tok = torch.searchsorted(cdf.expand(len(idx), -1, -1).contiguous(), u[..., None], right=True).squeeze(-1)
    return tok.clamp_max(p.shape[1] - 1)


def compose_soft(soft: torch.Tensor, n: int | None = None, *, temperature: float | None = None,
                 source_temperature: float = 1.0, seed: int = 0,
                 indices: Sequence[int] | torch.Tensor | None = None) -> torch.Tensor:
    """The reference composition: average the K soft SEMs (K, L, V) (re-tempered to `temperature` if given;
    otherwise used as they are, e.g. encoded at that temperature), then sample each position → (n, L)."""
    return sample_positions(average_soft(soft, temperature, source_temperature), n, seed=seed, indices=indices)


def compose_continuous(embeddings: torch.Tensor, weights: Sequence[float] | torch.Tensor | None = None) -> torch.Tensor:
    """(K, D) continuous representations → (D,) their (optionally weighted) average."""
    if not isinstance(embeddings, torch.Tensor) or embeddings.ndim != 2 or not embeddings.dtype.is_floating_point:
        raise ValueError(f"embeddings must be a float tensor (K, D); got "
                         f"{getattr(embeddings, 'shape', type(embeddings).__name__)}")
    if weights is None:
        return embeddings.mean(0)
    w = torch.as_tensor(weights, dtype=embeddings.dtype, device=embeddings.device)
    if w.shape != (embeddings.shape[0],) or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"weights must be K={embeddings.shape[0]} non-negative numbers with a positive sum")
    return (w[:, None] * embeddings).sum(0) / w.sum()
