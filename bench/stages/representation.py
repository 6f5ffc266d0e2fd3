"""Continuous conditioning representations and their RDM prior: the RCG / encoder-embedding baselines.

    REPRESENTATION   codes (encoder.CODES) → per-split vectors: 'rcg' (frozen seeded random MLP of the
                     continuous embedding to 256-d, standardised per sample; its weights are stored too) or
                     'embedding' (the encoder's continuous embedding as it is)
    RDM              RDM prior p(r) over the train vectors (EMA weights + losses)
    RDM_SAMPLES      r ~ p(r) for global sample indices [0, n) (DDIM; sample i depends only on the seed and i)

Training and sampling settings are separate configs (RDMStageConfig / RDMSamplingConfig), so changing the
number of DDIM steps or η redraws the vectors without retraining. A DiT conditioned on these vectors is a
`bench.stages.dit` DiT with cond='vector' and `dit_shape(vectors)` as its conditioner shape.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional

import torch

from dlc.baselines.rcg import RCGProjectorConfig

from dlc.validate import at_least, check, choice, in_range

from ..cache import Stage, load_tree, save_tree
from .base import gather_block, progress_callback, rank_block

KINDS = ("rcg", "embedding")


def _default_projector() -> RCGProjectorConfig:
    return RCGProjectorConfig(in_dim=0, hidden=2048, out_dim=256, seed=0)


@dataclass(frozen=True)
class RepresentationConfig:
    kind: str = "rcg"                # rcg: random projection, standardised per sample | embedding: as it is
    # dlc's own (RCG: 2048 hidden, 256 out); in_dim is the embedding's and its seed is the run's seed
    projector: RCGProjectorConfig = field(default_factory=_default_projector)

    def __post_init__(self):
        choice("representation.kind", self.kind, KINDS)
        at_least("projector.out_dim", self.projector.out_dim, 2, "per-sample standardisation needs ≥ 2 dimensions")


@dataclass(frozen=True)
class RDMStageConfig:
    """RDM training. RCG's reference values in the comments (ImageNet, 200 epochs)."""
    model: str = "RDM-small"         # dlc.baselines.RDM_MODELS (RCG: RDM-L12-W1536)
    width: int = 0                   # 0: the preset's
    depth: int = 0
    time_embed_dim: int = 0
    dropout: float = 0.0             # RCG: 0
    steps: int = 2000                # RCG: 200 epochs of ImageNet at batch 512 (~500k steps)
    batch_size: int = 256            # RCG: 512
    lr: float = 5e-4                 # RCG: 5.12e-4 (1e-6 × batch 512), constant
    weight_decay: float = 0.01       # RCG: 0.01
    ema: float = 0.999               # RCG: 0.9999
    ema_warmup: bool = True          # RCG: no (few steps here)
    normalize: Optional[bool] = None  # standardise each dimension with the data's mean/std (None: for the
                                      #   raw 'embedding' vectors only; RCG's are standardised per sample)
    log_every: int = 25

    def __post_init__(self):
        from dlc.baselines import RDM_MODELS

        choice("rdm.model", self.model, RDM_MODELS)
        check(self, non_negative=("width", "depth", "time_embed_dim", "weight_decay"), probability=("ema",),
              positive=("steps", "batch_size", "lr", "log_every"))
        in_range("dropout", self.dropout, 0.0, 1.0, hi_open=True)


@dataclass(frozen=True)
class RDMSamplingConfig:
    steps: int = 250                 # DDIM steps (RCG: 250)
    eta: float = 1.0                 # DDIM η (RCG: 1.0)
    batch_size: int = 1024

    def __post_init__(self):
        check(self, finite=("eta",))
        if self.steps < 1 or self.batch_size < 1 or self.eta < 0:
            raise ValueError(f"rdm_sampling needs steps ≥ 1, batch_size ≥ 1, eta ≥ 0 (got {self})")


# ----------------------------------------------------------------------------- representation
def make_representation(ctx: Any, cfg: RepresentationConfig, codes: dict, seed: int) -> dict:
    """{split: (N, d) float32 vectors} for every split of the codes artifact, plus 'projector' (kind rcg: the
    frozen RCGProjector, seeded with `seed`; kind embedding: None)."""
    from dlc.baselines import RCGProjector, raw_representation, rcg_representation

    emb = {s: a.embedding for s, a in codes.items()}
    missing = [s for s, e in emb.items() if e is None]
    if missing:
        raise ValueError(f"the codes of split(s) {missing} have no continuous embedding; export them with it")
    projector = None
    if cfg.kind == "rcg":
        d = next(iter(emb.values())).shape[1]
        projector = RCGProjector(replace(cfg.projector, in_dim=d, seed=seed)).to(ctx.device)
        vectors = {s: rcg_representation(e, projector).cpu() for s, e in emb.items()}
        projector = projector.cpu()
    else:
        vectors = {s: raw_representation(e).cpu() for s, e in emb.items()}
    return {**vectors, "projector": projector}


