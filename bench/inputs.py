"""Image inputs for metrics: folders, ADM-style .npz files, uint8 arrays/tensors, and datasets or iterables.

`open_images(x)` turns any of them into an `ImageSource`, whose `batches(batch_size)` yields uint8 torch tensors
(B, 3, H, W) in a fixed order, whose `fingerprint()` is a content hash (the key of the feature cache) and whose
`describe()` records what was read and every conversion applied (grayscale/RGBA → RGB, resizes).

- Folder: .png/.jpg/.jpeg files (recursive, sorted by relative path). Any other file is an error naming it
  (hidden files such as .DS_Store are skipped); mixed sizes are an error naming two of them unless `size=` asks for
  a resize (PIL bicubic on uint8, recorded); grayscale, palette and RGBA images are converted to RGB (alpha dropped,
  as clean-fid and torch-fidelity do) and counted.
- .npz (`arr_0`, uint8 NHWC, as ADM's evaluator and DiT's sample_ddp.py write it): streamed in row blocks by
  `StreamingNpzArrayReader`, which parses the .npy header inside the zip, so 50k x 256² never sits in memory.
  A plain .npy file is memory-mapped.
- uint8 arrays/tensors, NCHW or NHWC (auto-detected when unambiguous, else pass layout=).
- Datasets (e.g. `dlc.data.load_dataset(...)`), callables returning an iterable, lists, or one-shot iterables whose
  items are images (CHW/HWC, PIL) or batches (NCHW/NHWC), optionally inside (image, label) tuples or dicts.
"""
from __future__ import annotations

import collections
import hashlib
import os
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch

from dlc.io import file_sha256 as _file_sha256

from .npz_reader import StreamingNpzArrayReader

