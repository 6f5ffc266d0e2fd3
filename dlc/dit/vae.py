"""Image ↔ diffusion space: diffusers' AutoencoderKL latents (scaled by 0.18215) or pixels (identity).

Both codecs share one interface: `encode(images in [-1, 1], rng=None) → latents`, `decode(latents) → images
in [-1, 1]`, `latent_shape(image_size)`, `channels`, `downsample`. The SD-VAE is loaded from a hub id or a
local directory (`save_pretrained` layout); offline and without the weights, loading fails with a message
naming the id/path and the way out.
"""
from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import torch
from torch import nn

from ..common import PerSampleRNG, resolve_device, resolve_dtype

__all__ = ["SDVAE", "PixelVAE", "load_vae", "to_uint8", "SD_VAE_SCALE", "DEFAULT_VAE"]

SD_VAE_SCALE = 0.18215
DEFAULT_VAE = "stabilityai/sd-vae-ft-ema"


def _check_images(x: torch.Tensor, channels: int, downsample: int, what: str = "images") -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise ValueError(f"{what} must be a (N, {channels}, H, W) tensor")
    if x.shape[1] != channels:
        raise ValueError(f"{what} have {x.shape[1]} channels; expected {channels}")
    if x.shape[2] % downsample or x.shape[3] % downsample:
        raise ValueError(f"{what} are {x.shape[2]}×{x.shape[3]}; height and width must be multiples of "
                         f"{downsample} (the autoencoder's downsampling factor)")
    if not x.dtype.is_floating_point:
        raise ValueError(f"{what} must be float tensors in [-1, 1] (got {x.dtype}); convert uint8 with x/127.5 - 1")


class SDVAE(nn.Module):
    """A frozen diffusers AutoencoderKL; latents are `scale_factor` × the posterior sample (or mean)."""

    def __init__(self, autoencoder: nn.Module, scale_factor: float = SD_VAE_SCALE):
        super().__init__()
        self.vae = autoencoder.eval().requires_grad_(False)
        self.scale_factor = float(scale_factor)
        cfg = autoencoder.config
        self.image_channels = int(cfg.in_channels)
        self.channels = int(cfg.latent_channels)
        self.downsample = 2 ** (len(cfg.block_out_channels) - 1)

    def latent_shape(self, image_size: int) -> tuple[int, int, int]:
        if image_size % self.downsample:
            raise ValueError(f"image_size={image_size} is not a multiple of the VAE downsampling {self.downsample}")
        s = image_size // self.downsample
        return (self.channels, s, s)

    @torch.no_grad()
    def encode(self, images: torch.Tensor, rng: PerSampleRNG | None = None) -> torch.Tensor:
        """images (N, 3, H, W) in [-1, 1] → latents (N, C, H/f, W/f). With rng: a posterior sample drawn from
        the per-sample generators (as the DLC/DiT feature extraction does); without: the posterior mean."""
        _check_images(images, self.image_channels, self.downsample)
        dist = self.vae.encode(images.to(self.vae.dtype)).latent_dist
        z = dist.mean if rng is None else dist.mean + dist.std * rng.randn(*dist.mean.shape[1:]).to(dist.mean)
        return z * self.scale_factor

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """latents (N, C, h, w) → images (N, 3, h·f, w·f), nominally in [-1, 1] (not clamped)."""
        _check_images(latents, self.channels, 1, what="latents")
        return self.vae.decode(latents.to(self.vae.dtype) / self.scale_factor).sample


class PixelVAE(nn.Module):
    """Identity codec for pixel-space diffusion on small images (same interface as SDVAE)."""

    def __init__(self, channels: int = 3):
        super().__init__()
        self.channels = self.image_channels = int(channels)
        self.downsample = 1
        self.scale_factor = 1.0

    def latent_shape(self, image_size: int) -> tuple[int, int, int]:
        return (self.channels, int(image_size), int(image_size))

    def encode(self, images: torch.Tensor, rng: PerSampleRNG | None = None) -> torch.Tensor:
        _check_images(images, self.channels, 1)
        return images

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        _check_images(latents, self.channels, 1, what="latents")
        return latents


def load_vae(name_or_path: str | os.PathLike = DEFAULT_VAE, *, device: str | torch.device = "cpu",
             dtype: str | torch.dtype = "float32", scale_factor: float = SD_VAE_SCALE,
             subfolder: str | None = None) -> SDVAE | PixelVAE:
    """An AutoencoderKL from a hub id (e.g. "stabilityai/sd-vae-ft-ema") or a local directory written by
    `save_pretrained`; "pixel" gives the identity codec. Raises FileNotFoundError when the weights cannot be
    found (missing directory, or a hub id that is not cached while offline)."""
    if str(name_or_path) == "pixel":
        return PixelVAE()
    from diffusers import AutoencoderKL

    src = str(name_or_path)
    local = Path(src).expanduser()
    looks_local = not re.fullmatch(r"[\w.-]+(/[\w.-]+)?", src) or src.startswith(".")  # hub ids: "owner/name"
    if looks_local and not local.exists():
        raise FileNotFoundError(f"VAE directory {local} does not exist; pass a directory written by "
                                f"AutoencoderKL.save_pretrained (config.json + diffusion_pytorch_model.safetensors) "
                                f"or a hub id such as {DEFAULT_VAE!r}")
    if local.exists():
        sub = local / subfolder if subfolder else local
        if not (sub / "config.json").exists():
            raise FileNotFoundError(f"{sub / 'config.json'} is missing: {sub} is not an AutoencoderKL directory "
                                    f"(expected config.json and diffusion_pytorch_model.safetensors)")
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*local_dir_use_symlinks.*")
            vae = AutoencoderKL.from_pretrained(str(local) if local.exists() else src, subfolder=subfolder,
                                                torch_dtype=resolve_dtype(dtype), low_cpu_mem_usage=False)
    except (OSError, ValueError) as e:  # diffusers/huggingface_hub raise OSError subclasses when offline
        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
        reason = str(e).splitlines()[0].rstrip(".") if str(e) else ""
        raise FileNotFoundError(
            f"could not load the VAE weights {src!r}"
            + (" (HF_HUB_OFFLINE is set and they are not in the Hugging Face cache)" if offline else "")
            + f": {type(e).__name__}: {reason}. Download them on a machine "
              f"with internet (huggingface-cli download {src}) or pass the local directory (vae=/path/to/vae), "
              f"or use vae='pixel' for pixel-space diffusion") from e
    return SDVAE(vae, scale_factor).to(resolve_device(device))


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] float images (N, C, H, W) → uint8 (N, H, W, C), clamp(127.5·x + 128) as the DiT/DLC samplers do."""
    return (images.float() * 127.5 + 128.0).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()
