"""Stages of the Gaussian-mixture toy study (paper §3): data, estimator floor, GMM labels, MLP diffusion,
samples, KDE evaluation. The numerics live in `toy/` (self-contained); this module only keys and stores them.

Each stage is keyed by its own frozen config — the fields of the experiment's flat config it reads, all of
them (`split(cfg)` fills them from the experiment's config; tests check every field has a place):

    ToyTrainConfig   data + model + training + GMM settings   → TOY_GMM, TOY_TRAIN
    ToyEvalConfig    evaluation points, KDE, coverage           → TOY_FLOOR, TOY_EVALUATE
    ToySampleConfig  respaced steps, x̂0 clamp                  → TOY_SAMPLES, TOY_EVALUATE
"""
from __future__ import annotations

import dataclasses
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from toy import coverage, data as tdata, diffusion as tdiff, kde

from ..cache import Stage

_CODE = ("toy", "bench.stages.toy")
TOY_FLOOR = Stage("toy-floor", _CODE, description="evaluation points and the KDE estimator floor")
TOY_GMM = Stage("toy-gmm", _CODE, description="scikit-learn GMM labels of the training set")
TOY_TRAIN = Stage("toy-train", _CODE, description="MLP diffusion model (improved DDPM)")
TOY_SAMPLES = Stage("toy-samples", _CODE, description="samples of a trained toy model")
TOY_EVALUATE = Stage("toy-evaluate", _CODE, description="KDE KL and mode coverage of samples")


@dataclass(frozen=True)
class ToyTrainConfig:
    variance: float
    spacing: float
    n_train: int
    hidden: int
    layers: int
    t_dim: int
    c_dim: int
    batch_size: int
    train_samples: int
    lr: float
    warmup: int
    diffusion_steps: int
    gmm_fit_samples: int
    gmm_covariance: str
    gmm_max_iter: int
    gmm_init: str

    @property
    def steps(self) -> int:
        return max(1, self.train_samples // self.batch_size)


@dataclass(frozen=True)
class ToyEvalConfig:
    variance: float
    spacing: float
    n_kde: int
    n_eval: int
    bandwidth: str
    mode_radius_sigmas: float
    n_cv: int
    cv_bandwidths: tuple[float, ...]


@dataclass(frozen=True)
class ToySampleConfig:
    sample_steps: int
    clip_x0: bool


STAGE_CONFIGS = (ToyTrainConfig, ToyEvalConfig, ToySampleConfig)


def split(cfg: Any) -> tuple[ToyTrainConfig, ToyEvalConfig, ToySampleConfig]:
    """The stage configs read off an experiment config holding (at least) all their fields."""
    return tuple(c(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(c)}) for c in STAGE_CONFIGS)


def stage_seed(*parts: object) -> int:
    """A stable 31-bit seed from labels (seed, N, variant, purpose)."""
    return zlib.crc32("/".join(map(str, parts)).encode()) & 0x7FFFFFFF