__all__ = [
    "IMAGE_EXTENSIONS", "ImageSource", "FolderSource", "NpzSource", "ArraySource", "IterableSource",
    "StreamingNpzArrayReader", "open_images", "iter_batches", "to_uint8_nchw", "cached_file_sha256",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
INPUTS_VERSION = 1   # part of every fingerprint: bump when decoding/conversion changes
_CONVERTIBLE_MODES = {"RGB", "L", "LA", "P", "PA", "RGBA", "RGBX", "CMYK", "YCbCr", "1", "LAB", "HSV"}


#################################################################################
#                         Validation of uint8 image arrays                      #
#################################################################################

def _channel_axis(shape: tuple[int, ...], layout: str, what: str) -> int:
    """Index of the channel axis of a 4-D (N, ., ., .) shape given layout 'NCHW' | 'NHWC' | 'auto'."""
    if layout == "NCHW":
        return 1
    if layout == "NHWC":
        return 3
    if layout != "auto":
        raise ValueError(f"layout must be 'NCHW', 'NHWC' or 'auto', not {layout!r}")
    first, last = shape[1] in (1, 3, 4), shape[3] in (1, 3, 4)
    if first and not last:
        return 1
    if last and not first:
        return 3
    if first and last:
        raise ValueError(f"{what} of shape {shape} could be NCHW or NHWC; pass layout='NCHW' or layout='NHWC'")
    raise ValueError(f"{what} of shape {shape} has no channel axis of size 1, 3 or 4 (expected NCHW or NHWC "
                     "uint8 images)")


def _check_uint8_4d(x: Any, what: str) -> None:
    """x must be a 4-D uint8 torch tensor (numpy arrays are converted by the callers first)."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{what} must be a uint8 numpy array or torch tensor, not {type(x).__name__}")
    if x.dtype != torch.uint8:
        raise ValueError(f"{what} must be uint8 in [0, 255], got {x.dtype}; convert floats in [0, 1] with "
                         "(x * 255).round().clip(0, 255).astype(uint8)")
    if x.dim() != 4:
        raise ValueError(f"{what} must be 4-D (N, C, H, W) or (N, H, W, C); got shape {tuple(x.shape)}")


def to_uint8_nchw(x: Any, layout: str = "auto", conversions: collections.Counter | None = None,
                  what: str = "images", *, cpu: bool = True) -> torch.Tensor:
    """uint8 NCHW or NHWC (numpy or torch; 1, 3 or 4 channels) → uint8 torch (N, 3, H, W), on the CPU (cpu=False:
    on the input's device). The one validator of uint8 image batches: layout 'auto' refuses ambiguous shapes.

    Grayscale is repeated to RGB and alpha dropped; each conversion is counted (per image) in `conversions`.
    """
    if isinstance(x, np.ndarray):
        if not x.flags.writeable:                                       # memory-mapped .npy, np.load views
            x = np.array(x)                                             # torch wants writable memory
        x = torch.from_numpy(np.ascontiguousarray(x))
    _check_uint8_4d(x, what)
    if _channel_axis(tuple(x.shape), layout, what) == 3:
        x = x.permute(0, 3, 1, 2)                                       # (N, C, H, W)
    c = x.shape[1]
    if c not in (1, 3, 4):
        raise ValueError(f"{what} of shape {tuple(x.shape)} ({layout}) has {c} channels, not 1, 3 or 4")
    if c == 1:
        x = x.expand(-1, 3, -1, -1)
        if conversions is not None:
            conversions["L->RGB"] += x.shape[0]
    elif c == 4:
        x = x[:, :3]
        if conversions is not None:
            conversions["RGBA->RGB (alpha dropped)"] += x.shape[0]
    return (x.to("cpu") if cpu else x).contiguous()


_SHA_MEMO: dict[tuple, str] = {}


def cached_file_sha256(path: str | os.PathLike) -> str:
    """`dlc.io.file_sha256`, memoised per (path, size, mtime) within the process (image files, weights)."""
    p = Path(path).resolve()
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns)
    if key not in _SHA_MEMO:
        _SHA_MEMO[key] = _file_sha256(p)
    return _SHA_MEMO[key]


def _hash_batch(h: "hashlib._Hash", batch: torch.Tensor) -> None:
    h.update(str(tuple(batch.shape)).encode())
    h.update(batch.numpy().tobytes())


#################################################################################
#                                  Sources                                      #
#################################################################################

class ImageSource:
    """A re-iterable, ordered set of images yielded as uint8 (B, 3, H, W) batches."""

    kind = "images"
    num_images: int | None = None

    def __len__(self) -> int:
        if self.num_images is None:
            raise TypeError(f"the number of images of this {self.kind} source is not known before iterating it")
        return self.num_images

    def batches(self, batch_size: int = 64) -> Iterator[torch.Tensor]:
        raise NotImplementedError

    def fingerprint(self) -> str | None:
        """sha256 content hash of the images as read (None: cannot be hashed without consuming the source)."""
        raise NotImplementedError

    def describe(self) -> dict:
        raise NotImplementedError


def _max_pixels() -> int | None:
    """The most pixels one image may have (PIL's Image.MAX_IMAGE_PIXELS, ~89 MP unless changed; None: no limit)."""
    from PIL import Image

    return Image.MAX_IMAGE_PIXELS


def _check_pixels(what: str, w: int, h: int) -> None:
    """Refuse, before decoding, an image whose header claims more pixels than _max_pixels() (decompression bomb)."""
    limit = _max_pixels()
    if limit is not None and int(w) * int(h) > limit:
        raise ValueError(f"{what} claims {w}x{h} pixels ({int(w) * int(h) / 1e6:.0f} MP), more than the "
                         f"{limit / 1e6:.0f} MP limit on one image (a decompression bomb?); it was not decoded: "
                         "resize it or raise PIL.Image.MAX_IMAGE_PIXELS if the image is genuine")


def _open_header(p: Path):
    """PIL's lazy open of `p` (header only) with decompression-bomb warnings turned into errors."""
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        return Image.open(p)


def _check_batch_size(batch_size: int) -> int:
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, not {batch_size!r}")
    return batch_size


class FolderSource(ImageSource):
    """A folder of .png/.jpg images (recursive, sorted). `size` resizes every image to size x size."""

    kind = "folder"

    def __init__(self, path: str | Path, size: int | None = None):
        from PIL import Image, UnidentifiedImageError

        self.path = Path(path).expanduser()
        if not self.path.exists():
            raise FileNotFoundError(f"image folder {self.path} does not exist")
        if not self.path.is_dir():
            raise NotADirectoryError(f"{self.path} is not a folder (pass a folder of .png/.jpg images or an .npz)")
        self.size = size
        files, other, self.skipped_hidden = [], [], 0
        for p in sorted(self.path.rglob("*")):
            rel = p.relative_to(self.path)
            if any(part.startswith(".") for part in rel.parts):
                self.skipped_hidden += p.is_file()
                continue
            if p.is_file():
                (files if p.suffix.lower() in IMAGE_EXTENSIONS else other).append(p)
        if other:
            names = ", ".join(str(p.relative_to(self.path)) for p in other[:3])
            raise ValueError(f"folder {self.path} contains {len(other)} non-image file(s) ({names}"
                             f"{', ...' if len(other) > 3 else ''}); only {'/'.join(IMAGE_EXTENSIONS)} images are "
                             "read: move the other files out")
        if not files:
            raise ValueError(f"folder {self.path} contains no {'/'.join(IMAGE_EXTENSIONS)} images")
        self.files = files
        self.num_images = len(files)
        self.conversions: collections.Counter = collections.Counter()
        self.resized = 0
        sizes: dict[tuple[int, int], Path] = {}
        for p in files:                                               # headers only: cheap
            try:
                with _open_header(p) as im:
                    wh, mode = im.size, im.mode
            except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
                raise ValueError(f"image {p} was refused before decoding: {e} Resize it, or raise "
                                 "PIL.Image.MAX_IMAGE_PIXELS if it is genuine") from None
            except (UnidentifiedImageError, OSError) as e:
                raise ValueError(f"cannot read image {p}: {e}") from None
            _check_pixels(f"image {p}", *wh)
            if mode not in _CONVERTIBLE_MODES:
                raise ValueError(f"image {p} has mode {mode!r} (16-bit or float); only 8-bit images are supported: "
                                 "convert it to 8-bit RGB")
            if mode != "RGB":
                self.conversions[f"{mode}->RGB" + (" (alpha dropped)" if "A" in mode else "")] += 1
            sizes.setdefault(wh, p)
            self.resized += size is not None and wh != (size, size)
        if len(sizes) > 1 and size is None:
            (s1, p1), (s2, p2) = list(sizes.items())[:2]
            raise ValueError(f"images in {self.path} have different sizes: {p1.name} is {s1[0]}x{s1[1]} but {p2.name} "
                             f"is {s2[0]}x{s2[1]} (WxH); resize them first or pass size=N (--image-size N) to resize "
                             "all to NxN")
        self.image_sizes = sorted(sizes)                                # (W, H) pairs seen

    def _load(self, p: Path) -> np.ndarray:
        from PIL import Image

        try:
            with _open_header(p) as im:
                _check_pixels(f"image {p}", *im.size)                  # the file may have changed since
                im = im.convert("RGB") if im.mode != "RGB" else im
                if self.size is not None and im.size != (self.size, self.size):
                    im = im.resize((self.size, self.size), resample=Image.BICUBIC)
                return np.asarray(im)                                   # (H, W, 3) uint8
        except (OSError, Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise ValueError(f"cannot decode image {p}: {' '.join(str(e).split())}") from None

    def batches(self, batch_size: int = 64) -> Iterator[torch.Tensor]:
        _check_batch_size(batch_size)
        for i in range(0, len(self.files), batch_size):
            hwc = np.stack([self._load(p) for p in self.files[i:i + batch_size]])   # (B, H, W, 3)
            yield torch.from_numpy(hwc).permute(0, 3, 1, 2).contiguous()            # (B, 3, H, W)

    def fingerprint(self) -> str:
        from PIL import __version__ as pil_version

        h = hashlib.sha256(f"folder:v{INPUTS_VERSION}:pil{pil_version}:size={self.size}\n".encode())
        for p in self.files:
            h.update(f"{p.relative_to(self.path).as_posix()}\0{cached_file_sha256(p)}\n".encode())
        return h.hexdigest()

    def describe(self) -> dict:
        w, h = self.image_sizes[0]
        return {"kind": self.kind, "path": str(self.path), "num_images": self.num_images,
                "image_size": [self.size, self.size] if self.size else [h, w],
                "source_sizes": [f"{a}x{b}" for a, b in self.image_sizes],
                "conversions": dict(self.conversions),
                "resize": f"PIL bicubic (uint8) to {self.size}x{self.size}" if self.size else None,
                "resized_images": self.resized,
                "skipped_hidden_files": self.skipped_hidden}


class NpzSource(ImageSource):
    """Images in an .npz (`arr_0` uint8 NHWC, ADM style; streamed) or a .npy file (memory-mapped)."""

    kind = "npz"

    def __init__(self, path: str | Path, key: str = "arr_0", layout: str = "auto"):
        self.path, self.key, self.layout = Path(path).expanduser(), key, layout
        if not self.path.is_file():
            raise FileNotFoundError(f"image file {self.path} does not exist")
        if self.path.suffix == ".npy":
            arr = np.load(self.path, mmap_mode="r")
            shape, dtype = arr.shape, arr.dtype
        else:
            with StreamingNpzArrayReader(self.path, key) as r:
                shape, dtype = r.shape, r.dtype
        if dtype != np.uint8:
            raise ValueError(f"{self.path}:{key} has dtype {dtype}; images must be uint8 NHWC (ADM's format: "
                             "np.savez(path, arr_0=images_uint8))")
        if len(shape) != 4:
            raise ValueError(f"{self.path}:{key} has shape {shape}; images must be 4-D uint8 (N, H, W, C)")
        self.channel_axis = _channel_axis(tuple(shape), layout, f"{self.path.name}:{key}")
        _check_pixels(f"{self.path}:{key}", *[s for i, s in enumerate(shape[1:], 1) if i != self.channel_axis])
        self.shape = tuple(shape)
        self.num_images = shape[0]
        self.conversions: collections.Counter = collections.Counter()

    def _raw_batches(self, batch_size: int) -> Iterator[np.ndarray]:
        if self.path.suffix == ".npy":
            arr = np.load(self.path, mmap_mode="r")
            for i in range(0, arr.shape[0], batch_size):
                yield np.array(arr[i:i + batch_size])
            return
        with StreamingNpzArrayReader(self.path, self.key) as r:
            while (block := r.read_batch(batch_size)) is not None:
                yield block

    def batches(self, batch_size: int = 64) -> Iterator[torch.Tensor]:
        _check_batch_size(batch_size)
        layout = "NCHW" if self.channel_axis == 1 else "NHWC"
        self.conversions.clear()
        for block in self._raw_batches(batch_size):
            yield to_uint8_nchw(block, layout, self.conversions, f"{self.path.name}:{self.key}")

    def fingerprint(self) -> str:
        return hashlib.sha256(f"npz:v{INPUTS_VERSION}:{self.key}:{self.layout}:{cached_file_sha256(self.path)}".encode()
                              ).hexdigest()

    def describe(self) -> dict:
        c = self.shape[self.channel_axis]
        hw = [s for i, s in enumerate(self.shape[1:], 1) if i != self.channel_axis]
        conv = {"L->RGB": self.num_images} if c == 1 else {"RGBA->RGB (alpha dropped)": self.num_images} if c == 4 else {}
        return {"kind": self.kind, "path": str(self.path), "key": self.key, "num_images": self.num_images,
                "shape": list(self.shape), "image_size": hw, "conversions": conv}


class ArraySource(ImageSource):
    """A uint8 array or tensor of images, NCHW or NHWC (1, 3 or 4 channels)."""

    kind = "array"

    def __init__(self, images: np.ndarray | torch.Tensor, layout: str = "auto"):
        if isinstance(images, np.ndarray):
            images = torch.from_numpy(images)
        _check_uint8_4d(images, "images")
        self.layout = "NCHW" if _channel_axis(tuple(images.shape), layout, "images") == 1 else "NHWC"
        self.images = images
        self.num_images = images.shape[0]
        self.conversions: collections.Counter = collections.Counter()

    def batches(self, batch_size: int = 64) -> Iterator[torch.Tensor]:
        _check_batch_size(batch_size)
        self.conversions.clear()
        for i in range(0, self.num_images, batch_size):
            yield to_uint8_nchw(self.images[i:i + batch_size], self.layout, self.conversions)

    def fingerprint(self) -> str:
        h = hashlib.sha256(f"array:v{INPUTS_VERSION}\n".encode())
        for b in self.batches(256):
            _hash_batch(h, b)
        return h.hexdigest()

    def describe(self) -> dict:
        s = tuple(self.images.shape)
        c_axis = 1 if self.layout == "NCHW" else 3
        conv = {1: {"L->RGB": s[0]}, 4: {"RGBA->RGB (alpha dropped)": s[0]}}.get(s[c_axis], {})
        return {"kind": self.kind, "layout": self.layout, "shape": list(s), "num_images": s[0],
                "image_size": [x for i, x in enumerate(s[1:], 1) if i != c_axis], "conversions": conv}


class IterableSource(ImageSource):
    """Images from a dataset, a callable returning an iterable, a list, or a one-shot iterable (not cached)."""

    kind = "iterable"

    def __init__(self, obj: Any, name: str | None = None, layout: str = "auto", num_images: int | None = None):
        self.obj, self.name, self.layout = obj, name, layout
        self.reiterable = callable(obj) or isinstance(obj, (list, tuple)) or _is_map_dataset(obj)
        if num_images is None and (_is_map_dataset(obj) or isinstance(obj, (list, tuple))):
            num_images = len(obj)
        self.num_images = num_images
        self.conversions: collections.Counter = collections.Counter()
        self.image_size: tuple[int, int] | None = None
        self._consumed = False

    def _items(self) -> Iterable[Any]:
        if callable(self.obj) and not _is_map_dataset(self.obj):
            return self.obj()
        if _is_map_dataset(self.obj):
            return (self.obj[i] for i in range(len(self.obj)))
        if not self.reiterable:
            if self._consumed:
                raise ValueError("this one-shot iterable of images was already consumed; pass a list, a dataset or "
                                 "a callable returning a fresh iterable to read it twice")
            self._consumed = True
        return self.obj

    def _chunks(self) -> Iterator[torch.Tensor]:
        for item in self._items():
            x = _unwrap_item(item)
            if isinstance(x, torch.Tensor) or isinstance(x, np.ndarray):
                if x.ndim == 3:
                    x = x[None]                                         # one image → a batch of one
            else:
                x = np.asarray(x.convert("RGB"))[None] if hasattr(x, "convert") else x   # PIL image
            x = to_uint8_nchw(x, self.layout, self.conversions, f"images from {self.name or 'the iterable'}")
            hw = tuple(x.shape[2:])
            if self.image_size is None:
                self.image_size = hw
            elif hw != self.image_size:
                raise ValueError(f"images from {self.name or 'the iterable'} have different sizes: "
                                 f"{self.image_size[1]}x{self.image_size[0]} and {hw[1]}x{hw[0]} (WxH); "
                                 "resize them to one size first")
            yield x

    def batches(self, batch_size: int = 64) -> Iterator[torch.Tensor]:
        _check_batch_size(batch_size)
        self.conversions.clear()
        n, pending, count = 0, [], 0
        for chunk in self._chunks():
            pending.append(chunk)
            count += chunk.shape[0]
            while count >= batch_size:
                cat = torch.cat(pending)
                yield cat[:batch_size]
                n += batch_size
                pending, count = ([cat[batch_size:]] if cat.shape[0] > batch_size else []), cat.shape[0] - batch_size
        if count:
            yield torch.cat(pending)
            n += count
        self.num_images = n

    def fingerprint(self) -> str | None:
        if not self.reiterable:
            return None
        h = hashlib.sha256(f"iterable:v{INPUTS_VERSION}\n".encode())
        for b in self.batches(256):
            _hash_batch(h, b)
        return h.hexdigest()

    def describe(self) -> dict:
        return {"kind": self.kind, "name": self.name, "num_images": self.num_images,
                "image_size": list(self.image_size) if self.image_size else None,
                "conversions": dict(self.conversions), "cacheable": self.reiterable}


def _is_map_dataset(obj: Any) -> bool:
    return hasattr(obj, "__getitem__") and hasattr(obj, "__len__") and not isinstance(
        obj, (list, tuple, str, bytes, np.ndarray, torch.Tensor, dict))


def _unwrap_item(item: Any) -> Any:
    """(image, label, ...) → image; {'image': ...} → image."""
    if isinstance(item, (tuple, list)):
        if not item:
            raise ValueError("empty item in the image iterable")
        return item[0]
    if isinstance(item, dict):
        for k in ("image", "img", "images", "pixel_values"):
            if k in item:
                return item[k]
        raise ValueError(f"dict items need an 'image' key; got keys {sorted(item)}")
    return item


#################################################################################
#                                   Dispatch                                    #
#################################################################################

def open_images(x: Any, *, size: int | None = None, layout: str = "auto", key: str = "arr_0",
                name: str | None = None) -> ImageSource:
    """Any supported input → an ImageSource (an ImageSource is returned as is)."""
    if isinstance(x, ImageSource):
        if size is not None:
            raise ValueError("size= applies when opening a folder, not to an already opened source")
        return x
    if size is not None and not (isinstance(x, (str, Path)) and Path(x).is_dir()):
        raise ValueError("size= (resize on reading) is only supported for image folders; resize arrays beforehand")
    if isinstance(x, (str, Path)):
        p = Path(x).expanduser()
        if p.is_dir():
            return FolderSource(p, size=size)
        if p.suffix in (".npz", ".npy"):
            return NpzSource(p, key=key, layout=layout)
        if not p.exists():
            raise FileNotFoundError(f"no image folder or .npz file at {p}")
        raise ValueError(f"{p} is neither a folder of images nor an .npz/.npy file")
    if isinstance(x, (np.ndarray, torch.Tensor)):
        return ArraySource(x, layout=layout)
    if callable(x) or isinstance(x, Iterable) or _is_map_dataset(x):
        return IterableSource(x, name=name, layout=layout)
    raise ValueError(f"cannot read images from a {type(x).__name__}: pass a folder, an .npz, a uint8 array/tensor, "
                     "a dataset or an iterable of images")


def iter_batches(x: Any, batch_size: int = 64, **kwargs: Any) -> Iterator[torch.Tensor]:
    """uint8 (B, 3, H, W) batches from any supported input."""
    return open_images(x, **kwargs).batches(batch_size)
