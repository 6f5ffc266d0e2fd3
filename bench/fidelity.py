"""Conditioning fidelity of a generated image set, as metric rows: do the images show what they were
conditioned on, and how far are they from real images? Pixel-space and label-space measures, independent of
any feature extractor (`bench.metrics.factors` does the reading).

    factor_agreement   per factor (and 'all'): the image's factor, read by the nearest exact render (shapes),
                       equals the target factor (the conditioning image's for reconstructions); Wilson 95 % CI,
                       chance in the row
    object_frac        shapes: fraction of images that draw an object (≥ `min_pixels` pixels away from the
                       read background colour)
    render_mse         shapes: mean MSE to the nearest exact render (0 for real images: on the data manifold)
    nearest_real_mse   mean MSE to the nearest training image (a precision / memorisation proxy)
    source_mse         mean MSE to the image whose code conditioned it (reconstructions)
MSEs are in [−1, 1] pixel units with a normal-approximation 95 % CI of the mean.
"""
from __future__ import annotations

import functools
from typing import Any, Mapping, Optional

import numpy as np
import torch

from .metrics.factors import ShapesRenderReader, agreement_rows, factor_agreement, nearest_real_mse, paired_mse
from .schema import metric_row

__all__ = ["fidelity_rows", "object_drawn"]

_reader = functools.lru_cache(maxsize=4)(ShapesRenderReader)   # the renders are built once per image size


def _mean_row(metric: str, values: np.ndarray, **labels: Any) -> dict:
    m, half = float(values.mean()), 1.96 * float(values.std(ddof=1)) / np.sqrt(len(values)) if len(values) > 1 else 0.0
    return metric_row(metric, m, higher_is_better=False, ci_low=m - half, ci_high=m + half, n=len(values), **labels)


def object_drawn(images: torch.Tensor, background: np.ndarray, min_pixels: int | None = None) -> np.ndarray:
    """(N,) bool: at least `min_pixels` pixels differ from the image's (read) background colour by more than
    0.25 in [−1, 1] units on some channel. Default min_pixels: 4 at 32 px, scaled with the area."""
    from dlc.data.shapes import BACKGROUNDS

    s = images.shape[-1]
    k = max(1, round(4 * (s / 32) ** 2)) if min_pixels is None else min_pixels
    bg = torch.tensor(list(BACKGROUNDS.values()), dtype=torch.float32)[torch.as_tensor(background)]  # (N, 3)
    far = ((images.float() - bg[:, :, None, None]).abs() > 0.25 * 127.5).any(1)                      # (N, H, W)
    return (far.flatten(1).sum(1) >= k).numpy()


def fidelity_rows(images: torch.Tensor, *, dataset: str, train_images: torch.Tensor,
                  target: Optional[Mapping[str, torch.Tensor]] = None, source: Optional[torch.Tensor] = None,
                  n_positions: int = 3, **labels: Any) -> list[dict]:
    """Rows for one image set (uint8 (N, 3, H, W)). target: factor → (N,) labels the images should show;
    source: the (N, 3, H, W) images whose codes conditioned them; labels: e.g. variant=..., seed=...."""
    rows: list[dict] = []
    if dataset == "shapes":
        read = _reader(images.shape[-1], n_positions).read(images)
        if target:
            agree = factor_agreement(read, {f: np.asarray(v) for f, v in target.items() if f in read.factors})
            rows += agreement_rows(agree, **labels)
        drawn = object_drawn(images, read.factors["background"])
        rows.append(metric_row("object_frac", float(drawn.mean()), higher_is_better=True, n=len(drawn), **labels))
        rows.append(_mean_row("render_mse", read.distance, **labels))
    rows.append(_mean_row("nearest_real_mse", nearest_real_mse(images, train_images), **labels))
    if source is not None:
        rows.append(_mean_row("source_mse", paired_mse(images, source), **labels))
    return rows