def training_set(cfg: ToyTrainConfig, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(stage_seed(seed, n, "train-data"))
    return tdata.sample_mixture(cfg.n_train, n, rng, cfg.variance, cfg.spacing)


def evaluate(cfg: ToyEvalConfig, n: int, samples: np.ndarray, eval_true: np.ndarray, logp_eval: np.ndarray,
             bandwidth_cv: float) -> dict:
    """KDE KL both ways (Silverman/Scott and the cross-validated bandwidth) and mode coverage of `samples`."""
    fit, ev = samples[: cfg.n_kde], samples[cfg.n_kde:]
    fwd = kde.kl_forward(logp_eval, eval_true, fit, cfg.bandwidth)
    rev = kde.kl_reverse(tdata.log_density(ev, n, cfg.variance, cfg.spacing), ev, fit, cfg.bandwidth)
    fwd_cv = kde.kl_forward(logp_eval, eval_true, fit, bandwidth=bandwidth_cv)
    cov, inside = coverage.mode_coverage(samples, n, cfg.variance, cfg.spacing, cfg.mode_radius_sigmas)
    return {"kl_forward": fwd, "kl_reverse": rev, "kl_forward_cv": fwd_cv, "mode_coverage": cov,
            "in_mode_fraction": inside}


def floor(cfg: ToyEvalConfig, n: int, seed: int) -> dict:
    """True evaluation points, their exact log-density, a true reference sample, the cross-validated
    bandwidth, and the estimator applied to true samples (its floor)."""
    rng = np.random.default_rng(stage_seed(seed, n, "eval"))
    ev_true, _ = tdata.sample_mixture(cfg.n_eval, n, rng, cfg.variance, cfg.spacing)
    ref, _ = tdata.sample_mixture(cfg.n_kde + cfg.n_eval, n, rng, cfg.variance, cfg.spacing)
    held, _ = tdata.sample_mixture(cfg.n_cv, n, rng, cfg.variance, cfg.spacing)
    h_cv, _ = kde.select_bandwidth(ref[: cfg.n_kde], held, np.asarray(cfg.cv_bandwidths))
    logp = tdata.log_density(ev_true, n, cfg.variance, cfg.spacing)
    return {"eval": ev_true, "logp": logp, "ref": ref, "bandwidth_cv": h_cv, **evaluate(cfg, n, ref, ev_true, logp, h_cv)}


def fit_gmm(cfg: ToyTrainConfig, x: np.ndarray, n: int, seed: int) -> dict:
    from sklearn.mixture import GaussianMixture

    rng = np.random.default_rng(stage_seed(seed, n, "gmm-subset"))
    sub = x[rng.permutation(len(x))[: cfg.gmm_fit_samples]]
    gmm = GaussianMixture(n_components=n, covariance_type=cfg.gmm_covariance, max_iter=cfg.gmm_max_iter,
                          random_state=stage_seed(seed, n, "gmm"), init_params=cfg.gmm_init)
    gmm.fit(sub)
    return {"labels": gmm.predict(x).astype(np.int64), "means": gmm.means_, "converged": bool(gmm.converged_),
            "n_iter": int(gmm.n_iter_)}


def _model_config(cfg: ToyTrainConfig, n_classes: int) -> tdiff.MLPConfig:
    return tdiff.MLPConfig(hidden=cfg.hidden, layers=cfg.layers, t_dim=cfg.t_dim, n_classes=n_classes,
                           c_dim=cfg.c_dim)


def train_model(ctx: Any, cfg: ToyTrainConfig, x_norm: np.ndarray, labels: np.ndarray | None, n_classes: int,
                seed: int, desc: str) -> dict:
    torch.manual_seed(stage_seed(seed, desc, "init"))
    model = tdiff.DiffusionMLP(_model_config(cfg, n_classes)).to(ctx.device)
    xt = torch.as_tensor(x_norm, dtype=torch.float32, device=ctx.device)
    lt = torch.as_tensor(labels, device=ctx.device) if labels is not None else None
    bar = ctx.progress(total=cfg.steps, desc=f"train {desc}")

    def cb(step: int, loss: float) -> None:
        bar.update(1)
        if step % 100 == 0:
            bar.set_postfix(loss=f"{loss:.3f}")

    losses = tdiff.train(model, xt, lt, steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr,
                         seed=stage_seed(seed, desc, "train"), sch=tdiff.Schedule.cosine(cfg.diffusion_steps),
                         warmup=cfg.warmup, callback=cb)
    bar.close()
    return {"state": {k: v.cpu() for k, v in model.state_dict().items()},
            "final_loss": float(np.mean(losses[-max(1, len(losses) // 20):]))}


def load_model(cfg: ToyTrainConfig, trained: dict, n_classes: int, device: torch.device) -> tdiff.DiffusionMLP:
    model = tdiff.DiffusionMLP(_model_config(cfg, n_classes))
    model.load_state_dict(trained["state"])
    return model.to(device).eval()


def sample(ctx: Any, model: tdiff.DiffusionMLP, sch: tdiff.Schedule, total: int, labels: np.ndarray | None,
           n: int, clip: float | None, scale: float, *seed_parts: object) -> np.ndarray:
    """`total` samples in data units; a conditional model draws its class from the training labels'
    marginal first (p(x) = Σ_c p(x|c) p(c))."""
    g = torch.Generator(device=ctx.device).manual_seed(stage_seed(*seed_parts, "sample"))
    c = None
    if labels is not None:
        probs = torch.as_tensor(np.bincount(labels, minlength=n) / len(labels), dtype=torch.float64)
        c = torch.multinomial(probs, total, replacement=True, generator=torch.Generator().manual_seed(
            stage_seed(*seed_parts, "classes"))).to(ctx.device)
    s = tdiff.sample(model, total, sch, c=c, generator=g, device=ctx.device, clip_x0=clip)
    return s.cpu().numpy().astype(np.float64) * scale


__all__ = ["TOY_FLOOR", "TOY_GMM", "TOY_TRAIN", "TOY_SAMPLES", "TOY_EVALUATE", "ToyTrainConfig", "ToyEvalConfig",
           "ToySampleConfig", "STAGE_CONFIGS", "split", "stage_seed", "training_set", "evaluate", "floor", "fit_gmm",
           "train_model", "load_model", "sample"]