def _save_representation(value: dict, d: Path) -> None:
    from dlc.baselines import save_projector

    save_tree({s: v for s, v in value.items() if s != "projector"}, d)
    if value.get("projector") is not None:
        save_projector(d / "projector", value["projector"])


def _load_representation(d: Path) -> dict:
    from dlc.baselines import load_projector

    proj = d / "projector.safetensors"
    return {**load_tree(d), "projector": load_projector(proj) if proj.exists() else None}


REPRESENTATION = Stage("representation", code=("dlc.baselines.rcg", "dlc.common", "bench.stages.representation"),
                       save=_save_representation, load=_load_representation,
                       description="continuous conditioning vectors: RCG projection or the encoder embedding")


def dit_shape(vectors: torch.Tensor) -> dict:
    """The DiT conditioner shape for these vectors (bench.stages.dit.train's cond_shape, cond='vector');
    a projection with bias, as RCG's."""
    return {"cond_dim": int(vectors.shape[1]), "cond_bias": True}


# ----------------------------------------------------------------------------- RDM prior
def train_prior(ctx: Any, cfg: RDMStageConfig, vectors: torch.Tensor, seed: int, *, kind: str = "rcg") -> dict:
    """Fit the RDM prior p(r) on (N, d) vectors of representation `kind`; {'model': EMA SimpleMLP on the CPU,
    'losses', 'seconds'}."""
    from dlc.baselines import RDM_MODELS, rdm_diffusion, train_rdm

    over = {k: getattr(cfg, k) for k in ("width", "depth", "time_embed_dim") if getattr(cfg, k)}
    torch.manual_seed(seed)
    model = RDM_MODELS[cfg.model](dim=int(vectors.shape[1]), dropout=cfg.dropout, **over)
    bar, cb = progress_callback(ctx, cfg.steps, "train RDM prior", {"loss": ".4f"})
    res = train_rdm(model, rdm_diffusion(), vectors, steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr,
                    weight_decay=cfg.weight_decay, ema_decay=cfg.ema, ema_warmup=cfg.ema_warmup,
                    normalize=cfg.normalize if cfg.normalize is not None else kind == "embedding",
                    seed=seed, device=ctx.device, log_every=cfg.log_every, callback=cb)
    bar.close()
    return {"model": res.ema.cpu().eval(), "losses": [float(x) for x in res.losses], "seconds": float(res.seconds)}


def _save_rdm(value: dict, d: Path) -> None:
    from dlc.baselines import save_rdm

    save_rdm(d / "model", value["model"])
    (d / "train.json").write_text(json.dumps({k: v for k, v in value.items() if k != "model"}))


def _load_rdm(d: Path) -> dict:
    from dlc.baselines import load_rdm

    return {"model": load_rdm(d / "model")[0], **json.loads((d / "train.json").read_text())}


RDM = Stage("rdm", code=("dlc.baselines.rdm", "dlc.dit.diffusion", "dlc.dit.models", "dlc.dit.train", "dlc.common",
                         "dlc.dist", "bench.stages.representation"),
            save=_save_rdm, load=_load_rdm, description="RDM prior over the train vectors (EMA weights, losses)")


def sample_prior(ctx: Any, cfg: RDMSamplingConfig, model, n: int, seed: int) -> torch.Tensor:
    """r ~ p(r) for global sample indices [0, n), split over ranks; float32 (n, d) on the CPU."""
    from dlc.baselines import rdm_diffusion, sample_rdm

    lo, hi = rank_block(n, ctx.rank, ctx.world_size)
    diffusion = rdm_diffusion()
    bar = ctx.progress(total=hi - lo, desc="sample RDM prior")
    chunks = [torch.empty(0, model.config.dim)]
    for s in range(lo, hi, cfg.batch_size):
        e = min(hi, s + cfg.batch_size)
        chunks.append(sample_rdm(model, diffusion, e - s, steps=cfg.steps, eta=cfg.eta, seed=seed, start_index=s,
                                 batch_size=cfg.batch_size, device=ctx.device))
        bar.update(e - s)
    bar.close()
    return gather_block(torch.cat(chunks), lo, n)


RDM_SAMPLES = Stage("rdm-samples", code=("dlc.baselines.rdm", "dlc.dit.diffusion", "dlc.dit.models", "dlc.common",
                                         "bench.stages.representation"), description="r ~ RDM")
