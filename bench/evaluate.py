"""One evaluation path: `evaluate(real, fake, extractor=..., metrics=[...]) -> metric rows`.

Used by every experiment (which pass features they computed in their own cached, distributed stage) and by
`dlc-bench metrics`. Each side is one of
- precomputed features: a mapping {layer: (N, D) array} as `extractor.extract` returns;
- images: anything `bench.inputs.open_images` reads (folder, ADM-style .npz, uint8 array, dataset, ...);
- for `real` only, reference statistics: a `RefStats` or a path to an .npz with `mu`, `sigma` (ADM format).
  Fréchet-type metrics use the statistics; the others use the file's `arr_0` images when it has them (as ADM's
  evaluator does with its reference batches), else are refused.

Metric names are the keys of the registry `bench.metrics.METRICS`, a group name (`kid`, `prdc`, `is_fidelity`,
`novelty`: every metric of the group), or an alias a spec declares (`fid`, `fid_inf`, `pr`, `dc`, `is`).
Direction, minimum sample counts and the feature layer a metric reads come from its `MetricSpec`. A Fréchet
distance (spec.extractor_label set) is named by the extractor and layer: `fid` on Inception pool3, `sfid` on its
spatial layer, `fd_effnet`, `fd_dinov2`, `fd_pixels`, ... elsewhere (never "FID" for another network).

Bad input raises ValueError (`EvaluationInputError` for an unreadable side); the CLI prints it as `error: ...`.
"""
from __future__ import annotations

import contextlib

import dataclasses
import os
import time
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from .metrics import GROUPS, METRIC_ORDER, METRICS, MetricSpec, compute_metrics, metric_ci
from .metrics.frechet import fd_bootstrap_ci
from .npz_reader import CORRUPT_ZIP_ERRORS

FRECHET = ("fd", "sfid")  # registered as fd(real=, fake=) on a layer: bootstrapped by fd_bootstrap_ci
from .schema import metric_row

__all__ = ["evaluate", "run_evaluation", "Evaluation", "EvaluationInputError", "resolve_metrics", "metric_names",
           "is_stats_file"]

IMAGE_INPUTS = ("real", "fake")      # metrics over other inputs (probes: features + labels) are not image metrics


class EvaluationInputError(ValueError):
    """An input side ('real' or 'fake') could not be read or turned into features."""

    def __init__(self, side: str, detail: str):
        super().__init__(f"{side}: {detail}")
        self.side, self.detail = side, detail


#################################################################################
#                                 Metric names                                  #
#################################################################################

def _specs() -> list[MetricSpec]:
    """Every registered spec, in registration order (metrics registered elsewhere last, by name)."""
    keys = [k for k in METRIC_ORDER if k in METRICS] + [k for k in METRICS.names() if k not in METRIC_ORDER]
    return [METRICS.get(k) for k in keys]


def _image_specs() -> list[MetricSpec]:
    return [s for s in _specs() if set(s.inputs) <= set(IMAGE_INPUTS)]


def metric_names() -> list[str]:
    """Every name `resolve_metrics` accepts: registry keys, group names and aliases of the image metrics."""
    specs = _image_specs()
    names = [s.key for s in specs]
    names += [s.group for s in specs if s.group]
    names += [a for s in specs for a in s.aliases]
    return list(dict.fromkeys(names))


def resolve_metrics(names: Iterable[str]) -> list[MetricSpec]:
    """Names → registered specs, in order, without duplicates. A group name selects every metric of the group,
    an alias every metric declaring it. Unknown names raise ValueError with a did-you-mean."""
    from .registry import did_you_mean

    specs = _image_specs()
    out: dict[str, MetricSpec] = {}
    for raw in names:
        name = str(raw).strip().lower()
        if name in GROUPS:
            found = [s for s in _specs() if s.group == name]
        elif name in METRICS:
            found = [METRICS.get(name)]
        else:
            found = [s for s in specs if name in s.aliases]
        if not found:
            raise ValueError(f"unknown metric {name!r}.{did_you_mean(name, metric_names())}")
        bad = [s.key for s in found if not set(s.inputs) <= set(IMAGE_INPUTS)]
        if bad:
            raise ValueError(f"metric {name!r} needs {', '.join(found[0].inputs)}, not real and fake images: "
                             "linear probes need labels: use bench.metrics.linear_probe from Python")
        out.update((s.key, s) for s in found)
    if not out:
        raise ValueError("no metrics given")
    return list(out.values())


