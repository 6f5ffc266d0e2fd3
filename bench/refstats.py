"""Reference statistics in the ADM evaluator's .npz format: read, write, build, and compare without images.

An ADM reference batch (openai/guided-diffusion `evaluations/`, e.g. VIRTUAL_imagenet256_labeled.npz) holds `mu`,
`sigma` (pool3, 2048) and `mu_s`, `sigma_s` (sFID spatial, 2023) computed over the whole dataset, plus `arr_0`
images used only for precision/recall. We read those files as they are (images stay on disk: np.load is lazy per
key) and write the same keys plus `dlc_bench_meta`, a JSON string with the extractor description (name,
preprocessing, weights sha256), layers, n and the content hash of the images. Files without that key are
treated as ADM's own (TF Inception, TF1-bilinear resize).

    ref = build_ref_stats("ref_images/", extractor)      # the CLI `dlc-bench ref-stats` calls this
    save_ref_stats("ref.npz", ref)
    ref_distances(load_ref_stats("VIRTUAL_imagenet256_labeled.npz"), build_ref_stats("samples.npz", extractor))
    # {'fid': ..., 'sfid': ...}
"""
from __future__ import annotations

import dataclasses
import io
import json
import os
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

from dlc.io import atomic_write_bytes

from .errors import UserError
from .npz_reader import CORRUPT_ZIP_ERRORS

__all__ = ["RefStats", "load_ref_stats", "save_ref_stats", "build_ref_stats", "ref_distances", "check_compatible",
           "META_KEY"]

META_KEY = "dlc_bench_meta"
FORMAT = "adm-ref-npz+dlc-bench-v1"
_ADM_META = {
    "origin": "adm-evaluator (no dlc_bench_meta in the file)",
    "extractor": {"extractor": "inception-v3-compat", "preprocessing": {"resize": {"mode": "legacy-tf", "size": 299}},
                  "weights": {"source": "TF classify_image_graph_def.pb (2015-12-05)", "sha256": None}},
    "layer": "pool3", "spatial_layer": "spatial", "metric_label": "fid", "spatial_metric_label": "sfid", "n": None,
}


@dataclasses.dataclass
class RefStats:
    """Gaussian statistics of reference features: pool (mu, sigma), optional spatial (mu_s, sigma_s), metadata."""
    mu: np.ndarray
    sigma: np.ndarray
    mu_s: np.ndarray | None = None
    sigma_s: np.ndarray | None = None
    meta: dict = dataclasses.field(default_factory=dict)

    @property
    def n(self) -> int | None:
        return self.meta.get("n")

    @property
    def is_adm(self) -> bool:
        """True for a file written by ADM's evaluator (no dlc-bench metadata)."""
        return self.meta.get("origin", "").startswith("adm-evaluator")


