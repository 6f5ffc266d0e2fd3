"""The feature-extractor interface, its registry, and the weights helpers every extractor shares.

An extractor maps uint8 images (N, 3, H, W) to named feature layers, each (N, d) float32. It declares its
preprocessing (resize mode and size, normalisation), its layers and their dims, the metric label of a
Fréchet distance on each layer ('fid', 'sfid', 'fd_dinov2', 'fd_effnet', ...) and its weights source; and
`describe()` returns all of that plus the sha256 of the weights, to be recorded with every number.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import torch

from dlc.common import resolve_device, resolve_dtype

from ..errors import UserError
from ..inputs import cached_file_sha256 as file_sha256   # dlc.io.file_sha256, memoised (weights are hashed often)
from ..inputs import open_images, to_uint8_nchw
from ..registry import Registry
from .resize import check_resize_mode, describe_resize, resize_images

__all__ = [
    "FEATURES_VERSION", "FEATURE_EXTRACTORS", "FeatureExtractor", "Preprocessing", "MissingWeightsError",
    "register_extractor", "build_extractor", "file_sha256", "files_sha256", "downloads_disabled", "load_error_reason",
]

# Bump when the definition of any feature changes: it is part of every cache key.
FEATURES_VERSION = 1

FEATURE_EXTRACTORS: Registry[Callable[..., "FeatureExtractor"]] = Registry("feature extractor")


def register_extractor(name: str):
    """Class decorator: register `cls` (called with keyword options) under `name`."""
    return FEATURE_EXTRACTORS.decorator(name)


def build_extractor(name: str, **kwargs: Any) -> "FeatureExtractor":
    """Build a registered extractor, e.g. build_extractor('inception-v3-compat', weights='inc.pth', device='cpu')."""
    return FEATURE_EXTRACTORS.get(name)(**kwargs)


#################################################################################
#                                Weights helpers                                #
#################################################################################

class MissingWeightsError(UserError, FileNotFoundError):
    """Weights are not on disk and cannot be downloaded: names the file to provide and the option taking it."""


def downloads_disabled() -> bool:
    """True when DLC_BENCH_OFFLINE or HF_HUB_OFFLINE is set (the test suite sets HF_HUB_OFFLINE=1)."""
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
               for v in ("DLC_BENCH_OFFLINE", "HF_HUB_OFFLINE"))


def files_sha256(paths: Iterable[str | os.PathLike], root: str | os.PathLike) -> str:
    """One sha256 over several files: their paths relative to `root` and their own sha256, in sorted order."""
    h = hashlib.sha256()
    for p in sorted(Path(p) for p in paths):
        h.update(str(p.relative_to(root)).encode() + b"\0" + file_sha256(p).encode() + b"\n")
    return h.hexdigest()


#################################################################################
#                                 The interface                                 #
#################################################################################

@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """How images are turned into network input: resize (mode, size), normalisation and compute dtype."""
    resize: str
    size: int | None
    normalize: str
    dtype: str = "float32"

    def to_dict(self) -> dict:
        return {"resize": describe_resize(self.resize, self.size), "normalize": self.normalize, "dtype": self.dtype}


class FeatureExtractor:
    """Base class: uint8 images (N, 3, H, W) → {layer: (N, d) float32}. Subclasses implement `_forward`."""

    name: str = "base"
    input_size: int | None = None          # side of the square network input, px
    default_resize: str = "none"
    normalize: str = "x"                   # human-readable normalisation of [0, 255] input
    default_layer: str = ""
    layer_dims: dict[str, int] = {}        # declared layers and their dims
    metric_labels: dict[str, str] = {}     # layer -> label of a Fréchet distance on it ('fid', 'fd_effnet', ...)

    def __init__(self, *, resize: str | None = None, device: str | torch.device = "auto",
                 dtype: str | torch.dtype = "float32"):
        self.resize = check_resize_mode(resize or self.default_resize)
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype)
        if self.dtype not in (torch.float32, torch.float64):
            raise ValueError(f"feature extractors compute in float32 or float64, not {self.dtype}")
        self.layer_dims = dict(self.layer_dims)

    # ---- what it is ----------------------------------------------------------------------------------------

    @property
    def preprocessing(self) -> Preprocessing:
        return Preprocessing(self.resize, self.input_size, self.normalize, str(self.dtype).replace("torch.", ""))

    def weights_info(self) -> dict:
        """{'source': hub id / URL / path / 'none', 'path': local file or dir, 'sha256': ...}."""
        raise NotImplementedError

    def metric_label(self, layer: str | None = None) -> str:
        """Label of a Fréchet distance on `layer`: 'fid' only for the TF-compatible Inception pool3."""
        layer = self.check_layers([layer or self.default_layer])[0]
        return self.metric_labels.get(layer, f"fd_{self.name}_{layer}")

    def describe(self) -> dict:
        """Everything that determines the numbers: recorded with every result and part of every cache key."""
        return {
            "extractor": self.name,
            "features_version": FEATURES_VERSION,
            "layers": dict(self.layer_dims),
            "default_layer": self.default_layer,
            "metric_labels": {k: self.metric_label(k) for k in self.layer_dims},
            "preprocessing": self.preprocessing.to_dict(),
            "weights": self.weights_info(),
            "implementation": self.implementation(),
        }

    def implementation(self) -> dict:
        """Library versions behind the network code, and a hash of our own extraction code (the extractor's module,
        this one, the resize code): all part of the cache key, so editing any of them cannot hit stale features."""
        from ..cache import code_hash

        return {"torch": torch.__version__.split("+")[0],
                "source": code_hash((type(self).__module__, __name__, "bench.features.resize"))}

    def check_layers(self, layers: Sequence[str] | str | None) -> list[str]:
        if layers is None:
            return [self.default_layer]
        if isinstance(layers, str):
            layers = [layers]
        layers = list(dict.fromkeys(layers))
        bad = [l for l in layers if l not in self.layer_dims]
        if bad or not layers:
            raise ValueError(f"{self.name} has no layer {bad[0] if bad else '(none given)'!r}; "
                             f"layers: {', '.join(self.layer_dims)}")
        return layers

    # ---- computing -----------------------------------------------------------------------------------------

    def _forward(self, x: torch.Tensor, layers: list[str]) -> dict[str, torch.Tensor]:
        """x: float (N, 3, S, S) in [0, 255], already resized, on self.device. Returns {layer: (N, d)}."""
        raise NotImplementedError

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N, 3, H, W) → float (N, 3, S, S) in [0, 255] on the extractor's device (the resize step)."""
        x = resize_images(images.to(self.device), self.input_size, self.resize, self.dtype)
        return x.contiguous()        # NCHW-contiguous whatever the input strides: the conv kernels (numerics) depend on it

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor | np.ndarray, layers: Sequence[str] | str | None = None
                 ) -> dict[str, torch.Tensor]:
        """One batch: uint8 (N, 3, H, W) → {layer: float32 (N, d)} on the extractor's device."""
        layers = self.check_layers(layers)
        images = _as_uint8_nchw(images)
        feats = self._forward(self.preprocess(images), layers)
        out = {}
        for l in layers:
            f = feats[l].reshape(images.shape[0], -1).to(torch.float32)
            if f.shape[1] != self.layer_dims[l]:
                raise RuntimeError(f"{self.name} layer {l!r} gave {f.shape[1]} dims, declared {self.layer_dims[l]}")
            out[l] = f
        return out

    def extract(self, images: Any, layers: Sequence[str] | str | None = None, *, batch_size: int = 64,
                progress: Callable[[int, int | None], None] | None = None) -> dict[str, np.ndarray]:
        """All images of a source (see `bench.inputs.open_images`) → {layer: float32 (N, d)}, in source order.

        Raises ValueError on an empty source or non-finite features (naming the layer and first bad image).
        """
        layers = self.check_layers(layers)
        source = open_images(images)
        chunks: dict[str, list[np.ndarray]] = {l: [] for l in layers}
        done = 0
        for batch in source.batches(batch_size):
            feats = self(batch, layers)
            for l in layers:
                chunks[l].append(feats[l].cpu().numpy())
            done += batch.shape[0]
            if progress is not None:
                progress(done, len(source))
        if done == 0:
            raise ValueError(f"no images in {source.describe().get('path') or source.kind}: nothing to extract")
        out = {l: np.concatenate(c) for l, c in chunks.items()}
        check_finite(out, self.name)
        return out


