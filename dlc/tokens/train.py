"""Training a class-conditional model over VQ image tokens: SEDD's score entropy, or MaskGIT's masked cross-entropy.

    objective        loss of a batch (x0 (N, L) tokens, y (N,) labels; y replaced by the null label with
                     probability label_dropout, so one network learns p(x | y) and p(x) for guidance)
    score-entropy    SEDD (`dlc.sedd.train.score_entropy_loss`), t ~ U(ε, 1), x_t from the model's graph
                     (absorb or uniform)
    masked-ce        MaskGIT (Chang et al. 2022): mask ratio r = cos(π/2 · u), u ~ U(0, 1); exactly ⌈r·L⌉ positions
                     (at least one) masked at random; cross-entropy of the true token at the masked positions, mean
                     over them. The network sees σ = −log(1 − r) (σ_max when all are masked), the level at which an
                     absorbing process masks a fraction r: the level `dlc.sedd.sampling`'s MaskGIT decoder passes.

The optimisation loop is SEDD's (`dlc.sedd.train.optimise`: AdamW, warm-up, clipping, EMA, DDP under torchrun).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..sedd.graph import get_graph
from ..sedd.noise import get_noise
from ..sedd.train import SEDDTrainConfig, check_tokens, optimise, score_entropy_loss
from ..validate import ConfigError, choice, probability
from .model import TokenModelConfig, TokenSEDD

__all__ = ["TokenTrainConfig", "OBJECTIVES", "train_token_model", "masked_ce_loss", "conditional_loss",
           "mask_ratio"]

OBJECTIVES = ("score-entropy", "masked-ce")


@dataclass(frozen=True)
class TokenTrainConfig(SEDDTrainConfig):
    objective: str = "score-entropy"     # 'score-entropy' (SEDD) | 'masked-ce' (MaskGIT)
    label_dropout: float = 0.1           # probability of training on the null label (classifier-free guidance)

    def __post_init__(self):
        super().__post_init__()
        choice("objective", self.objective, OBJECTIVES)
        probability("label_dropout", self.label_dropout)


def mask_ratio(u: torch.Tensor) -> torch.Tensor:
    """MaskGIT's cosine schedule: the fraction of masked tokens, cos(π/2 · u) for u ~ U(0, 1)."""
    return torch.cos(0.5 * math.pi * u)


def masked_ce_loss(model: Callable, x0: torch.Tensor, labels: torch.Tensor, mask_index: int, sigma_max: float,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-sample masked cross-entropy (N,) of a MaskGIT step (see the module docstring)."""
    N, L = x0.shape
    u = torch.rand(N, generator=generator, device=x0.device)
    n_mask = torch.ceil(mask_ratio(u) * L).clamp(1, L)                                  # (N,)
    order = torch.rand(N, L, generator=generator, device=x0.device).argsort(dim=1).argsort(dim=1)  # random ranks
    masked = order < n_mask[:, None]                                                    # (N, L), n_mask of them
    xt = torch.where(masked, mask_index, x0)
    frac = n_mask / L
    sigma = torch.where(frac < 1, -torch.log1p(-frac.clamp(max=1 - 1e-6)), torch.full_like(frac, sigma_max))
    logits = model(xt, sigma.clamp(max=sigma_max), labels)[..., :mask_index].float()  # (N, L, V)
    ce = F.cross_entropy(logits.transpose(1, 2), x0, reduction="none")                 # (N, L)
    return (ce * masked).sum(1) / masked.sum(1)


def conditional_loss(objective: str, model: nn.Module, config: TokenModelConfig, x0: torch.Tensor,
                     labels: torch.Tensor, generator: torch.Generator | None = None,
                     sampling_eps: float = 1e-3) -> torch.Tensor:
    """Per-sample loss (N,) of one objective for tokens x0 (N, L) with labels (N,) (already dropped to null)."""
    graph, noise = get_graph(config), get_noise(config)
    if objective == "masked-ce":
        if not graph.absorb:
            raise ConfigError("graph", config.graph, "has no mask token; MaskGIT's masked cross-entropy needs it",
                              "use graph='absorb' with objective='masked-ce'")
        sigma_max = float(noise.total(torch.tensor(1.0, dtype=torch.float64)))
        return masked_ce_loss(model, x0, labels, graph.mask_index, sigma_max, generator)
    return score_entropy_loss(lambda xt, sigma: model(xt, sigma, labels), graph, noise, x0, generator=generator,
                              sampling_eps=sampling_eps)


def train_token_model(tokens: torch.Tensor, labels: torch.Tensor, config: TokenModelConfig,
                      train: TokenTrainConfig | None = None, device: str | torch.device = "auto",
                      callback: Callable[[int, dict], None] | None = None) -> tuple[TokenSEDD, TokenSEDD]:
    """Train on `tokens` (N, L) long in [0, V) with class `labels` (N,) in [0, num_classes); returns (model, EMA
    model) in eval mode. callback as in `dlc.sedd.train_sedd`."""
    train = train or TokenTrainConfig()
    check_tokens(tokens, config)
    labels = torch.as_tensor(labels)
    if labels.shape != (len(tokens),) or labels.dtype.is_floating_point:
        raise ValueError(f"labels must be integers of shape ({len(tokens)},) (one per token sequence); got "
                         f"{labels.dtype} {tuple(labels.shape)}")
    if int(labels.min()) < 0 or int(labels.max()) >= config.num_classes:
        raise ValueError(f"labels must lie in [0, num_classes={config.num_classes}); got min {int(labels.min())}, "
                         f"max {int(labels.max())} — set num_classes to the number of classes")
    labels = labels.long()

    def batch_loss(net: nn.Module, idx: torch.Tensor, g: torch.Generator, dev: torch.device) -> torch.Tensor:
        x0, y = tokens[idx].to(dev).long(), labels[idx].to(dev)
        drop = torch.rand(len(y), generator=g, device=dev) < train.label_dropout
        y = torch.where(drop, config.num_classes, y)
        return conditional_loss(train.objective, net, config, x0, y, g, train.sampling_eps).mean()

    return optimise(lambda: TokenSEDD(config), len(tokens), batch_loss, train, device, callback)
