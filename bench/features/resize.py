"""Resizing images to a feature network's input size, in the two conventions that published numbers use.

- `legacy-tf`: TensorFlow 1.x `resize_bilinear` (align_corners=False, no antialiasing), the resize inside the
  2015 Inception graph behind ADM's evaluator and every TF FID. We call torch-fidelity's
  `interpolate_bilinear_2d_like_tensorflow1x` (bit-exact with TF on CPU, per its docs) rather than re-implementing it.
- `clean`: clean-fid's resize (Parmar et al. 2022): PIL bicubic with antialiasing on float32 'F' images, per
  channel, no re-quantisation. We call `cleanfid.resize.make_resizer("PIL", False, "bicubic", size)` itself.
- `none`: no resize; images must already have the network's input size.

The mode is chosen per run and recorded with every number (`describe_resize`).
"""
from __future__ import annotations

import functools

import numpy as np
import torch

__all__ = ["RESIZE_MODES", "resize_images", "describe_resize", "check_resize_mode"]

RESIZE_MODES = ("legacy-tf", "clean", "none")


def check_resize_mode(mode: str) -> str:
    if mode not in RESIZE_MODES:
        raise ValueError(f"unknown resize mode {mode!r}; choose one of {', '.join(RESIZE_MODES)} "
                         "('legacy-tf' = TF1 bilinear as ADM/torch-fidelity, 'clean' = clean-fid PIL bicubic)")
    return mode


def describe_resize(mode: str, size: int | None) -> dict:
    """What the resize does, for the record kept with every number."""
    check_resize_mode(mode)
    if mode == "legacy-tf":
        impl = f"torch-fidelity {_version('torch-fidelity')} interpolate_bilinear_2d_like_tensorflow1x(align_corners=False)"
    elif mode == "clean":
        impl = f"clean-fid {_version('clean-fid')} make_resizer('PIL', quantize_after=False, 'bicubic')"
    else:
        impl = "identity (input must already be the network size)"
    return {"mode": mode, "size": size, "impl": impl}


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


@functools.lru_cache(maxsize=8)
def _clean_resizer(size: int):
    from cleanfid.resize import make_resizer

    return make_resizer("PIL", False, "bicubic", (size, size))


def resize_images(x: torch.Tensor, size: int | None, mode: str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 (N, 3, H, W) → float (N, 3, size, size) in [0, 255], on x's device.

    `clean` runs on the CPU (PIL) and moves the result back to x's device.
    """
    check_resize_mode(mode)
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"expected images of shape (N, 3, H, W); got {tuple(x.shape)}")
    n, _, h, w = x.shape
    if mode == "none" or size is None:
        if size is not None and (h, w) != (size, size):
            raise ValueError(f"images are {h}x{w} but the network takes {size}x{size} and resize mode is 'none'; "
                             "use resize='legacy-tf' or 'clean'")
        return x.to(dtype)
    if mode == "legacy-tf":
        from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

        return interpolate_bilinear_2d_like_tensorflow1x(x.to(dtype), size=(size, size), align_corners=False)
    # clean: clean-fid's own per-image function on HWC uint8 numpy arrays, exactly as its ResizeDataset calls it
    fn = _clean_resizer(int(size))
    hwc = x.detach().to("cpu").permute(0, 2, 3, 1).numpy()                      # (N, H, W, 3) uint8
    out = np.stack([fn(img) for img in hwc]) if n else np.zeros((0, size, size, 3), np.float32)
    # contiguous NCHW: a channels-last view would send convolutions down other kernels (~1e-4 different)
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous().to(device=x.device, dtype=dtype)  # (N, 3, S, S)