#################################################################################
#                                  The real side                                #
#################################################################################

def is_stats_file(path: str | os.PathLike) -> bool:
    """True for an .npz holding `mu` and `sigma` (reference statistics), False for anything else."""
    p = Path(path).expanduser()
    if p.suffix != ".npz" or not p.is_file():
        return False
    try:
        with np.load(p, allow_pickle=False) as z:
            return {"mu", "sigma"} <= set(z.files)
    except (OSError, ValueError, *CORRUPT_ZIP_ERRORS):
        return False


def _npz_has_images(path: Path) -> bool:
    with np.load(path, allow_pickle=False) as z:
        return "arr_0" in z.files


def _is_features(x: Any) -> bool:
    return isinstance(x, Mapping) and not any(k in x for k in ("image", "img", "images"))


@dataclasses.dataclass
class _Side:
    name: str
    images: Any = None                       # an ImageSource
    features: dict | None = None             # precomputed {layer: array} or extracted
    ref: Any = None                          # RefStats (real side only)


def _open(side: str, x: Any):
    from .inputs import open_images

    try:
        return open_images(x)
    except (OSError, ValueError) as e:
        raise EvaluationInputError(side, str(e)) from None


def _real_side(real: Any) -> tuple[Any, Any]:
    """(RefStats or None, images or None) of the real argument."""
    from .refstats import RefStats, load_ref_stats

    if isinstance(real, RefStats):
        return real, None
    if isinstance(real, (str, Path)) and is_stats_file(real):
        try:
            ref = load_ref_stats(real)
        except (OSError, ValueError) as e:
            raise EvaluationInputError("real", str(e)) from None
        return ref, (real if _npz_has_images(Path(real).expanduser()) else None)
    return None, real


#################################################################################
#                                   Evaluation                                  #
#################################################################################

@dataclasses.dataclass
class Evaluation:
    """What `run_evaluation` computed: the rows, and per row the layer and registry key; inputs and timings."""
    rows: list[dict]
    layers: list[str]
    keys: list[str]
    inputs: dict
    timings: dict

    @property
    def values(self) -> dict[str, float]:
        return {r["metric"]: r["value"] for r in self.rows}


def _layer_of(spec: MetricSpec, extractor: Any, default_layer: str, names: Sequence[str]) -> str:
    layer = default_layer if spec.layer == "default" else spec.layer
    if layer not in extractor.layer_dims:
        shown = next((n for n in names if n == spec.key or n == spec.group or n in spec.aliases), spec.key)
        raise ValueError(f"metric {shown!r} needs the layer {layer!r}, which the {extractor.name} extractor does not "
                         f"have (layers: {', '.join(extractor.layer_dims)}); use inception-v3-compat for sfid and is")
    return layer


def _check_samples(spec: MetricSpec, inputs: Mapping[str, Any]) -> None:
    for name in spec.inputs:
        x = inputs.get(name)
        if isinstance(x, np.ndarray) and len(x) < spec.min_samples:
            raise ValueError(f"metric {spec.key!r} needs at least {spec.min_samples} samples, {name} has {len(x)}")


def _extract_sides(sides, plan, extractor: Any, batch_size: int, store: Any, progress: Any, timings: dict) -> None:
    """Fill each side's features for its layers: precomputed ones checked, images extracted through `store`."""
    from .features import extract_features

    for side, layers in sides:
        if not layers:
            continue
        if side.features is not None:
            missing = [l for l in layers if l not in side.features]
            if missing:
                raise EvaluationInputError(side.name, f"the precomputed features lack layer {missing[0]!r} "
                                                      f"(have {', '.join(map(str, side.features)) or 'none'})")
            side.features = {l: np.asarray(f) for l, f in side.features.items()}
            continue
        if side.images is None:
            raise ValueError(f"metrics {', '.join(s.key for s, _ in plan if side.name in s.inputs)} need "
                             f"{side.name} images or features")
        t0 = time.perf_counter()
        try:
            side.features = extract_features(side.images, extractor, layers, batch_size=batch_size,
                                             cache=store if store is not None else False,
                                             progress=progress(side.name) if progress else None)
        except (OSError, ValueError) as e:
            raise EvaluationInputError(side.name, str(e)) from None
        timings[f"features_{side.name}"] = round(time.perf_counter() - t0, 3)


