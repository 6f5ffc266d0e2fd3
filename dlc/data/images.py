"""Real image sets: Fashion-MNIST (idx files), scikit-learn digits, and ImageNet-style folders (ADM centre crop).

- fashion-mnist: the standard idx files (`{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]`), by default from
  Debian's `dataset-fashion-mnist` package (/usr/share/datasets/fashion-mnist/); `data_dir` points at any copy.
  28×28 grayscale, converted to RGB by repeating the channel.
- digits: scikit-learn's 1797 8×8 digits (values 0..16 scaled to 0..255), for tiny tests. Every fifth image
  (index ≡ 4 mod 5) is the test split.
- imagefolder: `root/<class>/**/*.jpg|png|...` (or `root/train`, `root/val|test`), each image preprocessed with
  ADM's `center_crop_arr`: halve with BOX filtering while the short side is ≥ 2·resolution, BICUBIC-resize the
  short side to `resolution`, then centre-crop. Read lazily, one file at a time.
"""
from __future__ import annotations

import gzip
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .base import DATASETS, ImageData, resize_uint8

__all__ = ["read_idx", "load_fashion_mnist", "load_digits", "load_imagefolder", "center_crop_arr",
           "ImageFolderDataset", "FASHION_MNIST_DIR", "FASHION_MNIST_CLASSES", "IMAGE_EXTENSIONS"]

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".pgm", ".tif", ".tiff", ".gif")


def _gray_to_rgb(images: torch.Tensor) -> torch.Tensor:
    """(N, H, W) uint8 → (N, 3, H, W) uint8 by repeating the channel."""
    return images[:, None].expand(-1, 3, -1, -1).contiguous()


#################################################################################
#                              idx files (MNIST family)                         #
#################################################################################

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
               0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an idx file (gzip or plain): magic 0x0000 | dtype code | ndim, big-endian int32 dims, then data."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"idx file {path} does not exist")
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an idx file (bad magic number {raw[:4].hex()}); "
                         "expected the MNIST idx format (e.g. train-images-idx3-ubyte.gz)")
    dtype, ndim = np.dtype(_IDX_DTYPES[raw[2]]), raw[3]
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">i4", count=ndim, offset=4))
    offset = 4 + 4 * ndim
    count = int(np.prod(dims)) if dims else 0
    if len(raw) - offset != count * dtype.itemsize:
        raise ValueError(f"{path} is truncated or corrupt: header says {dims} ({count * dtype.itemsize} bytes) "
                         f"but the file holds {len(raw) - offset} data bytes")
    return np.frombuffer(raw, dtype=dtype, count=count, offset=offset).reshape(dims).astype(dtype.newbyteorder("="))


def _find_idx(data_dir: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem):
        if (data_dir / name).exists():
            return data_dir / name
    raise FileNotFoundError(
        f"Fashion-MNIST file {data_dir / (stem + '.gz')} (or {stem}) not found. Install Debian's package "
        f"'dataset-fashion-mnist' (apt-get install dataset-fashion-mnist, which puts the idx files in "
        f"{FASHION_MNIST_DIR}) or pass data_dir=<a folder with the four idx files>")