def check_finite(feats: Mapping[str, np.ndarray], extractor: str) -> None:
    for layer, f in feats.items():
        bad = ~np.isfinite(f).all(axis=1)
        if bad.any():
            raise ValueError(f"{extractor} layer {layer!r}: {int(bad.sum())} of {len(f)} feature rows contain NaN/inf "
                             f"(first at image {int(np.argmax(bad))}); check the weights file and the input images")


def _as_uint8_nchw(images: torch.Tensor | np.ndarray) -> torch.Tensor:
    """uint8 (N, 3, H, W) on the input's device, by the one validator `bench.inputs.to_uint8_nchw` with the
    extractor's layout, NCHW (grayscale → RGB, alpha dropped; NHWC input: use bench.inputs.open_images)."""
    try:
        return to_uint8_nchw(images, "NCHW", cpu=False, what="extractor input")
    except ValueError as e:
        raise ValueError(f"expected uint8 images (N, 3, H, W) in [0, 255]: {e}") from None


def load_error_reason(e: BaseException) -> str:
    """The informative line of a weights-loading error (torch's weights-only refusals bury it in advice to load
    with weights_only=False, which we never do), or the error's type."""
    import re

    text = str(e)
    m = re.search(r"WeightsUnpickler error:\s*(.+)", text)
    line = (m.group(1) if m else text).strip().splitlines()
    return line[0][:200] if line and line[0] else type(e).__name__
