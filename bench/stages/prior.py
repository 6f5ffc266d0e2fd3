"""SEDD prior p(c) over DLCs (training) and c ~ p(c) (sampling): separate configs, separate stages."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from dlc.sedd.train import SEDDTrainConfig

from dlc.validate import check, choice, in_range

from ..cache import Stage
from .base import gather_block, progress_callback, rank_block


def _default_train() -> SEDDTrainConfig:
    return SEDDTrainConfig(steps=2000, batch_size=256, lr=1e-3, warmup=100, ema=0.999, log_every=25)


@dataclass(frozen=True)
class PriorConfig:
    model: str = "tiny"              # dlc.sedd.SEDD_MODELS
    hidden: int = 0                  # 0: the preset's
    n_blocks: int = 0
    n_heads: int = 0
    train: SEDDTrainConfig = field(default_factory=_default_train)   # dlc's own; its seed is the run's seed

    def __post_init__(self):
        from dlc.sedd import SEDD_MODELS

        choice("model", self.model, SEDD_MODELS)
        sizes = ("hidden", "n_blocks", "n_heads")
        check(self, non_negative=sizes)
        SEDD_MODELS[self.model](**{k: getattr(self, k) for k in sizes if getattr(self, k)})   # heads split hidden


@dataclass(frozen=True)
class PriorSamplingConfig:
    sampler: str = "corrector"       # analytic | euler | corrector | maskgit
    steps: int = 64
    eta: float = 0.01                # remasking strength (corrector)
    t0: float = 0.3
    t1: float = 0.55
    batch_size: int = 500

    def __post_init__(self):
        from dlc.sedd.sampling import SAMPLERS

        choice("sampler", self.sampler, SAMPLERS)
        check(self, positive=("steps", "batch_size"))
        in_range("eta", self.eta, 0.0, 1.0, hi_open=True)
        in_range("t0", self.t0, 0.0, 1.0, hi_open=True)
        in_range("t1", self.t1, self.t0, 1.0, lo_open=True, fix="set t1 above t0: remasking runs for t0 < t < t1")


def train_prior(ctx: Any, cfg: PriorConfig, tokens: torch.Tensor, vocab_size: int, seed: int):
    from dlc.sedd import SEDD_MODELS, train_sedd

    over = {k: getattr(cfg, k) for k in ("hidden", "n_blocks", "n_heads") if getattr(cfg, k)}
    mcfg = SEDD_MODELS[cfg.model](vocab_size=vocab_size, seq_len=tokens.shape[1], **over)
    tc = replace(cfg.train, seed=seed, warmup=min(cfg.train.warmup, cfg.train.steps))
    bar, cb = progress_callback(ctx, tc.steps, "train SEDD prior", {"loss": ".3f"})
    _, ema = train_sedd(tokens, mcfg, tc, device=ctx.device, callback=cb)
    bar.close()
    return ema.cpu()


def _save_sedd(model, d: Path) -> None:
    from dlc.sedd import save_sedd

    save_sedd(d / "model", model)


def _load_sedd(d: Path):
    from dlc.sedd import load_sedd

    return load_sedd(d / "model")[0]


SEDD = Stage("sedd", code=("dlc.sedd", "dlc.common", "dlc.dist", "bench.stages.prior"), save=_save_sedd,
             load=_load_sedd, description="SEDD-absorb prior on the train DLCs")


def sample_prior(ctx: Any, cfg: PriorSamplingConfig, model, n: int, seed: int) -> torch.Tensor:
    """c ~ p(c) for global sample indices [0, n), split over ranks; long (n, L)."""
    from dlc.sedd import sample_sedd

    lo, hi = rank_block(n, ctx.rank, ctx.world_size)
    local = sample_sedd(model, hi - lo, sampler=cfg.sampler, steps=cfg.steps, eta=cfg.eta, t0=cfg.t0, t1=cfg.t1,
                        seed=seed, start_index=lo, batch_size=cfg.batch_size, device=ctx.device)
    return gather_block(local, lo, n)


PRIOR_SAMPLES = Stage("prior-samples", code=("dlc.sedd", "bench.stages.prior"), description="c ~ SEDD")
