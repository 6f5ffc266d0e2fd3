"""The one container every image data set is returned in, and the `DATASETS` registry.

`ImageData.images` is a uint8 tensor (N, 3, H, W) (grayscale sources are converted to RGB and `info` says so),
`labels` (N,) long, `factors` a dict of (N,) long tensors for factor-labelled sets (shapes), `class_names`.
`ImageData.dataset` is a torch `Dataset` of (image (3, H, W) uint8, label) pairs; for image folders it reads
and preprocesses files on demand, so a large tree never has to sit in memory (`images` then stacks everything
on first access).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import torch
from torch.utils.data import Dataset

from ..registry import did_you_mean

__all__ = ["ImageData", "TensorImages", "DatasetRegistry", "DATASETS", "check_images_uint8", "resize_uint8"]


#################################################################################
#                                 The container                                 #
#################################################################################

class TensorImages(Dataset):
    """In-memory images and labels as a torch Dataset of (image (3, H, W) uint8, label) pairs."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.images[i], int(self.labels[i])


@dataclass
class ImageData:
    """A labelled image set: uint8 images (N, 3, H, W), labels (N,), optional per-image factors."""
    name: str
    split: str
    labels: torch.Tensor                                   # (N,) long
    class_names: list[str]
    factors: dict[str, torch.Tensor] = field(default_factory=dict)        # name → (N,) long
    factor_values: dict[str, list[str]] = field(default_factory=dict)     # name → value names
    info: dict[str, Any] = field(default_factory=dict)     # provenance, preprocessing, conversions
    dataset: Dataset | None = None                         # lazy per-item access; built if None
    _images: torch.Tensor | None = field(default=None, repr=False)

    def __post_init__(self):
        if self.dataset is None:
            if self._images is None:
                raise ValueError("ImageData needs images or a dataset")
            self.dataset = TensorImages(self._images, self.labels)
        if self._images is not None:
            check_images_uint8(self._images, f"{self.name} images")
            if len(self._images) != len(self.labels):
                raise ValueError(f"{self.name}: {len(self._images)} images but {len(self.labels)} labels")
        for k, v in self.factors.items():
            if len(v) != len(self.labels):
                raise ValueError(f"{self.name}: factor {k!r} has {len(v)} entries for {len(self.labels)} images")

    @property
    def images(self) -> torch.Tensor:
        """(N, 3, H, W) uint8; a lazy (image-folder) set is read completely on first access."""
        if self._images is None:
            self._images = torch.stack([self.dataset[i][0] for i in range(len(self.dataset))])
        return self._images

    @property
    def lazy(self) -> bool:
        return self._images is None

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:]) if not self.lazy else tuple(self.dataset[0][0].shape)

    def batches(self, batch_size: int, indices: Sequence[int] | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yields (global indices (B,), uint8 images (B, 3, H, W)), reading lazily when the set is lazy."""
        idx = torch.arange(len(self)) if indices is None else torch.as_tensor(list(indices), dtype=torch.long)
        for s in range(0, len(idx), batch_size):
            b = idx[s:s + batch_size]
            if self.lazy:
                yield b, torch.stack([self.dataset[int(i)][0] for i in b])
            else:
                yield b, self._images[b]

    def subset(self, indices: Sequence[int] | torch.Tensor) -> "ImageData":
        """The images at `indices` (materialised), with labels and factors."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        images = torch.stack([self.dataset[int(i)][0] for i in idx]) if self.lazy else self._images[idx]
        return ImageData(name=self.name, split=self.split, labels=self.labels[idx], class_names=self.class_names,
                         factors={k: v[idx] for k, v in self.factors.items()}, factor_values=self.factor_values,
                         info={**self.info, "subset_of": len(self)}, _images=images)


#################################################################################
#                                  Validation                                   #
#################################################################################

def check_images_uint8(images: Any, what: str = "images") -> None:
    """Raise ValueError unless `images` is a uint8 tensor (N, 3, H, W)."""
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"{what} must be a torch.Tensor of shape (N, 3, H, W); got {type(images).__name__}")
    if images.dtype != torch.uint8:
        raise ValueError(f"{what} must be uint8 in [0, 255] (got {images.dtype}); "
                         "convert with (x.clamp(0, 1) * 255).round().to(torch.uint8)")
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"{what} must have shape (N, 3, H, W) (RGB, channels first); got {tuple(images.shape)}")


def resize_uint8(images: torch.Tensor, size: int) -> torch.Tensor:
    """(N, C, h, w) uint8 → (N, C, size, size) uint8: bilinear with antialiasing (area-like when shrinking)."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    out = torch.nn.functional.interpolate(images.float(), size=(size, size), mode="bilinear",
                                          antialias=True, align_corners=False)
    return out.round().clamp(0, 255).to(torch.uint8)


#################################################################################
#                                   Registry                                    #
#################################################################################

class DatasetRegistry:
    """Data set name → loader(split, **options) → ImageData. Unknown names fail with "did you mean"."""

    def __init__(self):
        self._loaders: dict[str, Callable[..., ImageData]] = {}

    def register(self, name: str) -> Callable[[Callable[..., ImageData]], Callable[..., ImageData]]:
        def deco(fn: Callable[..., ImageData]) -> Callable[..., ImageData]:
            if name in self._loaders:
                raise ValueError(f"data set {name!r} is already registered")
            self._loaders[name] = fn
            return fn
        return deco

    def get(self, name: str) -> Callable[..., ImageData]:
        if name not in self._loaders:
            hint = did_you_mean(str(name), self.names())
            raise ValueError(f"unknown data set {name!r}.{hint} Known data sets: {', '.join(self.names())}")
        return self._loaders[name]

    def names(self) -> list[str]:
        return sorted(self._loaders)

    def __contains__(self, name: object) -> bool:
        return name in self._loaders

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._loaders)


DATASETS = DatasetRegistry()