def run_evaluation(real: Any, fake: Any, *, extractor: Any, metrics: Iterable[str], layer: str | None = None,
                   batch_size: int = 64, cache: Any = None,
                   progress: Callable[[str], Callable[[int, int | None], None] | None] | None = None,
                   bootstrap: int = 0, seed: int = 0, labels: Mapping[str, Any] | None = None,
                   options: Mapping[str, Mapping] | None = None) -> Evaluation:
    """`evaluate`, returning also the layer and registry key of each row, what was read, and timings."""

    names = [str(n).strip().lower() for n in metrics]
    specs = resolve_metrics(names)
    default_layer = layer or extractor.default_layer
    if default_layer not in extractor.layer_dims:
        raise ValueError(f"{extractor.name} has no layer {default_layer!r} (layers: {', '.join(extractor.layer_dims)})")
    plan = [(s, _layer_of(s, extractor, default_layer, names)) for s in specs]
    labels = dict(labels or {})

    # ---- the two sides: features, images, or (real) reference statistics ----
    real_s, fake_s = _Side("real"), _Side("fake")
    if _is_features(fake):
        fake_s.features = dict(fake)
    else:
        fake_s.images = _open("fake", fake)
    if real is not None and _is_features(real):
        real_s.features = dict(real)
    elif real is not None:
        real_s.ref, real_images = _real_side(real)
        needs_images = [s.key for s, _ in plan if "real" in s.inputs and s.extractor_label is None]
        if real_s.ref is not None:
            if real_images is None and needs_images:
                raise ValueError(f"real is a reference statistics file without images: only fid, sfid and fd_inf "
                                 f"can use it, not {', '.join(needs_images)}; pass real images (a folder or an .npz "
                                 "with arr_0) for the other metrics")
            from .refstats import check_compatible

            for s, lay in plan:
                if s.extractor_label is not None:
                    check_compatible(real_s.ref, extractor.describe(), lay)
        if real_images is not None and (real_s.ref is None or needs_images):
            real_s.images = _open("real", real_images)

    def from_stats(s: MetricSpec) -> bool:
        return real_s.ref is not None and s.extractor_label is not None

    fake_layers = list(dict.fromkeys(lay for _, lay in plan))
    real_layers = list(dict.fromkeys(lay for s, lay in plan if "real" in s.inputs and not from_stats(s)))
    timings: dict[str, float] = {}
    from .features.cache import as_feature_cache

    store = as_feature_cache(cache) if cache is not None else None
    with store.deferred() if store is not None else contextlib.nullcontext():   # written once both sides are read
        _extract_sides(((real_s, real_layers), (fake_s, fake_layers)), plan, extractor, batch_size, store, progress,
                       timings)

    # ---- metrics: one compute_metrics call per (layer, real input), so registry groups run once ----
    t0 = time.perf_counter()
    todo: list[tuple[MetricSpec, str, str, tuple]] = []
    seen: set[str] = set()
    for spec, lay in plan:
        name = spec.key if spec.extractor_label is None else extractor.metric_label(lay) + spec.extractor_label
        if name in seen:                                              # 'fid' and 'fd' are one metric
            continue
        seen.add(name)
        todo.append((spec, lay, name, (lay, from_stats(spec))))
    inputs_of: dict[tuple, tuple[Any, np.ndarray]] = {}
    for spec, lay, _, batch in todo:
        fake_f = fake_s.features[lay]
        if batch[1]:
            ref = real_s.ref
            real_in: Any = (ref.mu_s, ref.sigma_s) if lay != ref.meta.get("layer") else (ref.mu, ref.sigma)
        else:
            real_in = (real_s.features or {}).get(lay)
        inputs_of[batch] = (real_in, fake_f)
        _check_samples(spec, {"real": real_in if "real" in spec.inputs else None, "fake": fake_f})
    values: dict[tuple, dict[str, float]] = {}
    for batch, (real_in, fake_f) in inputs_of.items():
        keys = [spec.key for spec, _, _, b in todo if b == batch]
        values[batch] = compute_metrics(keys, real=real_in, fake=fake_f, options=options)
    rows, row_layers, row_keys = [], [], []
    for spec, lay, name, batch in todo:
        real_in, fake_f = inputs_of[batch]
        ci = (None, None)
        if bootstrap and spec.extractor_label == "":                  # Fréchet distances (not FD∞: too costly)
            ci_fn = fd_bootstrap_ci if spec.key in FRECHET else partial(metric_ci, spec.key)  # same resamples, faster
            c = ci_fn(real=real_in, fake=fake_f, n_resamples=bootstrap, seed=seed)
            ci = (c.low, c.high)
        rows.append(metric_row(name, values[batch][spec.key], higher_is_better=spec.higher_is_better, ci_low=ci[0],
                               ci_high=ci[1], n=len(fake_f), **labels))
        row_layers.append(lay)
        row_keys.append(spec.key)
    timings["metrics"] = round(time.perf_counter() - t0, 3)

    ref, real_src, fake_src = real_s.ref, real_s.images, fake_s.images
    real_desc = None
    if ref is not None:
        real_desc = {"kind": "reference statistics", **{k: v for k, v in ref.meta.items() if k != "extractor"}}
    elif real_src is not None:
        real_desc = real_src.describe()
    elif real_s.features is not None:
        real_desc = {"kind": "features", "layers": list(real_s.features)}
    n_real = (len(next(iter(real_s.features.values()))) if real_s.features else ref.n if ref is not None else None)
    inputs = {
        "real": real_desc,
        "real_images": real_src.describe() if real_src is not None and ref is not None else None,
        "fake": fake_src.describe() if fake_src is not None else {"kind": "features", "layers": list(fake_s.features)},
        "n_real": n_real,
        "n_fake": len(next(iter(fake_s.features.values()))),
        "real_content_sha256": (real_src.fingerprint() if real_src is not None
                                else ((ref.meta.get("file") or {}).get("sha256") if ref is not None else None)),
        "fake_content_sha256": fake_src.fingerprint() if fake_src is not None else None,
    }
    return Evaluation(rows=rows, layers=row_layers, keys=row_keys, inputs=inputs, timings=timings)


