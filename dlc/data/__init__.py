"""Image data sets behind one entry point: `load_dataset(name, split, **options) -> ImageData`.

    shapes         procedural, factor-labelled, with held-out factor combinations (dlc/data/shapes.py)
    fashion-mnist  idx files (Debian's dataset-fashion-mnist, or data_dir=…)
    digits         scikit-learn's 8×8 digits (tiny tests)
    imagefolder    ImageNet-style trees, ADM centre crop at any resolution, read lazily
"""
from __future__ import annotations

import inspect
from typing import Any

from .base import DATASETS, DatasetRegistry, ImageData, TensorImages, check_images_uint8, resize_uint8
from .images import (FASHION_MNIST_CLASSES, FASHION_MNIST_DIR, ImageFolderDataset, center_crop_arr, load_digits,
                     load_fashion_mnist, load_imagefolder, read_idx)
from .shapes import BACKGROUNDS, COLOURS, SHAPES, SIZES, make_shapes, render_shapes, shapes_factor_values

__all__ = ["load_dataset", "DATASETS", "DatasetRegistry", "ImageData", "TensorImages", "check_images_uint8",
           "resize_uint8", "make_shapes", "render_shapes", "shapes_factor_values", "SHAPES", "COLOURS", "SIZES",
           "BACKGROUNDS", "read_idx", "center_crop_arr", "load_fashion_mnist", "load_digits", "load_imagefolder",
           "ImageFolderDataset", "FASHION_MNIST_DIR", "FASHION_MNIST_CLASSES"]


def load_dataset(name: str, split: str = "train", **options: Any) -> ImageData:
    """Load the registered data set `name` (see DATASETS.names()) for `split` with loader-specific options."""
    loader = DATASETS.get(name)
    params = inspect.signature(loader).parameters
    unknown = sorted(set(options) - set(params) - {"split"})
    if unknown:
        valid = [p for p in params if p != "split"]
        raise ValueError(f"unknown option(s) {unknown} for data set {name!r}; valid options: {', '.join(valid)}")
    return loader(split=split, **options)