@DATASETS.register("fashion-mnist")
def load_fashion_mnist(split: str = "train", data_dir: str | os.PathLike | None = None, n: int | None = None,
                       image_size: int | None = None) -> ImageData:
    """Fashion-MNIST from idx files; `n` keeps the first n images; `image_size` resizes (bilinear, antialiased)."""
    if split not in ("train", "test"):
        raise ValueError(f"unknown fashion-mnist split {split!r}; choose 'train' or 'test'")
    data_dir = Path(data_dir if data_dir is not None else FASHION_MNIST_DIR)
    prefix = "train" if split == "train" else "t10k"
    img_path = _find_idx(data_dir, f"{prefix}-images-idx3-ubyte")
    lab_path = _find_idx(data_dir, f"{prefix}-labels-idx1-ubyte")
    images, labels = read_idx(img_path), read_idx(lab_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(f"{img_path} holds {images.dtype} data of shape {images.shape}; expected uint8 (N, H, W)")
    if labels.ndim != 1 or len(labels) != len(images):
        raise ValueError(f"{lab_path} holds {labels.shape} labels for {len(images)} images in {img_path}")
    if n is not None:
        images, labels = images[:n], labels[:n]
    x = _gray_to_rgb(torch.from_numpy(np.ascontiguousarray(images)))
    if image_size is not None:
        x = resize_uint8(x, image_size)
    info = {"source": str(img_path), "grayscale_to_rgb": True, "native_size": list(images.shape[1:]),
            "resized_to": image_size}
    return ImageData(name="fashion-mnist", split=split, labels=torch.from_numpy(labels.astype(np.int64)),
                     class_names=list(FASHION_MNIST_CLASSES), info=info, _images=x)


#################################################################################
#                              scikit-learn digits                              #
#################################################################################

@DATASETS.register("digits")
def load_digits(split: str = "train", image_size: int | None = None) -> ImageData:
    """scikit-learn's 8×8 digits as uint8 RGB; test = every fifth image (index ≡ 4 mod 5)."""
    from sklearn.datasets import load_digits as _sk_digits

    if split not in ("train", "test"):
        raise ValueError(f"unknown digits split {split!r}; choose 'train' or 'test'")
    d = _sk_digits()
    idx = np.arange(len(d.target))
    keep = idx % 5 == 4 if split == "test" else idx % 5 != 4
    gray = np.rint(d.images[keep] * (255.0 / 16.0)).astype(np.uint8)      # values 0..16 → 0..255
    x = _gray_to_rgb(torch.from_numpy(gray))
    if image_size is not None:
        x = resize_uint8(x, image_size)
    info = {"source": "sklearn.datasets.load_digits", "grayscale_to_rgb": True, "native_size": [8, 8],
            "resized_to": image_size, "indices": "i % 5 == 4" if split == "test" else "i % 5 != 4"}
    return ImageData(name="digits", split=split, labels=torch.from_numpy(d.target[keep].astype(np.int64)),
                     class_names=[str(i) for i in range(10)], info=info, _images=x)


#################################################################################
#                        Image folders with ADM centre crop                     #
#################################################################################

def center_crop_arr(pil_image, image_size: int) -> np.ndarray:
    """ADM / DiT preprocessing: BOX-halve while the short side ≥ 2·image_size, BICUBIC-resize the short side to
    image_size (rounding the long side), centre-crop to image_size × image_size. Returns a (H, W, C) uint8 array."""
    from PIL import Image

    img = pil_image
    while min(img.size) >= 2 * image_size:
        img = img.resize((img.size[0] // 2, img.size[1] // 2), resample=Image.BOX)
    scale = image_size / min(img.size)
    img = img.resize((round(img.size[0] * scale), round(img.size[1] * scale)), resample=Image.BICUBIC)
    arr = np.asarray(img)
    top, left = (arr.shape[0] - image_size) // 2, (arr.shape[1] - image_size) // 2
    return arr[top:top + image_size, left:left + image_size].copy()                # writable, contiguous


class ImageFolderDataset(Dataset):
    """Files under class folders, read and centre-cropped on access: item i → (uint8 (3, R, R), label)."""

    def __init__(self, files: Sequence[Path], labels: Sequence[int], resolution: int):
        self.files, self.labels, self.resolution = list(files), list(labels), int(resolution)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from PIL import Image, UnidentifiedImageError

        path = self.files[i]
        try:
            with Image.open(path) as im:
                arr = center_crop_arr(im.convert("RGB"), self.resolution)
        except (UnidentifiedImageError, OSError) as e:
            raise ValueError(f"cannot read image {path}: {e}; remove or replace the file") from e
        return torch.from_numpy(arr).permute(2, 0, 1).contiguous(), self.labels[i]


def _split_root(root: Path, split: str) -> Path:
    candidates = {"train": ["train"], "test": ["test", "val"], "val": ["val", "test"]}.get(split)
    if candidates is None:
        raise ValueError(f"unknown imagefolder split {split!r}; choose 'train', 'test' or 'val'")
    for c in candidates:
        if (root / c).is_dir():
            return root / c
    if split == "train":
        return root
    raise FileNotFoundError(f"no {' or '.join(repr(c) for c in candidates)} folder under {root} for split "
                            f"{split!r}; lay the tree out as root/train/<class>/… and root/val/<class>/…")


def _is_image(p: Path, extensions: Sequence[str]) -> bool:
    return p.is_file() and p.suffix.lower() in extensions and not p.name.startswith(".")


@DATASETS.register("imagefolder")
def load_imagefolder(split: str = "train", root: str | os.PathLike | None = None, resolution: int = 64,
                     extensions: Sequence[str] = IMAGE_EXTENSIONS, max_images: int | None = None) -> ImageData:
    """An ImageNet-style tree (class = sub-folder, sorted; images found recursively) or a flat folder of images
    (one class). Files are read lazily with the ADM centre crop at `resolution`."""
    if root is None:
        raise ValueError("imagefolder needs root=<folder>, laid out as root/<class>/*.jpg "
                         "(or root/train/<class>/… and root/val/<class>/…)")
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"imagefolder root {root} does not exist or is not a folder")
    if resolution < 1:
        raise ValueError(f"resolution must be ≥ 1 (got {resolution})")
    base = _split_root(root, split)
    exts = tuple(e.lower() for e in extensions)
    class_dirs = sorted(d for d in base.iterdir() if d.is_dir() and not d.name.startswith("."))
    files, labels, class_names = [], [], []
    for d in class_dirs:
        found = sorted(p for p in d.rglob("*") if _is_image(p, exts))
        if found:
            labels += [len(class_names)] * len(found)
            class_names.append(d.name)
            files += found
    if not files:                                                          # a flat folder of images
        files = sorted(p for p in base.iterdir() if _is_image(p, exts))
        labels, class_names = [0] * len(files), [base.name]
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(exts)}) under {base}; expected {base}/<class>/<image> "
                                f"or images directly in {base}")
    if max_images is not None:
        files, labels = files[:max_images], labels[:max_images]
    info = {"root": str(base), "preprocessing": f"adm-center-crop-{resolution}", "resolution": resolution,
            "to_rgb": "PIL convert('RGB') (grayscale/RGBA/palette images are converted)", "n_files": len(files)}
    return ImageData(name="imagefolder", split=split, labels=torch.tensor(labels, dtype=torch.long),
                     class_names=class_names, info=info, dataset=ImageFolderDataset(files, labels, resolution))
