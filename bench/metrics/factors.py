"""Conditioning fidelity, independent of FID: does a generated image show the factors it was conditioned on?

Read-outs turn images (or their features) into factor values, a `FactorReadout` (factor → (N,) int64 labels):

    ShapesRenderReader  the shapes data set (`dlc.data.shapes`): every factor combination is rendered once and
                        each image is read as its nearest render in pixel L2. Shapes images are exact renders (no
                        noise, no jitter, no antialiasing), so real images are read back perfectly (distance 0)
                        at every size where no two combinations render alike (32 px: all 3888 distinct).
    FactorClassifier    any factor-labelled data: one standardised multinomial logistic regression per factor,
                        fitted on features of real images; its accuracy on a held-out real split is the ceiling.

`factor_agreement` scores a read-out against the target factors (those the images were conditioned on; for a
reconstruction, the source image's factors): the fraction read correctly per factor, with a Wilson score
interval and the chance level. `agreement_rows` turns that into metric rows of the results schema.

Pixel distances are in [-1, 1] units (x / 127.5 − 1), mean over pixels and channels: `paired_mse` (image i vs
image i) and `nearest_real_mse` (each fake image vs its nearest real image). All nearest searches share one
blocked float32 matmul, ‖a − b‖² = ‖a‖² + ‖b‖² − 2 a·b, with every block under `_BLOCK_BYTES`; the distance to
the chosen neighbour is then recomputed directly, so an exact copy has distance exactly 0.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any, Mapping, Optional

import numpy as np

from ..errors import UserError
from ..schema import metric_row
from .frechet import check_features

__all__ = ["FactorReadout", "ShapesRenderReader", "FactorClassifier", "Agreement", "factor_agreement",
           "wilson_interval", "paired_mse", "nearest_real_mse", "agreement_rows", "JOINT"]

JOINT = "all"                       # key of the joint agreement (every target factor read correctly)
DEFAULT_CHUNK = 1024                # rows per block of the nearest search (fewer when images are large)
_BLOCK_BYTES = 64 * 2 ** 20         # float32 bytes per block of images or distances (peak memory ≈ 5 blocks)


# ---------------------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------------------


def _images_flat(images: Any, name: str) -> tuple[np.ndarray, tuple[int, int, int]]:
    """uint8 images, NCHW or NHWC (numpy or torch), → (N, D) uint8 numpy with D = 3·H·W, and (3, H, W)."""
    from ..inputs import to_uint8_nchw

    try:
        x = to_uint8_nchw(images, "auto", what=name)                    # (N, 3, H, W) uint8 torch, CPU
    except ValueError as e:
        raise UserError(str(e), hint="pass uint8 RGB images (N, 3, H, W) or (N, H, W, 3) in [0, 255]") from None
    if x.shape[0] == 0:
        raise UserError(f"{name} are empty (0 images)", hint="pass at least one image")
    return x.numpy().reshape(x.shape[0], -1), tuple(x.shape[1:])


def _labels(factors: Mapping[str, Any], n: Optional[int], name: str) -> dict[str, np.ndarray]:
    """factor name → (N,) int64 numpy, each 1-D integer with one entry per image (n=None: from the first)."""
    if not isinstance(factors, Mapping) or not factors:
        raise UserError(f"{name} must be a non-empty dict factor name → (N,) integer labels, got "
                        f"{type(factors).__name__}", hint="pass e.g. ImageData.factors")
    out = {}
    for f, v in factors.items():
        if hasattr(v, "detach"):
            v = v.detach().cpu().numpy()
        a = np.asarray(v)
        if a.ndim != 1 or not np.issubdtype(a.dtype, np.integer):
            raise UserError(f"{name}[{f!r}] must be 1-D integer labels, got shape {a.shape} dtype {a.dtype}",
                            hint="pass one integer label per image")
        n = a.shape[0] if n is None else n
        if a.shape[0] != n:
            raise UserError(f"{name}[{f!r}] has {a.shape[0]} labels for {n} images",
                            hint="pass one label per image, in the same order as the images")
        out[str(f)] = a.astype(np.int64, copy=False)
    return out


# ---------------------------------------------------------------------------------------------------------
# Nearest search (the one blocked matmul)
# ---------------------------------------------------------------------------------------------------------


def _unit(x: np.ndarray) -> np.ndarray:
    """uint8 → float32 in [-1, 1]."""
    return x.astype(np.float32) / np.float32(127.5) - np.float32(1.0)


def _rows_per_block(n_dims: int, chunk: int) -> int:
    if not isinstance(chunk, (int, np.integer)) or chunk < 1:
        raise UserError(f"chunk must be a positive integer, got {chunk!r}", hint="e.g. chunk=1024")
    return int(max(1, min(chunk, _BLOCK_BYTES // (4 * n_dims))))


def _nearest(queries: np.ndarray, refs: np.ndarray, chunk: int = DEFAULT_CHUNK) -> tuple[np.ndarray, np.ndarray]:
    """For each row of `queries` (N, D) uint8: the index (N,) int64 of its nearest row of `refs` (M, D) uint8 in
    L2, and the MSE (N,) float64 to it in [-1, 1] units. Blocks of ≤ `chunk` queries × ≤ `chunk` refs (fewer
    when D is large); ties go to the lowest index up to float32 rounding of the expanded distance."""
    n, d = queries.shape
    rows = _rows_per_block(d, chunk)
    idx = np.empty(n, dtype=np.int64)
    mse = np.empty(n, dtype=np.float64)
    for q0 in range(0, n, rows):
        q = _unit(queries[q0:q0 + rows])                                 # (q, D) float32
        best = np.full(q.shape[0], np.inf, dtype=np.float32)             # ‖r‖² − 2 q·r: ‖q‖² is the same per row
        arg = np.zeros(q.shape[0], dtype=np.int64)
        for r0 in range(0, refs.shape[0], rows):
            r = _unit(refs[r0:r0 + rows])                                # (r, D) float32
            score = np.einsum("ij,ij->i", r, r)[None, :] - 2.0 * (q @ r.T)  # (q, r)
            j = score.argmin(axis=1)
            s = score[np.arange(q.shape[0]), j]
            better = s < best
            best[better], arg[better] = s[better], j[better] + r0
        diff = q - _unit(refs[arg])                                      # (q, D) exact: equal pixels → 0
        idx[q0:q0 + rows] = arg
        mse[q0:q0 + rows] = np.square(diff, dtype=np.float64).mean(axis=1)
    return idx, mse


# ---------------------------------------------------------------------------------------------------------
# Read-outs
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FactorReadout:
    """Factors read from N images, with what is needed to judge them."""
    factors: dict[str, np.ndarray]           # factor → (N,) int64 read value
    distance: Optional[np.ndarray] = None    # (N,) float64 MSE to the nearest render ([-1, 1] units); None: classifier
    chance: Optional[dict[str, float]] = None   # factor → chance agreement (see the reader's docstring)
    ceiling: Optional[dict[str, float]] = None  # factor → accuracy of the reader on held-out real data

    def __len__(self) -> int:
        return len(next(iter(self.factors.values())))


class ShapesRenderReader:
    """Reads shapes images as their nearest exact render (pixel L2 over all factor combinations).

    Chance is 1 / (number of values) per factor: the agreement of a read-out independent of a uniformly drawn
    target. `ambiguous` names the factors that differ between two identical renders, which cannot be read
    exactly at that size: none at 32 px (n_positions=3), shape at 16 px, and at 8 px even colour (a small shape
    may cover no pixel).
    """

    def __init__(self, image_size: int = 32, n_positions: int = 3, *, chunk: int = DEFAULT_CHUNK):
        import torch

        from dlc.data.shapes import render_shapes, shapes_factor_values

        self.image_size, self.n_positions, self.chunk = int(image_size), int(n_positions), chunk
        self.values: dict[str, list[str]] = shapes_factor_values(n_positions)
        self.factor_names: tuple[str, ...] = tuple(self.values)
        self.combinations = np.array(list(itertools.product(*[range(len(v)) for v in self.values.values()])),
                                     dtype=np.int64)                     # (C, F)
        combos = torch.from_numpy(self.combinations)
        renders = render_shapes({f: combos[:, i] for i, f in enumerate(self.factor_names)}, image_size, n_positions)
        self.renders = renders.numpy().reshape(len(combos), -1)           # (C, 3·S·S) uint8
        rows = np.ascontiguousarray(self.renders).view(np.dtype((np.void, self.renders.shape[1]))).ravel()
        group = np.unique(rows, return_inverse=True)[1].reshape(-1)      # (C,) id of each distinct render
        ambiguous = []
        for i, f in enumerate(self.factor_names):                        # does f vary inside a group of equal renders?
            lo = np.full(group.max() + 1, np.iinfo(np.int64).max)
            hi = np.full(group.max() + 1, -1)
            np.minimum.at(lo, group, self.combinations[:, i])
            np.maximum.at(hi, group, self.combinations[:, i])
            if (lo != hi).any():
                ambiguous.append(f)
        self.ambiguous: tuple[str, ...] = tuple(ambiguous)
        self.chance: dict[str, float] = {f: 1.0 / len(v) for f, v in self.values.items()}

    def read(self, images: Any) -> FactorReadout:
        """images: uint8 (N, 3, H, W) torch or numpy, or (N, H, W, 3) numpy (ADM layout), H = W = image_size."""
        x, shape = _images_flat(images, "images")                        # (N, D) uint8
        want = (3, self.image_size, self.image_size)
        if shape != want:
            raise UserError(f"images are {shape} (C, H, W) but the renders are {want}",
                            hint=f"build ShapesRenderReader(image_size={shape[1]}) or resize the images")
        idx, mse = _nearest(x, self.renders, self.chunk)
        read = self.combinations[idx]                                    # (N, F)
        return FactorReadout(factors={f: read[:, i].copy() for i, f in enumerate(self.factor_names)},
                             distance=mse, chance=dict(self.chance))


class FactorClassifier:
    """One classifier per factor on caller-given features (e.g. EfficientNet features of the images).

    Each is a Pipeline(StandardScaler, LogisticRegression(max_iter)) — multinomial with lbfgs — fitted on a seeded
    random (1 − val_fraction) share of the real images; `ceiling` is its accuracy on the held-out rest (the best
    agreement to expect from real images), `chance` the majority-class rate of its training labels (the accuracy
    of always answering the most frequent value). The held-out-scored models are the ones `read` uses.
    """

    def __init__(self, *, C: float = 1.0, max_iter: int = 1000):
        self.C, self.max_iter = float(C), int(max_iter)
        self.models: dict[str, Any] = {}
        self.ceiling: dict[str, float] = {}
        self.chance: dict[str, float] = {}
        self.n_features: Optional[int] = None

    def fit(self, features: Any, factors: Mapping[str, Any], *, val_fraction: float = 0.2,
            seed: int = 0) -> "FactorClassifier":
        """features (N, D) float; factors: factor → (N,) integer labels of the same images."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        x = check_features(features, "classifier features", min_samples=4).astype(np.float64, copy=False)
        y = _labels(factors, x.shape[0], "factors")
        if not 0 < val_fraction < 1:
            raise UserError(f"val_fraction must be in (0, 1), got {val_fraction}", hint="e.g. val_fraction=0.2")
        perm = np.random.default_rng(seed).permutation(x.shape[0])
        n_val = min(max(1, round(x.shape[0] * val_fraction)), x.shape[0] - 2)
        val, train = np.sort(perm[:n_val]), np.sort(perm[n_val:])
        models, ceiling, chance = {}, {}, {}
        for f, lab in y.items():
            counts = np.unique(lab[train], return_counts=True)[1]
            if counts.size < 2:
                raise UserError(f"factor {f!r} has {counts.size} value in the training split; a classifier needs >= 2",
                                hint="use more images or drop constant factors")
            model = make_pipeline(StandardScaler(), LogisticRegression(C=self.C, max_iter=self.max_iter,
                                                                       random_state=seed))
            models[f] = model.fit(x[train], lab[train])
            ceiling[f] = float((model.predict(x[val]) == lab[val]).mean())
            chance[f] = float(counts.max() / train.size)
        self.models, self.ceiling, self.chance, self.n_features = models, ceiling, chance, x.shape[1]
        return self

    def read(self, features: Any) -> FactorReadout:
        """features (N, D) of the images to read, from the same extractor as in `fit`."""
        if not self.models:
            raise UserError("FactorClassifier.read before fit", hint="call .fit(real_features, real_factors) first")
        x = check_features(features, "features", min_samples=1).astype(np.float64, copy=False)
        if x.shape[1] != self.n_features:
            raise UserError(f"features have {x.shape[1]} dimensions but the classifier was fitted on "
                            f"{self.n_features}", hint="use the same feature extractor (and layer) as in fit")
        return FactorReadout(factors={f: m.predict(x).astype(np.int64) for f, m in self.models.items()},
                             chance=dict(self.chance), ceiling=dict(self.ceiling))


