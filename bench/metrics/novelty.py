"""Nearest-neighbour novelty: how close each generated sample is to its nearest training samples (memorisation check).

Cosine similarity = exact inner product of L2-normalised float32 features, searched with faiss `IndexFlatIP`
(a GPU index when faiss has GPUs — exact search, so the same neighbours as on CPU up to float32 ties).
`nearest_neighbour_grid` lays out generated | nearest-training pairs as one uint8 image; saving is the caller's.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from ..errors import UserError
from .frechet import check_features, check_same_dim

DEFAULT_QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)

# ---------------------------------------------------------------------------------------------------------
# Search
# ---------------------------------------------------------------------------------------------------------


def _normalised_f32(x, name: str) -> np.ndarray:
    a = check_features(x, name, min_samples=1).astype(np.float32)
    norms = np.linalg.norm(a, axis=1, keepdims=True)
    if (norms == 0).any():
        raise UserError(f"{name} have {int((norms == 0).sum())} all-zero rows; cosine similarity is undefined",
                        hint="drop or fix all-zero feature vectors")
    return np.ascontiguousarray(a / norms)


def nearest_neighbours(*, train, generated, k: int = 1, use_gpu: Optional[bool] = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-k cosine similarities (N, k) float32 and training indices (N, k) int64 for each generated sample.

    use_gpu: None = a GPU index when faiss sees a GPU, True = require one, False = CPU.
    """
    import faiss

    tr = _normalised_f32(train, "train features")
    gen = _normalised_f32(generated, "generated features")
    check_same_dim(tr, gen, ("train", "generated"))
    if not 1 <= k <= tr.shape[0]:
        raise UserError(f"k={k} nearest neighbours requested from {tr.shape[0]} training samples",
                        hint="use 1 <= k <= number of training samples")
    n_gpus = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
    if use_gpu and n_gpus == 0:
        raise UserError("use_gpu=True but faiss sees no GPU (faiss-cpu build or no device)",
                        hint="install faiss-gpu on a GPU machine, or pass use_gpu=None/False")
    index = faiss.IndexFlatIP(tr.shape[1])
    if n_gpus > 0 and use_gpu is not False:
        index = faiss.index_cpu_to_all_gpus(index)
    index.add(tr)
    sims, idx = index.search(gen, k)  # (N, k) each, sorted by decreasing similarity
    return sims.astype(np.float32), idx.astype(np.int64)


# ---------------------------------------------------------------------------------------------------------
# Summary
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NoveltyResult:
    """Per-sample nearest-training similarities and indices, and a summary of the max-similarity distribution."""
    sims: np.ndarray  # (N, k) float32, decreasing
    indices: np.ndarray  # (N, k) int64 training indices
    max_sim: np.ndarray  # (N,) = sims[:, 0]
    mean: float
    quantiles: dict = field(default_factory=dict)  # q -> quantile of max_sim
    threshold: float = 0.95
    frac_above: float = 0.0  # fraction of generated samples with max_sim > threshold

    def summary(self) -> dict:
        return {"mean": self.mean, "threshold": self.threshold, "frac_above": self.frac_above,
                **{f"q{q:g}": v for q, v in self.quantiles.items()}, "n": int(self.max_sim.size)}


def novelty(*, train, generated, k: int = 1, threshold: float = 0.95,
            quantiles: Sequence[float] = DEFAULT_QUANTILES, use_gpu: Optional[bool] = None) -> NoveltyResult:
    """Nearest-training-neighbour cosine similarity of each generated sample, summarised (mean, quantiles, > threshold)."""
    sims, idx = nearest_neighbours(train=train, generated=generated, k=k, use_gpu=use_gpu)
    m = sims[:, 0].astype(np.float64)
    return NoveltyResult(sims=sims, indices=idx, max_sim=sims[:, 0], mean=float(m.mean()),
                         quantiles={float(q): float(np.quantile(m, q)) for q in quantiles},
                         threshold=float(threshold), frac_above=float((m > threshold).mean()))


# ---------------------------------------------------------------------------------------------------------
# Image grid
# ---------------------------------------------------------------------------------------------------------


def _hwc(images, name: str) -> np.ndarray:
    """uint8 RGB (N, H, W, 3) from NHWC or NCHW (C in {1, 3, 4}; (N, H, W) is grayscale), validated by
    `bench.inputs.to_uint8_nchw`: an ambiguous layout is refused, never guessed."""
    from ..inputs import to_uint8_nchw

    a = np.asarray(images)
    layout = "auto"
    if a.ndim == 3:
        a, layout = a[..., None], "NHWC"
    try:
        return to_uint8_nchw(a, layout, what=name).permute(0, 2, 3, 1).numpy()
    except ValueError as e:
        raise UserError(str(e), hint="pass uint8 RGB images (N, H, W, C) or (N, C, H, W)") from None


def nearest_neighbour_grid(generated_images, train_images, indices, *, max_rows: Optional[int] = None, pad: int = 2,
                           gap: int = 6, pad_value: int = 255) -> np.ndarray:
    """One uint8 (H', W', C) grid: each row is a generated image, a gap, then its nearest training images.

    generated_images: (N, H, W, C) or (N, C, H, W) uint8; train_images: an array or anything indexable by an int
    (a list, a memmap, a dataset returning uint8 images); indices: (N,) or (N, k) training indices.
    """
    gen = _hwc(generated_images, "generated_images")
    idx = np.asarray(indices)
    if idx.ndim == 1:
        idx = idx[:, None]
    if idx.ndim != 2 or idx.shape[0] != gen.shape[0] or not np.issubdtype(idx.dtype, np.integer):
        raise UserError(f"indices must be (N,) or (N, k) integers with N = {gen.shape[0]} generated images, "
                        f"got {idx.shape} {idx.dtype}", hint="pass NoveltyResult.indices")
    rows = gen.shape[0] if max_rows is None else min(max_rows, gen.shape[0])
    gen, idx = gen[:rows], idx[:rows]
    nn = _hwc(np.stack([np.asarray(train_images[int(i)]) for i in idx.ravel()]), "train_images")
    if nn.shape[1:] != gen.shape[1:]:
        raise UserError(f"generated images are {gen.shape[1:]} (H, W, C) but training images are {nn.shape[1:]}",
                        hint="resize one set so both have the same size and channels")
    h, w, c = gen.shape[1:]
    k = idx.shape[1]
    width = pad + (w + pad) + gap + k * (w + pad)
    height = pad + rows * (h + pad)
    grid = np.full((height, width, c), pad_value, dtype=np.uint8)
    nn = nn.reshape(rows, k, h, w, c)
    for r in range(rows):
        y = pad + r * (h + pad)
        grid[y:y + h, pad:pad + w] = gen[r]
        for j in range(k):
            x = pad + (w + pad) + gap + j * (w + pad)
            grid[y:y + h, x:x + w] = nn[r, j]
    return grid
