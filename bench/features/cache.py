"""Content-addressed cache of features and Fréchet statistics.

Key = sha256 of {content hash of the input images (`ImageSource.fingerprint`), extractor name, layer,
preprocessing (resize mode/size/implementation, normalisation, dtype), weights sha256, library versions,
FEATURES_VERSION, kind}. Any change to any part is a different key, so a changed input, layer, resize or weights
file is a miss, never a stale hit. Inputs that cannot be hashed (one-shot iterables) are never cached.

Storage: the one stage cache (`bench.cache.StageCache`): <cache_dir>/stages/image-features/<key[:24]>/ (features,
float32 (N, d)) or image-statistics/<key[:24]>/ (mu, sigma float64, n), each with the stage manifest holding the full
key parts, what was read and the sha256 of every file, written atomically. On read every file is checked against
that sha256: a tampered, truncated or unreadable file gives one warning line naming it (`bench.cache.warn`) and is
recomputed. Nothing is unpickled (npz read with allow_pickle=False).
cache_dir: argument, else `bench.cache.default_cache_dir()` ($DLC_BENCH_CACHE, else the user cache dir …/dlc-bench).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..cache import StageCache, StageKey, default_cache_dir, load_tree, save_tree
from ..inputs import open_images
from .base import FeatureExtractor

__all__ = ["FeatureCache", "as_feature_cache", "default_cache_dir", "extract_features", "feature_statistics_cached",
           "cache_key"]


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
    """Features and statistics as entries of the one stage cache, keyed by `cache_key`; counts hits and misses.

    An entry is a stage directory `<cache_dir>/stages/image-features/<key[:24]>/` (or `image-statistics/`):
    `arrays.npz` + `tree.json`, and the manifest `stage.json` holding the key parts, what was read and the sha256 of
    every file — written atomically and verified on read by `bench.cache.StageCache`, like every stage's output."""

    KINDS = {"features": "image-features", "stats": "image-statistics"}

    def __init__(self, cache_dir: str | os.PathLike | None = None):
        self.root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        self.stages = StageCache(self.root)
        self.hits = 0
        self.misses = 0
        self._pending: list[tuple[StageKey, dict]] | None = None

    @contextlib.contextmanager
    def deferred(self):
        """Inside, entries are held back and written only when the block ends without an error: a command whose
        second input turns out unreadable leaves the cache as it found it."""
        if self._pending is not None:          # already deferring: the outer block writes
            yield self
            return
        self._pending = []
        try:
            yield self
            pending, self._pending = self._pending, None
            for key, value in pending:
                self.stages.store(key, value, save_tree, seconds=0.0)
        finally:
            self._pending = None

    def _store(self, key: StageKey, value: dict) -> None:
        if self._pending is not None:
            self._pending.append((key, value))
        else:
            self.stages.store(key, value, save_tree, seconds=0.0)

    def _key(self, key: str, kind: str, meta: dict | None = None) -> StageKey:
        return StageKey(self.KINDS[kind], key[:24], {"key": key, **(meta or {})})

    def _load(self, key: str, kind: str) -> dict | None:
        ok, value = self.stages.load(self._key(key, kind), load_tree)
        self.hits += ok
        self.misses += not ok
        return value if ok else None

    def directory(self, key: str, kind: str = "features") -> Path:
        """The entry's directory (whether or not it exists)."""
        return self.stages.directory(self._key(key, kind))

    def load_features(self, key: str) -> np.ndarray | None:
        value = self._load(key, "features")
        return None if value is None else value["features"]

    def save_features(self, key: str, feats: np.ndarray, meta: dict) -> None:
        feats = np.ascontiguousarray(feats, dtype=np.float32)
        self._store(self._key(key, "features", {**meta, "shape": list(feats.shape)}), {"features": feats})

    def load_stats(self, key: str) -> tuple[np.ndarray, np.ndarray, int] | None:
        value = self._load(key, "stats")
        return None if value is None else (value["mu"], value["sigma"], int(value["n"]))

    def save_stats(self, key: str, mu: np.ndarray, sigma: np.ndarray, meta: dict) -> None:
        value = {"mu": np.asarray(mu, np.float64), "sigma": np.asarray(sigma, np.float64), "n": int(meta["n"])}
        self._store(self._key(key, "stats", meta), value)


def as_feature_cache(cache: FeatureCache | str | os.PathLike | bool | None) -> FeatureCache | None:
    """A FeatureCache from True (the default dir), a directory or a FeatureCache; None for None / False."""
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
    store = as_feature_cache(cache)
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
    store = as_feature_cache(cache)
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