def _check(mu: Any, sigma: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
    mu, sigma = np.asarray(mu, np.float64), np.asarray(sigma, np.float64)
    if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
        raise ValueError(f"{what}: mean {mu.shape} and covariance {sigma.shape} do not fit (want (d,) and (d, d))")
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise ValueError(f"{what}: statistics contain NaN/inf")
    return mu, sigma


def load_ref_stats(path: str | os.PathLike) -> RefStats:
    """Read an ADM reference .npz (mu, sigma[, mu_s, sigma_s]) or one written by `save_ref_stats`."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"reference statistics file {path} does not exist "
                                "(build one with `dlc-bench ref-stats` or pass an ADM reference batch .npz)")
    try:
        z = np.load(path, allow_pickle=False)
    except (ValueError, OSError, *CORRUPT_ZIP_ERRORS) as e:
        raise ValueError(f"{path} is not a readable .npz: {e}") from None
    with z:
        keys = set(z.files)
        if not {"mu", "sigma"} <= keys:
            raise ValueError(f"{path} has no 'mu'/'sigma' arrays (keys: {', '.join(sorted(keys))}); "
                             "it is not a reference statistics file")
        try:
            mu, sigma = _check(z["mu"], z["sigma"], f"{path.name} mu/sigma")
            mu_s = sigma_s = None
            if {"mu_s", "sigma_s"} <= keys:
                mu_s, sigma_s = _check(z["mu_s"], z["sigma_s"], f"{path.name} mu_s/sigma_s")
            meta = json.loads(str(z[META_KEY])) if META_KEY in keys else json.loads(json.dumps(_ADM_META))
        except (OSError, *CORRUPT_ZIP_ERRORS) as e:       # a damaged member (CRC / zlib error)
            raise ValueError(f"{path} is a damaged .npz, {type(e).__name__}: {e} (rebuild it with `dlc-bench "
                             "ref-stats`)") from None
    meta["file"] = {"path": str(path)}
    from .inputs import cached_file_sha256

    meta["file"]["sha256"] = cached_file_sha256(path)
    return RefStats(mu, sigma, mu_s, sigma_s, meta)


def save_ref_stats(path: str | os.PathLike, stats: RefStats) -> Path:
    """Write ADM-compatible keys (mu, sigma[, mu_s, sigma_s]) plus `dlc_bench_meta`, atomically."""
    path = Path(path).expanduser()
    if path.suffix != ".npz":
        raise ValueError(f"reference statistics are written as .npz; got {path.name}")
    arrays = {"mu": np.asarray(stats.mu, np.float64), "sigma": np.asarray(stats.sigma, np.float64)}
    if stats.mu_s is not None:
        arrays.update(mu_s=np.asarray(stats.mu_s, np.float64), sigma_s=np.asarray(stats.sigma_s, np.float64))
    meta = {k: v for k, v in stats.meta.items() if k != "file"}
    arrays[META_KEY] = np.array(json.dumps(meta, sort_keys=True, default=str))
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())
    return path


def build_ref_stats(images: Any, extractor: Any = "inception-v3-compat", *, layer: str | None = None,
                    spatial_layer: str | None = "spatial", batch_size: int = 64, cache: Any = True,
                    progress: Callable[[int, int | None], None] | None = None, **extractor_kwargs: Any) -> RefStats:
    """Statistics of `images` (anything `bench.inputs.open_images` takes) under `extractor` (a name or instance).

    Pool statistics of `layer` (default: the extractor's default layer); spatial statistics of `spatial_layer`
    when the extractor has it (Inception's sFID layer), else none.
    """
    from .features import build_extractor, extract_features
    from .inputs import open_images
    from .metrics.frechet import feature_statistics

    ext = build_extractor(extractor, **extractor_kwargs) if isinstance(extractor, str) else extractor
    layer = ext.check_layers(layer)[0]
    spatial_layer = spatial_layer if spatial_layer in ext.layer_dims else None
    source = open_images(images)
    layers = [layer] + ([spatial_layer] if spatial_layer else [])
    feats = extract_features(source, ext, layers, batch_size=batch_size, cache=cache, progress=progress)
    n = len(feats[layer])
    if n < 2:
        raise ValueError(f"reference statistics need at least 2 images, got {n}")
    mu, sigma = feature_statistics(feats[layer])
    mu_s = sigma_s = None
    if spatial_layer:
        mu_s, sigma_s = feature_statistics(feats[spatial_layer])
    meta = {"format": FORMAT, "extractor": ext.describe(), "layer": layer, "spatial_layer": spatial_layer,
            "metric_label": ext.metric_label(layer),
            "spatial_metric_label": ext.metric_label(spatial_layer) if spatial_layer else None,
            "n": n, "source": source.describe(), "content_sha256": source.fingerprint(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    return RefStats(mu, sigma, mu_s, sigma_s, meta)


def _identity(meta: dict) -> dict:
    e = meta.get("extractor", {})
    return {"extractor": e.get("extractor"), "resize": e.get("preprocessing", {}).get("resize", {}).get("mode"),
            "size": e.get("preprocessing", {}).get("resize", {}).get("size"),
            "weights_sha256": e.get("weights", {}).get("sha256"), "layer": meta.get("layer")}


def check_compatible(ref: RefStats, description: dict, layer: str, *, strict: bool = True) -> None:
    """Refuse (UserError) to compare `ref` with features of `layer` under an extractor `description`
    (`FeatureExtractor.describe()`) when extractor, resize, size, weights or layer differ, or when `ref` has no
    statistics of that layer. With an ADM file the weights cannot be checked: a warning says so."""
    ours = {"extractor": description, "layer": ref.meta.get("layer")}
    ia, ib = _identity(ref.meta), _identity(ours)
    keys = ("extractor", "resize", "size") if ref.is_adm else ("extractor", "resize", "size", "weights_sha256")
    diff = [k for k in keys if ia[k] != ib[k]]
    if diff:
        msg = "; ".join(f"{k}: {ia[k]!r} in the statistics vs {ib[k]!r} here" for k in diff)
        if strict:
            raise UserError(f"reference statistics are not comparable with these features ({msg})",
                            hint="use the same --features, --resize and --weights as the statistics, or rebuild them")
        warnings.warn(f"comparing statistics that differ ({msg})", RuntimeWarning, stacklevel=2)
    layers = [ref.meta.get("layer")] + ([ref.meta.get("spatial_layer")] if ref.mu_s is not None else [])
    if layer not in layers:
        have = ", ".join(str(l) for l in layers if l)
        raise UserError(f"the reference statistics hold layer(s) {have}, not {layer!r}"
                        + (" (no mu_s/sigma_s: no sFID statistics)" if layer == "spatial" and ref.mu_s is None else ""),
                        hint="rebuild them with `dlc-bench ref-stats` using the same --features and --layer")
    if not diff and ref.is_adm:
        warnings.warn("the reference is an ADM file (TF Inception): the numbers match ADM's only with the original "
                      "Inception weights (weights-inception-2015-12-05-6726825d.pth)", RuntimeWarning, stacklevel=2)


def ref_distances(a: RefStats, b: RefStats, *, strict: bool = True) -> dict[str, float]:
    """Fréchet distances between two sets of statistics: {pool label: FD, spatial label: FD (if both have it)}.

    Refuses (UserError) statistics from different extractors, layers, resize modes or weights; with an ADM file
    on one side, the other must come from inception-v3-compat with the legacy-tf resize (weights cannot be
    checked: a warning says so). strict=False downgrades the refusals to warnings.
    """
    from .metrics.frechet import frechet_distance

    ia, ib = _identity(a.meta), _identity(b.meta)
    keys = ("extractor", "resize", "size", "layer") if (a.is_adm or b.is_adm) else tuple(ia)
    diff = [k for k in keys if ia[k] != ib[k]]
    if diff:
        msg = "; ".join(f"{k}: {ia[k]!r} vs {ib[k]!r}" for k in diff)
        if strict:
            raise UserError(f"reference statistics are not comparable ({msg})",
                            hint="rebuild one side with the same extractor, layer, --resize and --weights")
        warnings.warn(f"comparing statistics that differ ({msg})", RuntimeWarning, stacklevel=2)
    elif a.is_adm != b.is_adm:
        warnings.warn("one side is an ADM reference file (TF Inception): the numbers match ADM's only if the other "
                      "side used the original Inception weights (weights-inception-2015-12-05-6726825d.pth)",
                      RuntimeWarning, stacklevel=2)
    label = a.meta.get("metric_label") or "fd"
    out = {label: frechet_distance(a.mu, a.sigma, b.mu, b.sigma)}
    if a.mu_s is not None and b.mu_s is not None:
        out[a.meta.get("spatial_metric_label") or "fd_spatial"] = frechet_distance(a.mu_s, a.sigma_s, b.mu_s, b.sigma_s)
    return out
