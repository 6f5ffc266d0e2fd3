"""Statistics of sets of discrete codes: per-position marginal total variation, exact copies."""
from __future__ import annotations

import numpy as np
import torch


def code_tv(a: torch.Tensor, b: torch.Tensor, V: int) -> float:
    """Mean over positions of the total variation between the token marginals of two code sets (N, L)."""
    pa = torch.nn.functional.one_hot(a.long(), V).double().mean(0)     # (L, V)
    pb = torch.nn.functional.one_hot(b.long(), V).double().mean(0)
    return float(0.5 * (pa - pb).abs().sum(-1).mean())


def copy_fraction(samples: torch.Tensor, train: torch.Tensor) -> float:
    """Fraction of sampled codes equal to some training code at every position."""
    seen = {tuple(r) for r in train.tolist()}
    return float(np.mean([tuple(r) in seen for r in samples.tolist()]))
