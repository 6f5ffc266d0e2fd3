"""Training a SEDD prior on token sequences with the score-entropy loss (SEDD `losses.py`, `run_train.py`).

Recipe (SEDD / DLC): AdamW lr 3e-4, β = (0.9, 0.999), eps 1e-8, weight decay 0, linear warm-up, gradient
clipping at 1, EMA 0.9999 with warm-up min(d, (1 + n)/(10 + n)), t ~ U(1e-3, 1). Works unchanged under
`torchrun` (DDP through dlc.dist): the batch size is global, each rank reads its stride of a shared epoch
permutation, and the random times and masks come from generators seeded from (seed, rank).
bf16 autocast is used on GPU only.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from .. import dist as ddist
from ..common import EMA, autocast, seed_for
from ..validate import check, in_range
from .graph import get_graph
from .model import SEDD, SEDDConfig
from .noise import get_noise

__all__ = ["SEDDTrainConfig", "train_sedd", "optimise", "score_entropy_loss", "check_tokens"]


@dataclass(frozen=True)
class SEDDTrainConfig:
    """Optimisation settings. The defaults are SEDD's except steps and batch size (DLC: 1.5M steps, batch 1024)."""
    steps: int = 1000
    batch_size: int = 512          # global, across all ranks
    lr: float = 3e-4
    betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    weight_decay: float = 0.0
    warmup: int = 2500             # linear learning-rate warm-up steps (0: none)
    grad_clip: float = 1.0         # max gradient norm (≤ 0: no clipping)
    ema: float = 0.9999
    ema_warmup: bool = True
    sampling_eps: float = 1e-3     # t ~ U(sampling_eps, 1)
    seed: int = 0
    log_every: int = 100

    def __post_init__(self):
        check(self, positive=("steps", "batch_size", "lr", "adam_eps", "log_every"), finite=("grad_clip",),
              non_negative=("weight_decay", "warmup"), probability=("ema",))
        for b in self.betas:
            in_range("betas", b, 0.0, 1.0, hi_open=True)
        in_range("sampling_eps", self.sampling_eps, 0.0, 1.0, lo_open=True, hi_open=True)


def check_tokens(tokens: torch.Tensor, config: SEDDConfig) -> None:
    """Training data must be an integer tensor (N, L) with values in [0, V) (the mask index V is not data)."""
    if not isinstance(tokens, torch.Tensor) or tokens.dtype.is_floating_point or tokens.dtype == torch.bool:
        raise ValueError(f"tokens must be an integer tensor (N, {config.seq_len}); got "
                         f"{getattr(tokens, 'dtype', type(tokens).__name__)}")
    if tokens.ndim != 2 or tokens.shape[1] != config.seq_len or tokens.shape[0] == 0:
        raise ValueError(f"tokens must have shape (N ≥ 1, L={config.seq_len}); got {tuple(tokens.shape)} — "
                         f"set SEDDConfig.seq_len to the data's sequence length")
    lo, hi = int(tokens.min()), int(tokens.max())
    if lo < 0 or hi >= config.vocab_size:
        raise ValueError(f"token values must lie in [0, V={config.vocab_size}); got min {lo}, max {hi} — "
                         f"set SEDDConfig.vocab_size to at least {hi + 1}")


def score_entropy_loss(model: nn.Module, graph, noise, x0: torch.Tensor, t: torch.Tensor | None = None,
                       generator: torch.Generator | None = None, sampling_eps: float = 1e-3) -> torch.Tensor:
    """Per-sample loss (N,): Σ_i σ'(t)·ℓ_i(s_θ(x_t, σ(t)), x_t, x0) with x_t ~ e^{σ(t)Q}(·, x0), t ~ U(ε, 1)."""
    if t is None:
        t = (1 - sampling_eps) * torch.rand(x0.shape[0], generator=generator, device=x0.device) + sampling_eps
    sigma, dsigma = noise(t)
    xt = graph.sample_transition(x0, sigma, generator=generator)
    log_score = model(xt, sigma)
    return (dsigma[:, None] * graph.score_entropy(log_score, sigma, xt, x0)).sum(dim=-1)


def train_sedd(tokens: torch.Tensor, config: SEDDConfig, train: SEDDTrainConfig | None = None,
               device: str | torch.device = "auto",
               callback: Callable[[int, dict], None] | None = None) -> tuple[SEDD, SEDD]:
    """Train a SEDD prior on `tokens` (N, L) long in [0, V); returns (model, EMA model), both in eval mode.

    callback(step, logs) is called on rank 0 every `train.log_every` steps and at the last step with
    logs = {"loss": mean loss over the interval, "lr": current learning rate, "steps_per_s": ...}.
    """
    train = train or SEDDTrainConfig()
    check_tokens(tokens, config)
    graph, noise = get_graph(config), get_noise(config)

    def batch_loss(net: nn.Module, idx: torch.Tensor, g: torch.Generator, dev: torch.device) -> torch.Tensor:
        x0 = tokens[idx].to(dev, non_blocking=True).long()
        return score_entropy_loss(net, graph, noise, x0, generator=g, sampling_eps=train.sampling_eps).mean()

    return optimise(lambda: SEDD(config), len(tokens), batch_loss, train, device, callback)


def optimise(build: Callable[[], nn.Module], n: int, batch_loss: Callable, train: SEDDTrainConfig,
             device: str | torch.device = "auto",
             callback: Callable[[int, dict], None] | None = None) -> tuple[nn.Module, nn.Module]:
    """The SEDD training loop for any model and loss: `build()` makes the model (seeded by train.seed, the same
    on every rank), `batch_loss(net, indices, generator, device)` the scalar loss of a batch of data indices in
    [0, n). AdamW with linear warm-up, gradient clipping, EMA, DDP under torchrun; returns (model, EMA model) in
    eval mode. callback as in `train_sedd`."""
    info = ddist.setup(device)
    dev = info.device
    if train.batch_size % info.world_size:
        raise ValueError(f"batch_size={train.batch_size} must be divisible by the world size {info.world_size}")
    local_bs = train.batch_size // info.world_size

    with torch.random.fork_rng(devices=[]):                    # the same initial weights on every rank
        torch.manual_seed(train.seed)
        model = build()
    model = model.to(dev).train()
    ema = EMA(model, decay=train.ema, warmup=train.ema_warmup)
    net = ddist.wrap_ddp(model, info)
    opt = torch.optim.AdamW(model.parameters(), lr=train.lr, betas=tuple(train.betas), eps=train.adam_eps,
                            weight_decay=train.weight_decay)
    batches = ddist.index_stream(n, local_bs, info, train.seed)
    g = torch.Generator(device=dev).manual_seed(seed_for(train.seed, info.rank, stream=2))

    losses: list[torch.Tensor] = []
    t_start = time.perf_counter()
    for step in range(1, train.steps + 1):
        lr = train.lr * min(step / train.warmup, 1.0) if train.warmup > 0 else train.lr
        for group in opt.param_groups:
            group["lr"] = lr
        with autocast(dev):
            loss = batch_loss(net, next(batches), g, dev)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if train.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), train.grad_clip)
        opt.step()
        ema.update(model)
        losses.append(loss.detach())

        if info.is_main and callback is not None and (step % train.log_every == 0 or step == train.steps):
            recent = torch.stack(losses[-train.log_every:]).mean().item()
            callback(step, {"loss": recent, "lr": lr, "steps_per_s": step / (time.perf_counter() - t_start)})
        if len(losses) > train.log_every:
            losses = losses[-train.log_every:]
    ddist.barrier()
    return model.eval(), ema.model.eval()
