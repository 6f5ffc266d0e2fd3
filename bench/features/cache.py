"""Content-addressed cache of features and Fréchet statistics.

Key = sha256 of {content hash of the input images (`ImageSource.fingerprint`), extractor name, layer,
preprocessing (resize mode/size/implementation, normalisation, dtype), weights sha256, library versions,
FEATURES_VERSION, kind}. Any change to any part is a different key, so a changed input, layer, resize or weights
file is a miss, never a stale hit. Inputs that cannot be hashed (one-shot iterables) are never cached.

Layout: <cache_dir>/features/<key[:2]>/<key>.npy (features, float32 (N, d)) or <key>.npz (mu, sigma float64),
each with a <key>.json sidecar holding the full key parts, what was read and the sha256 of the data file. Both are
written atomically (dlc.io.atomic_write) and the sidecar last: an entry without its sidecar is ignored. On read the
data file is checked against that sha256: a tampered, truncated or unreadable file gives one warning line naming it
(`bench.cache.warn`) and is recomputed. Nothing is unpickled (np.load(allow_pickle=False)).
cache_dir: argument, else `bench.cache.default_cache_dir()` ($DLC_BENCH_CACHE, else the user cache dir …/dlc-bench).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from dlc.io import atomic_write, atomic_write_bytes, file_sha256

from ..cache import default_cache_dir, warn
from ..inputs import open_images
from .base import FeatureExtractor

__all__ = ["FeatureCache", "default_cache_dir", "extract_features", "feature_statistics_cached", "cache_key"]


def cache_key(content_hash: str, description: dict, layer: str, kind: str = "features") -> tuple[str, dict]:
    """(hex key, the parts it hashes) for one layer of one input under one extractor description."""
    parts = {
        "kind": kind,
        "content": content_hash,
        "extractor": description["extractor"],
        "layer": layer,
        "preprocessing": description["preprocessing"],
        "weights_sha256": description["weights"].get("sha256"),
        "implementation": description["implementation"],
        "features_version": description["features_version"],
    }
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest(), parts


class FeatureCache:
    """Features (.npy) and statistics (.npz) on disk, keyed by `cache_key`; counts hits and misses."""

    def __init__(self, cache_dir: str | os.PathLike | None = None):
        self.root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        self.hits = 0
        self.misses = 0

    def _path(self, key: str, suffix: str) -> Path:
        return self.root / "features" / key[:2] / f"{key}{suffix}"

    def _meta(self, key: str) -> dict | None:
        p = self._path(key, ".json")
        try:
            meta = json.loads(p.read_text())
        except (OSError, ValueError):
            return None
        return meta if meta.get("key") == key else None

    def _verified(self, key: str, suffix: str, kind: str) -> tuple[dict, Path] | None:
        """(sidecar, data file) of an entry whose data file matches its recorded sha256, else None (a miss; a bad
        file is reported in one warning line)."""
        meta = self._meta(key)
        if meta is None or meta.get("kind") != kind or not meta.get("sha256"):
            return None
        path = self._path(key, suffix)
        try:
            ok = file_sha256(path) == meta["sha256"]
        except OSError as e:
            warn(f"cached features {path} are unreadable ({e.__class__.__name__}); recomputing them")
            return None
        if not ok:
            warn(f"cached features {path} differ from the sha256 recorded when they were written; recomputing them")
            return None
        return meta, path

    def load_features(self, key: str) -> np.ndarray | None:
        hit = self._verified(key, ".npy", "features")
        arr = None
        if hit is not None:
            meta, path = hit
            try:
                arr = np.load(path, allow_pickle=False)
            except (OSError, ValueError) as e:
                warn(f"cached features {path} are unreadable ({e}); recomputing them")
            if arr is not None and arr.shape != tuple(meta["shape"]):
                warn(f"cached features {path} have shape {arr.shape}, not {tuple(meta['shape'])}; recomputing them")
                arr = None
        if arr is None:
            self.misses += 1
            return None
        self.hits += 1
        return arr

    def save_features(self, key: str, feats: np.ndarray, meta: dict) -> None:
        feats = np.ascontiguousarray(feats, dtype=np.float32)
        path = self._path(key, ".npy")
        with atomic_write(path) as f:
            np.save(f, feats, allow_pickle=False)
        self._write_meta(key, {**meta, "kind": "features", "shape": list(feats.shape), "sha256": file_sha256(path)})

    def load_stats(self, key: str) -> tuple[np.ndarray, np.ndarray, int] | None:
        hit = self._verified(key, ".npz", "stats")
        out = None
        if hit is not None:
            meta, path = hit
            try:
                with np.load(path, allow_pickle=False) as z:
                    out = z["mu"], z["sigma"], int(meta["n"])
            except (OSError, ValueError, KeyError) as e:
                warn(f"cached statistics {path} are unreadable ({e}); recomputing them")
        if out is None:
            self.misses += 1
            return None
        self.hits += 1
        return out

    def save_stats(self, key: str, mu: np.ndarray, sigma: np.ndarray, meta: dict) -> None:
        buf = io.BytesIO()
        np.savez(buf, mu=np.asarray(mu, np.float64), sigma=np.asarray(sigma, np.float64))
        data = buf.getvalue()
        atomic_write_bytes(self._path(key, ".npz"), data)
        self._write_meta(key, {**meta, "kind": "stats", "sha256": hashlib.sha256(data).hexdigest()})

    def _write_meta(self, key: str, meta: dict) -> None:
        meta = {**meta, "key": key, "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
        atomic_write_bytes(self._path(key, ".json"), json.dumps(meta, indent=1, sort_keys=True, default=str).encode())


def _as_cache(cache: FeatureCache | str | os.PathLike | bool | None) -> FeatureCache | None:
    if cache is None or cache is False:
        return None
    if cache is True:
        return FeatureCache()
    if isinstance(cache, FeatureCache):
        return cache
    return FeatureCache(cache)


def extract_features(images: Any, extractor: FeatureExtractor, layers: Sequence[str] | str | None = None, *,
                     batch_size: int = 64, cache: FeatureCache | str | os.PathLike | bool | None = True,
                     progress: Callable[[int, int | None], None] | None = None) -> dict[str, np.ndarray]:
    """{layer: float32 (N, d)} for any input `bench.inputs.open_images` accepts, through the cache.

    cache: True (default dir), a directory, a FeatureCache, or False/None (no caching). Only the layers not in
    the cache are computed (in one pass); nothing is written if extraction fails (e.g. NaN features).
    """
    source = open_images(images)
    layers = extractor.check_layers(layers)
    store = _as_cache(cache)
    content = source.fingerprint() if store is not None else None
    if content is None:
        return extractor.extract(source, layers, batch_size=batch_size, progress=progress)
    desc = extractor.describe()
    keys = {l: cache_key(content, desc, l) for l in layers}
    out = {l: store.load_features(keys[l][0]) for l in layers}
    missing = [l for l in layers if out[l] is None]
    if missing:
        fresh = extractor.extract(source, missing, batch_size=batch_size, progress=progress)
        src = source.describe()
        for l in missing:                                  # every layer was checked finite before any write
            store.save_features(keys[l][0], fresh[l], {"parts": keys[l][1], "source": src,
                                                       "extractor": extractor.describe(), "n": len(fresh[l])})
            out[l] = fresh[l]
    return out


def feature_statistics_cached(images: Any, extractor: FeatureExtractor, layer: str | None = None, *,
                              batch_size: int = 64, cache: FeatureCache | str | os.PathLike | bool | None = True,
                              progress: Callable[[int, int | None], None] | None = None
                              ) -> tuple[np.ndarray, np.ndarray, int]:
    """(mu float64 (d,), sigma float64 (d, d), n) of one layer, through the statistics and feature caches."""
    from ..metrics.frechet import feature_statistics

    source = open_images(images)
    layer = extractor.check_layers(layer)[0]
    store = _as_cache(cache)
    content = source.fingerprint() if store is not None else None
    key = cache_key(content, extractor.describe(), layer, kind="stats") if content is not None else None
    if key is not None:
        hit = store.load_stats(key[0])
        if hit is not None:
            return hit
    feats = extract_features(source, extractor, layer, batch_size=batch_size, cache=store if store is not None else False,
                             progress=progress)[layer]
    if len(feats) < 2:
        raise ValueError(f"{len(feats)} image(s): a covariance needs at least 2 (FID-style metrics want thousands)")
    mu, sigma = feature_statistics(feats)
    if key is not None:
        store.save_stats(key[0], mu, sigma, {"parts": key[1], "source": source.describe(),
                                             "extractor": extractor.describe(), "n": len(feats)})
    return mu, sigma, len(feats)
