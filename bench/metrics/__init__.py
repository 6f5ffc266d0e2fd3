"""Evaluation metrics as pure functions over features, and the metric registry `METRICS`.

Every metric is a function of keyword-only feature arrays (`real=`, `fake=`; or `features=`, `labels=` for probes)
returning a float, registered as a `MetricSpec` with its direction, a version bumped whenever its definition
changes, and the minimum number of samples. Metrics that share one computation (precision/recall/density/coverage,
mean/std pairs, probe top-1/top-5) name a `group`; `compute_metrics` runs each group once.

    from bench.metrics import METRICS, compute_metrics
    METRICS.get("fd").fn(real=real_feats, fake=fake_feats)
    compute_metrics(["precision", "recall", "coverage"], real=real_feats, fake=fake_feats)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Optional, Sequence

import numpy as np

from ..errors import UserError
from ..registry import Registry
from .frechet import fd, fd_infinity, feature_statistics, frechet_distance, trace_sqrt_product
from .inception_score import inception_score_adm, inception_score_fidelity
from .kid import kid
from .novelty import nearest_neighbour_grid, nearest_neighbours, novelty
from .prdc import density_coverage, prdc, precision_recall
from .probe import linear_probe, one_hot_tokens
from .stats import ConfidenceInterval, bootstrap_ci
from .vendi import vendi_score

__all__ = [
    "METRICS", "GROUPS", "METRIC_ORDER", "MetricSpec", "compute_metrics", "feature_statistics", "frechet_distance", "fd", "fd_infinity",
    "trace_sqrt_product", "inception_score_adm", "inception_score_fidelity", "kid", "prdc", "precision_recall",
    "density_coverage", "vendi_score", "linear_probe", "one_hot_tokens", "novelty", "nearest_neighbours",
    "nearest_neighbour_grid", "bootstrap_ci", "metric_ci", "ConfidenceInterval",
]

#################################################################################
#                                 Registry                                      #
#################################################################################


@dataclass(frozen=True)
class MetricSpec:
    """A registered metric: fn(**inputs, **options) -> float, its direction, version and sample needs."""
    key: str
    fn: Callable[..., float]
    higher_is_better: Optional[bool]  # None: not a quality score (a std, a descriptive statistic)
    version: int
    description: str
    min_samples: int
    inputs: tuple[str, ...] = ("real", "fake")  # keyword arguments fn needs
    group: Optional[str] = None  # name in GROUPS of a function computing this key together with others
    # How image evaluation (`bench.evaluate`) uses it:
    layer: str = "default"  # feature layer it reads: 'default' (the extractor's or the caller's) or a named layer
    aliases: tuple[str, ...] = ()  # other names selecting it; several metrics may share one ('pr': precision, recall)
    extractor_label: Optional[str] = None  # set for Fréchet distances: the row is named
    #   extractor.metric_label(layer) + extractor_label ('fid', 'sfid', 'fd_effnet', 'fid_inf', ...), and the real
    #   side may be reference statistics (mu, sigma)


METRICS: Registry[MetricSpec] = Registry("metric")
GROUPS: dict[str, Callable[..., dict]] = {}
METRIC_ORDER: list[str] = []  # keys in registration order (a group's members together): the order of results



def _register(key, fn, higher_is_better, version, description, min_samples, inputs=("real", "fake"), group=None,
              **image):
    METRICS.register(key, MetricSpec(key, fn, higher_is_better, version, description, min_samples, tuple(inputs), group,
                                     **image))
    METRIC_ORDER.append(key)


#################################################################################
#                              Group functions                                  #
#################################################################################

def _is_fidelity(*, fake, **kw) -> dict:
    out = inception_score_fidelity(fake, **kw)
    return {"is_fidelity": out["mean"], "is_fidelity_std": out["std"]}


def _kid(*, real, fake, **kw) -> dict:
    out = kid(real=real, fake=fake, **kw)
    return {"kid": out["mean"], "kid_std": out["std"]}


def _prdc(*, real, fake, **kw) -> dict:
    return prdc(real=real, fake=fake, **kw)


def _novelty(*, real, fake, **kw) -> dict:
    out = novelty(train=real, generated=fake, **kw)
    return {"nn_max_sim": out.mean, "nn_copy_frac": out.frac_above}


def _probe(*, features, labels, **kw) -> dict:
    out = linear_probe(features, labels, **kw)
    return {"probe_top1": out.top1, "probe_top5": out.top5}


GROUPS.update(is_fidelity=_is_fidelity, kid=_kid, prdc=_prdc, novelty=_novelty, probe=_probe)


def _member(group: str, key: str) -> Callable[..., float]:
    def fn(**kw) -> float:
        return float(GROUPS[group](**kw)[key])
    fn.__name__ = f"{group}__{key}"
    return fn


#################################################################################
#                               Registrations                                   #
#################################################################################

_register("fd", lambda *, real, fake: fd(real=real, fake=fake), False, 1,
          "Fréchet distance of Gaussian fits (float64, symmetric eigen route); FID/sFID/FD-DINOv2 by extractor; "
          "real may be precomputed (mu, sigma)", 2, aliases=("fid",), extractor_label="")
_register("sfid", lambda *, real, fake: fd(real=real, fake=fake), False, 1,
          "sFID: Fréchet distance on the extractor's 'spatial' layer (Inception mixed_6/conv[..., :7], as ADM)", 2,
          layer="spatial", extractor_label="")
_register("fd_inf", lambda *, real, fake, **kw: fd_infinity(real=real, fake=fake, **kw), False, 1,
          "FD∞ (Chong & Forsyth 2020): FD_N at 15 subset sizes, linear fit in 1/N, intercept", 20, aliases=("fid_inf",),
          extractor_label="_inf")
_register("is_adm", lambda *, fake, **kw: inception_score_adm(fake, **kw), True, 1,
          "Inception Score as ADM: fake = 1008-class logits pool3·W (no bias), 5000-sample splits, mean", 2,
          inputs=("fake",), layer="logits_unbiased", aliases=("is",))
_register("is_fidelity", _member("is_fidelity", "is_fidelity"), True, 1,
          "Inception Score as torch-fidelity: fake = logits, 10 splits after seeded shuffle (2020), mean", 10,
          inputs=("fake",), group="is_fidelity", layer="logits_unbiased", aliases=("is",))
_register("is_fidelity_std", _member("is_fidelity", "is_fidelity_std"), None, 1,
          "std over the 10 splits of is_fidelity", 10, inputs=("fake",), group="is_fidelity",
          layer="logits_unbiased", aliases=("is",))
_register("kid", _member("kid", "kid"), False, 1,
          "Kernel Inception Distance: unbiased MMD², kernel (x·y/d+1)³, 100 subsets of 1000, seeded, mean", 2,
          group="kid")
_register("kid_std", _member("kid", "kid_std"), None, 1, "std over subsets of kid", 2, group="kid")
_register("precision", _member("prdc", "precision"), True, 1,
          "Improved precision (Kynkäänniemi 2019): k=3, self excluded, <=, as ADM", 4, group="prdc",
          aliases=("pr",))
_register("recall", _member("prdc", "recall"), True, 1,
          "Improved recall (Kynkäänniemi 2019): k=3, self excluded, <=, as ADM", 4, group="prdc",
          aliases=("pr",))
_register("density", _member("prdc", "density"), True, 1, "Density (Naeem 2020): k=5, <", 6, group="prdc",
          aliases=("dc",))
_register("coverage", _member("prdc", "coverage"), True, 1, "Coverage (Naeem 2020): k=5, <", 6, group="prdc",
          aliases=("dc",))
_register("vendi", lambda *, fake, q=1, **kw: vendi_score(fake, q=q, **kw), None, 1,
          "Vendi score of order 1 (cosine kernel, float64, dual path when n > d); no direction: a sample set should "
          "match the data's diversity, not exceed it", 1, inputs=("fake",))
_register("vendi_q2", lambda *, fake, **kw: vendi_score(fake, q=2, **kw), None, 1,
          "Vendi score of order 2", 1, inputs=("fake",))
_register("vendi_qinf", lambda *, fake, **kw: vendi_score(fake, q="inf", **kw), None, 1,
          "Vendi score of order ∞ (1 / largest eigenvalue)", 1, inputs=("fake",))
_register("probe_top1", _member("probe", "probe_top1"), True, 1,
          "Linear-probe top-1 test accuracy (multinomial logistic regression, C chosen on val); "
          "features (N, D) or tokens (N, L) with vocab_size=V", 10, inputs=("features", "labels"), group="probe")
_register("probe_top5", _member("probe", "probe_top5"), True, 1,
          "Linear-probe top-5 test accuracy", 10, inputs=("features", "labels"), group="probe")
_register("nn_max_sim", _member("novelty", "nn_max_sim"), None, 1,
          "Mean over generated samples of the max cosine similarity to training features (faiss, exact)", 1,
          group="novelty")
_register("nn_copy_frac", _member("novelty", "nn_copy_frac"), False, 1,
          "Fraction of generated samples with max cosine similarity to training > threshold (0.95)", 1,
          group="novelty")


#################################################################################
#                                  Compute                                      #
#################################################################################

def _n(x) -> Optional[int]:
    if isinstance(x, tuple) or (hasattr(x, "keys") and "mu" in x.keys()):
        return None  # precomputed statistics
    try:
        return len(x)
    except TypeError:
        return None


def compute_metrics(keys: Iterable[str], *, real=None, fake=None, features=None, labels=None,
                    options: Optional[Mapping[str, Mapping]] = None) -> dict[str, float]:
    """Compute registered metrics by key; grouped metrics share one computation.

    options: keyword arguments per metric key or group name, e.g. {"kid": {"subset_size": 100}, "prdc": {"k_pr": 5}}.
    """
    inputs = {"real": real, "fake": fake, "features": features, "labels": labels}
    options = dict(options or {})
    specs = [METRICS.get(k) for k in keys]
    out: dict[str, float] = {}
    done_groups: dict[str, dict] = {}
    for spec in specs:
        missing = [name for name in spec.inputs if inputs[name] is None]
        if missing:
            raise UserError(f"metric {spec.key!r} needs {', '.join(spec.inputs)}; missing {', '.join(missing)}",
                            hint="pass them as keyword arguments")
        for name in spec.inputs:
            n = _n(inputs[name])
            if name != "labels" and n is not None and n < spec.min_samples:
                raise UserError(f"metric {spec.key!r} needs at least {spec.min_samples} samples, "
                                f"{name} has {n}", hint="compute features for more samples")
        kw = {name: inputs[name] for name in spec.inputs}
        if spec.group is None:
            out[spec.key] = float(spec.fn(**kw, **options.get(spec.key, {})))
            continue
        if spec.group not in done_groups:
            done_groups[spec.group] = GROUPS[spec.group](**kw, **options.get(spec.group, {}))
        out[spec.key] = float(done_groups[spec.group][spec.key])
    return out


#################################################################################
#                          Confidence intervals of metrics                      #
#################################################################################

# the range of a metric's values, where it has one: recentred intervals are clipped to it
_BOUNDS = {**{k: (0.0, np.inf) for k in ("fd", "sfid", "fd_inf", "density", "is_adm", "is_fidelity")},
           **{k: (0.0, 1.0) for k in ("precision", "recall", "coverage", "nn_copy_frac", "probe_top1", "probe_top5")},
           **{k: (1.0, np.inf) for k in ("vendi", "vendi_q2", "vendi_qinf")}}


def metric_ci(key: str, *, real=None, fake=None, resample: Sequence[str] = ("fake",), n_resamples: int = 100,
              confidence: float = 0.95, seed: int = 0, options: Optional[dict] = None) -> ConfidenceInterval:
    """Bootstrap CI of a registered metric: rows of the inputs named in `resample` are resampled, others fixed.

    Default: resample the generated set only (the reference set is the fixed target, as with precomputed stats).
    The percentile interval is recentred on the estimate and clipped to the metric's range (`bench.metrics.stats`).
    """
    spec = METRICS.get(key)
    inputs = {"real": real, "fake": fake}
    names = [n for n in spec.inputs]
    missing = [n for n in names if inputs.get(n) is None]
    if missing:
        raise UserError(f"metric {key!r} needs inputs {names}; missing {missing}", hint="pass them as keywords")
    bad = [r for r in resample if r not in names]
    if bad or not resample:
        raise UserError(f"cannot resample {list(resample)} for metric {key!r} (inputs: {names})",
                        hint=f"resample a non-empty subset of {names}")
    opts = dict(options or {})
    order = [n for n in names if n in resample]
    fixed = {n: inputs[n] for n in names if n not in resample}

    def statistic(*arrays):
        return spec.fn(**dict(zip(order, arrays)), **fixed, **opts)

    return bootstrap_ci(statistic, *(inputs[n] for n in order), n_resamples=n_resamples, confidence=confidence,
                        seed=seed, recentre=True, bounds=_BOUNDS.get(spec.key, (-np.inf, np.inf)))