def evaluate(real: Any, fake: Any, *, extractor: Any, metrics: Iterable[str], layer: str | None = None,
             batch_size: int = 64, cache: Any = None,
             progress: Callable[[str], Callable[[int, int | None], None] | None] | None = None,
             bootstrap: int = 0, seed: int = 0, labels: Mapping[str, Any] | None = None,
             options: Mapping[str, Mapping] | None = None) -> list[dict]:
    """Metric rows (`bench.schema.metric_row`: metric, value, ci_low, ci_high, n, higher_is_better, **labels) of
    `fake` against `real` under `extractor`, one per metric, in the order asked.

    layer: the layer of metrics reading the default layer (the extractor's when None); IS reads the logits and
    sfid the spatial layer whatever `layer` is. cache: a FeatureCache / directory / True for image inputs (None:
    no caching). progress(side) -> callback(done, total) or None. bootstrap > 0: that many resamples of the fake
    set (seeded with `seed`, `metric_ci`) give the Fréchet distances ci_low/ci_high. n is the fake sample count.
    options: keyword arguments per metric key or group (see `compute_metrics`).
    """
    return run_evaluation(real, fake, extractor=extractor, metrics=metrics, layer=layer, batch_size=batch_size,
                          cache=cache, progress=progress, bootstrap=bootstrap, seed=seed, labels=labels,
                          options=options).rows