# ---------------------------------------------------------------------------------------------------------
# Agreement
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Agreement:
    """Fraction of images whose read factor equals the target, with its Wilson score interval."""
    value: float
    ci_low: float
    ci_high: float
    n: int
    chance: Optional[float]          # agreement of a read-out unrelated to the target (see the reader)
    ceiling: Optional[float] = None  # the reader's accuracy on held-out real images (classifier only)
    confidence: float = 0.95


def wilson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion k / n:
    (p + z²/2n ± z √(p(1 − p)/n + z²/4n²)) / (1 + z²/n), z = Φ⁻¹(1 − α/2)."""
    from scipy.stats import norm

    if n < 1 or not 0 <= k <= n:
        raise UserError(f"a proportion needs 0 <= k <= n and n >= 1, got k={k}, n={n}", hint="pass counts")
    if not 0 < confidence < 1:
        raise UserError(f"confidence must be in (0, 1), got {confidence}", hint="e.g. confidence=0.95")
    z = float(norm.ppf(0.5 + confidence / 2))
    p, z2 = k / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half))   # rounding never excludes p


def factor_agreement(readout: FactorReadout, target: Mapping[str, Any], *,
                     chance: Optional[Mapping[str, float]] = None, confidence: float = 0.95,
                     joint: bool = True) -> dict[str, Agreement]:
    """Agreement per target factor (target: factor → (N,) integer labels, a subset of the read factors).

    chance: overrides `readout.chance`. joint (with ≥ 2 target factors): also JOINT = "all", the fraction with
    every target factor right; its chance is the product of the factors' chances (exact for independent factors).
    """
    if not isinstance(readout, FactorReadout):
        raise UserError(f"readout must be a FactorReadout, got {type(readout).__name__}",
                        hint="pass the result of ShapesRenderReader.read or FactorClassifier.read")
    from ..registry import did_you_mean

    n = len(readout)
    tgt = _labels(target, n, "target")
    for f in tgt:
        if f not in readout.factors or f == JOINT:
            raise UserError(f"unknown factor {f!r} in target.{did_you_mean(f, readout.factors, n=1)}",
                            hint=f"the read factors are {', '.join(readout.factors)}")
    chances = dict(readout.chance or {})
    chances.update(chance or {})
    ceilings = readout.ceiling or {}
    out: dict[str, Agreement] = {}
    all_right = np.ones(n, dtype=bool)
    for f, t in tgt.items():
        right = readout.factors[f] == t
        all_right &= right
        k = int(right.sum())
        low, high = wilson_interval(k, n, confidence)
        c = chances.get(f)
        out[f] = Agreement(k / n, low, high, n, None if c is None else float(c), ceilings.get(f), confidence)
    if joint and len(tgt) > 1:
        k = int(all_right.sum())
        low, high = wilson_interval(k, n, confidence)
        cs = [chances.get(f) for f in tgt]
        c = None if any(v is None for v in cs) else float(np.prod(cs))
        out[JOINT] = Agreement(k / n, low, high, n, c, None, confidence)
    return out


def agreement_rows(agreement: Mapping[str, Agreement], *, metric: str = "factor_agreement",
                   **labels: Any) -> list[dict]:
    """Metric rows (bench.schema.metric_row), one per factor: value, Wilson CI, n, then the labels
    factor, chance (, ceiling when the reader has one) and `labels` (e.g. variant=..., seed=..., task=...)."""
    clash = {"factor", "chance", "ceiling"} & set(labels)
    if clash:
        raise UserError(f"label(s) {sorted(clash)} are set by agreement_rows", hint="rename those labels")
    rows = []
    for f, a in agreement.items():
        extra = {"factor": f, "chance": a.chance, **({} if a.ceiling is None else {"ceiling": a.ceiling})}
        rows.append(metric_row(metric, a.value, higher_is_better=True, ci_low=a.ci_low, ci_high=a.ci_high, n=a.n,
                               **extra, **labels))
    return rows


# ---------------------------------------------------------------------------------------------------------
# Pixel distances
# ---------------------------------------------------------------------------------------------------------


def paired_mse(a: Any, b: Any) -> np.ndarray:
    """(N,) float64 MSE between image i of `a` and image i of `b` (uint8, NCHW or NHWC), [-1, 1] units."""
    x, sx = _images_flat(a, "images a")
    y, sy = _images_flat(b, "images b")
    if x.shape[0] != y.shape[0] or sx != sy:
        raise UserError(f"paired images differ: a is {x.shape[0]} × {sx}, b is {y.shape[0]} × {sy} (N × (C, H, W))",
                        hint="pair each image with its source: same count, same size")
    out = np.empty(x.shape[0], dtype=np.float64)
    rows = _rows_per_block(x.shape[1], DEFAULT_CHUNK)
    for i in range(0, x.shape[0], rows):
        out[i:i + rows] = np.square(_unit(x[i:i + rows]) - _unit(y[i:i + rows]), dtype=np.float64).mean(axis=1)
    return out


def nearest_real_mse(fake: Any, real: Any, *, chunk: int = DEFAULT_CHUNK) -> np.ndarray:
    """(N,) float64 MSE of each fake image to its nearest real image in pixel L2, [-1, 1] units (uint8 inputs)."""
    x, sx = _images_flat(fake, "fake images")
    y, sy = _images_flat(real, "real images")
    if sx != sy:
        raise UserError(f"fake images are {sx} but real images are {sy} (C, H, W)",
                        hint="resize one set so both have the same size")
    return _nearest(x, y, chunk)[1]
