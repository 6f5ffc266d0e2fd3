"""`pixels`: the images themselves, flattened and scaled to [0, 1]. For tiny tests and sanity baselines."""
from __future__ import annotations

import torch

from .base import FeatureExtractor, register_extractor

__all__ = ["Pixels"]


@register_extractor("pixels")
class Pixels(FeatureExtractor):
    """Flattened pixels x / 255 in (c, h, w) order; `size` resizes first (with `resize`, default 'clean')."""

    name = "pixels"
    default_resize = "none"
    normalize = "x / 255"
    default_layer = "pixels"

    def __init__(self, *, size: int | None = None, resize: str | None = None, weights=None,
                 device: str | torch.device = "cpu", dtype: str | torch.dtype = "float32", cache_dir=None,
                 allow_download=None):
        if weights is not None:
            raise ValueError("the pixels extractor has no weights; do not pass --weights with it")
        if size is not None and resize is None:
            resize = "clean"
        self.input_size = size
        super().__init__(resize=resize, device=device, dtype=dtype)
        if self.resize != "none" and size is None:
            raise ValueError(f"pixels with resize={self.resize!r} needs a size (e.g. size=32)")
        # without a size the dims are taken from each batch (-1 until the first)
        self.layer_dims = {"pixels": 3 * size * size if size else -1}
        self.metric_labels = {"pixels": "fd_pixels"}

    def weights_info(self) -> dict:
        return {"source": "none", "path": None, "sha256": None}

    def _forward(self, x: torch.Tensor, layers: list[str]) -> dict[str, torch.Tensor]:
        if self.input_size is None:
            self.layer_dims["pixels"] = x[0].numel()                  # any size, taken from the batch
        return {"pixels": (x / 255).flatten(1)}                        # (N, 3*H*W)
