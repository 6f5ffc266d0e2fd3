"""A VQ image tokenizer (VQ-VAE / VQGAN-class autoencoder) through diffusers' `VQModel`: images ↔ discrete tokens
for the token-diffusion experiment (class-conditional discrete diffusion over image tokens vs MaskGIT).

Laptop scale trains one from scratch (`train_vq`, e.g. 32 px → 8×8 tokens over a codebook of K = 256); paper
scale loads a pretrained diffusers VQModel (`load_vq`, e.g. aMUSEd's f16 VQGAN: "amused/amused-256", "vqvae").

Model (f = 2^(len(block_out_channels) - 1), h = w = H / f, D = latent_channels = vq_embed_dim):

    x (N, 3, H, W) in [-1, 1] —Encoder, quant_conv→ z_e (N, D, h, w)      `VQModel.encode(x).latents`
    k[n, i, j] = argmin_k ‖z_e[n, :, i, j] − e_k‖₂                           `VQModel.quantize(z_e)`
    tokens[n, i·w + j] = k[n, i, j]   — row-major over the grid: (N, h·w) long in [0, K)
    z_q[n, :, i, j] = e_{k[n,i,j]} —post_quant_conv, Decoder→ x̂ (N, 3, H, W)
                                                          `VQModel.decode(z_q, force_not_quantize=True)`

Training loss (van den Oord et al. 2017), straight-through estimator z_q ← z_e + sg(z_q − z_e):

    L = mean((x̂ − x)²) + mean((z_q − sg z_e)²) + β · mean((sg z_q − z_e)²)   (recon + codebook + β·commitment)

`train_vq` computes the VQ terms itself: VQModel builds its VectorQuantizer with `legacy=True` and β fixed at 0.25,
whose returned loss is mean((sg z_q − z_e)²) + β · mean((z_q − sg z_e)²) — β on the *codebook* term, the
commitment term unweighted (both terms have the value ‖z_q − z_e‖²/n, so only the gradients differ).
Codebook entries that no token used during the last `restart_dead` steps are re-initialised from random encoder
outputs of the current batch (their AdamW moments zeroed), which keeps codebook usage high.

Pixels: uint8 in, uint8 out; the model sees v = lo + (hi − lo)·x/255 and outputs are mapped back with
round(255·(v − lo)/(hi − lo)) clamped to [0, 255]. (lo, hi) is (−1, 1) (the VQGAN / vq-diffusion convention,
used by `train_vq`) except for models with `lookup_from_codebook` (aMUSEd's VQGAN, whose pipelines feed [0, 1]
images), which get (0, 1); set `model.dlc_pixel_range = (lo, hi)` on a model to override.

Indices as diffusers returns them: `model.quantize(z_e)[2][2]` is a flat (N·h·w,) long tensor in (n, i, j) order
(not (N, h, w): VQModel leaves `sane_index_shape` False); the `perplexity` and `min_encodings` slots are None.
"""
from __future__ import annotations

import contextlib
import math
import os
import re
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from ..common import resolve_device
from ..validate import ConfigError, check, nonempty, positive

if TYPE_CHECKING:  # diffusers is imported lazily inside the functions
    import diffusers

__all__ = ["VQConfig", "VQTrainConfig", "build_vq", "train_vq", "encode_tokens", "decode_tokens", "reconstruct",
           "psnr", "codebook_stats", "save_vq", "load_vq"]


#################################################################################
#                                    Configs                                    #
#################################################################################

@dataclass(frozen=True)
class VQConfig:
    """A from-scratch VQModel: `len(block_out_channels)` levels of DownEncoderBlock2D / UpDecoderBlock2D
    (downsampling f = 2^(levels - 1)), a codebook of `num_vq_embeddings` vectors of dimension `latent_channels`."""
    image_size: int = 32
    block_out_channels: tuple[int, ...] = (32, 64, 64)
    layers_per_block: int = 1
    latent_channels: int = 16          # = vq_embed_dim D
    num_vq_embeddings: int = 256       # codebook size K
    norm_num_groups: int = 8

    def __post_init__(self):
        if not isinstance(self.block_out_channels, (list, tuple)):
            raise ConfigError("block_out_channels", self.block_out_channels, "must be a list of channel counts",
                              "write e.g. block_out_channels=[32,64,64]")
        object.__setattr__(self, "block_out_channels", tuple(self.block_out_channels))
        check(self, positive=("image_size", "layers_per_block", "latent_channels", "num_vq_embeddings",
                              "norm_num_groups"))
        nonempty("block_out_channels", self.block_out_channels, "give one channel count per level, e.g. [32,64,64]")
        for c in self.block_out_channels:
            positive("block_out_channels", c)
            if c % self.norm_num_groups:
                raise ConfigError("block_out_channels", self.block_out_channels,
                                  f"has {c} channels, not a multiple of norm_num_groups={self.norm_num_groups} "
                                  "(GroupNorm needs it)", "use multiples of norm_num_groups or lower it")
        f = 2 ** (len(self.block_out_channels) - 1)
        if self.image_size % f:
            raise ConfigError("image_size", self.image_size,
                              f"is not a multiple of the downsampling factor {f} = 2^(len(block_out_channels) - 1)",
                              f"use a multiple of {f} or fewer levels")

    @property
    def grid(self) -> int:
        """Tokens per side: image_size / 2^(len(block_out_channels) - 1)."""
        return self.image_size // 2 ** (len(self.block_out_channels) - 1)

    @property
    def seq_len(self) -> int:
        """Tokens per image (grid²)."""
        return self.grid ** 2


@dataclass(frozen=True)
class VQTrainConfig:
    """Optimisation: AdamW (weight decay 0), linear warm-up, gradient clipping at 1."""
    steps: int = 2000
    batch_size: int = 64
    lr: float = 1e-3
    warmup: int = 100              # linear learning-rate warm-up steps (0: none)
    beta: float = 0.25             # commitment weight β
    restart_dead: int = 200        # re-initialise codes unused over this many steps (0: never)
    seed: int = 0
    log_every: int = 50

    def __post_init__(self):
        check(self, positive=("steps", "batch_size", "lr", "log_every"),
              non_negative=("warmup", "beta", "restart_dead"), finite=("seed",))


#################################################################################
#                                Checks, pixels                                 #
#################################################################################

def _downsample(model) -> int:
    return 2 ** (len(model.config.block_out_channels) - 1)


def _pixel_range(model) -> tuple[float, float]:
    """(lo, hi) of the model's pixel space: `model.dlc_pixel_range` if set, (0, 1) for aMUSEd-style models
    (lookup_from_codebook), else (−1, 1)."""
    rng = getattr(model, "dlc_pixel_range", None)
    if rng is not None:
        return float(rng[0]), float(rng[1])
    return (0.0, 1.0) if getattr(model.config, "lookup_from_codebook", False) else (-1.0, 1.0)


def _to_model(x: torch.Tensor, lo: float, hi: float, dtype: torch.dtype) -> torch.Tensor:
    """uint8 (N, 3, H, W) → float in [lo, hi]."""
    return (x.to(torch.float32) * ((hi - lo) / 255.0) + lo).to(dtype)


def _to_uint8(y: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """float (N, 3, H, W) in [lo, hi] → uint8, rounded and clamped."""
    return ((y.float() - lo) * (255.0 / (hi - lo))).round_().clamp_(0, 255).to(torch.uint8)


def _check_images(images, channels: int = 3, size: int | None = None, multiple: int = 1,
                  what: str = "images") -> None:
    """uint8 (N, channels, S, S); S == size when given, else a multiple of `multiple`."""
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"{what} must be a uint8 torch.Tensor (N, {channels}, H, W); got {type(images).__name__}")
    if images.dtype != torch.uint8:
        raise ValueError(f"{what} must be uint8 (0..255), got dtype {images.dtype}; convert float images in [0, 1] "
                         "with (x * 255).round().to(torch.uint8)")
    if images.ndim != 4 or images.shape[1] != channels:
        raise ValueError(f"{what} must have shape (N, {channels}, H, W); got {tuple(images.shape)}")
    h, w = images.shape[2], images.shape[3]
    if size is not None and (h != size or w != size):
        raise ValueError(f"{what} are {h}×{w} pixels but the tokenizer's image_size is {size}: resize them to "
                         f"{size}×{size} or set VQConfig.image_size={h}")
    if h != w or h % multiple:
        raise ValueError(f"{what} are {h}×{w} pixels; they must be square with a side that is a multiple of the "
                         f"tokenizer's downsampling factor {multiple}")


def _check_batch_size(batch_size) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}")


@contextlib.contextmanager
def _on_device(model, device) -> Iterator[torch.device]:
    """Run `model` on `device` for the duration; its parameters go back where they were afterwards."""
    dev = resolve_device(device)
    home = next(model.parameters()).device
    model.to(dev)
    try:
        yield dev
    finally:
        model.to(home)


#################################################################################
#                                 Model, training                               #
#################################################################################

def build_vq(cfg: VQConfig) -> "diffusers.VQModel":
    """A randomly initialised VQModel for `cfg` (global torch RNG), in eval mode."""
    from diffusers import VQModel

    levels = len(cfg.block_out_channels)
    return VQModel(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * levels,
                   up_block_types=("UpDecoderBlock2D",) * levels, block_out_channels=tuple(cfg.block_out_channels),
                   layers_per_block=cfg.layers_per_block, act_fn="silu", latent_channels=cfg.latent_channels,
                   sample_size=cfg.image_size, num_vq_embeddings=cfg.num_vq_embeddings,
                   norm_num_groups=cfg.norm_num_groups, vq_embed_dim=cfg.latent_channels).eval()


def _vq_loss(z: torch.Tensor, e: torch.Tensor, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(codebook, β·commitment) = (mean((e − sg z)²), β·mean((sg e − z)²)) for z, e (N, D, h, w)."""
    return F.mse_loss(e, z.detach()), beta * F.mse_loss(z, e.detach())


def _index_stream(n: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Batches of indices from consecutive random permutations of range(n) (a batch may span two epochs)."""
    buf = torch.empty(0, dtype=torch.long)
    while True:
        while len(buf) < batch_size:
            buf = torch.cat([buf, torch.randperm(n, generator=generator)])
        yield buf[:batch_size]
        buf = buf[batch_size:]


@torch.no_grad()
def _restart_dead(model, opt: torch.optim.Optimizer, dead: torch.Tensor, z_flat: torch.Tensor,
                  generator: torch.Generator) -> int:
    """Codebook rows `dead` (K,) bool ← random rows of z_flat (M, D); their AdamW moments are zeroed."""
    rows = dead.nonzero().flatten()
    n, m = len(rows), len(z_flat)
    pick = torch.randperm(m, generator=generator)[:n] if m >= n else torch.randint(m, (n,), generator=generator)
    weight = model.quantize.embedding.weight
    weight[rows] = z_flat[pick.to(z_flat.device)].to(weight.dtype)
    state = opt.state.get(weight, {})
    for key in ("exp_avg", "exp_avg_sq"):
        if key in state:
            state[key][rows] = 0
    return n


def train_vq(images: torch.Tensor, cfg: VQConfig, train: VQTrainConfig | None = None,
             device: str | torch.device = "auto",
             callback: Callable[[int, dict], None] | None = None) -> "diffusers.VQModel":
    """Train a VQModel from scratch on uint8 `images` (N, 3, S, S), S = cfg.image_size; returns it on CPU in eval mode.

    Deterministic given `train.seed` (the initial weights are drawn under a forked, seeded torch RNG; the batch
    order and the dead-code restarts come from a seeded CPU generator). callback(step, logs) is called every
    `train.log_every` steps and at the last with logs = {"loss", "recon", "vq": means over the interval,
    "usage": fraction of the K codes used in this step's batch, "lr", "steps_per_s"}.
    """
    train = train or VQTrainConfig()
    _check_images(images, size=cfg.image_size)
    if len(images) == 0:
        raise ValueError("images is empty: train_vq needs at least one image")
    dev = resolve_device(device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(train.seed)
        model = build_vq(cfg)
    model = model.to(dev).train()
    opt = torch.optim.AdamW(model.parameters(), lr=train.lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(int(train.seed))
    batches = _index_stream(len(images), train.batch_size, gen)
    data = images.to(dev)                                    # uint8 on the device; float per batch
    K = cfg.num_vq_embeddings
    hits = torch.zeros(K, dtype=torch.long, device=dev)      # code counts since the last restart
    sums = torch.zeros(3, device=dev)                        # loss, recon, vq over the log interval
    n_sum = 0
    t0 = time.perf_counter()
    for step in range(1, train.steps + 1):
        lr = train.lr * min(step / train.warmup, 1.0) if train.warmup > 0 else train.lr
        for group in opt.param_groups:
            group["lr"] = lr
        x = _to_model(data[next(batches).to(dev)], -1.0, 1.0, torch.float32)   # (B, 3, S, S)
        z = model.encode(x).latents                                             # (B, D, h, w)
        _, _, (_, _, k) = model.quantize(z)                                     # k: (B·h·w,) in (n, i, j) order
        e = model.quantize.embedding(k).view(z.shape[0], z.shape[2], z.shape[3], -1).permute(0, 3, 1, 2)
        z_q = z + (e - z).detach()                                              # straight-through (B, D, h, w)
        x_hat = model.decode(z_q, force_not_quantize=True).sample               # (B, 3, S, S)
        recon = F.mse_loss(x_hat, x)
        codebook, commit = _vq_loss(z, e, train.beta)
        loss = recon + codebook + commit
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

        hits += torch.bincount(k, minlength=K)
        sums += torch.stack([loss.detach(), recon.detach(), (codebook + commit).detach()])
        n_sum += 1
        if train.restart_dead and step % train.restart_dead == 0 and step < train.steps:
            z_flat = z.detach().permute(0, 2, 3, 1).reshape(-1, z.shape[1])    # (B·h·w, D)
            _restart_dead(model, opt, hits == 0, z_flat, gen)
            hits.zero_()
        if callback is not None and (step % train.log_every == 0 or step == train.steps):
            mean = (sums / n_sum).tolist()
            callback(step, {"loss": mean[0], "recon": mean[1], "vq": mean[2],
                            "usage": torch.unique(k).numel() / K, "lr": lr,
                            "steps_per_s": step / (time.perf_counter() - t0)})
            sums.zero_()
            n_sum = 0
    return model.cpu().eval()


#################################################################################
#                               Images ↔ tokens                                 #
#################################################################################

@torch.no_grad()
def encode_tokens(model, images: torch.Tensor, batch_size: int = 256, device: str | torch.device = "auto"
                  ) -> torch.Tensor:
    """uint8 (N, 3, H, W), square with H a multiple of f → long (N, h·w) in [0, K), row-major over the grid."""
    f = _downsample(model)
    _check_images(images, channels=int(model.config.in_channels), multiple=f)
    _check_batch_size(batch_size)
    g = images.shape[2] // f
    if len(images) == 0:
        return torch.empty(0, g * g, dtype=torch.long)
    lo, hi = _pixel_range(model)
    out = []
    with _on_device(model, device) as dev:
        for i in range(0, len(images), batch_size):
            x = _to_model(images[i:i + batch_size].to(dev), lo, hi, model.dtype)   # (n, 3, H, W)
            z = model.encode(x).latents                                           # (n, D, h, w)
            k = model.quantize(z)[2][2]                                           # (n·h·w,)
            out.append(k.reshape(len(x), -1).cpu())                               # (n, h·w)
    return torch.cat(out).long()


def _check_codes(tokens, K: int, shape: str = "") -> None:
    """An integer tensor with values in [0, K)."""
    if not isinstance(tokens, torch.Tensor) or tokens.dtype.is_floating_point or tokens.dtype.is_complex \
            or tokens.dtype == torch.bool:
        raise ValueError(f"tokens must be an integer tensor{shape}; got {getattr(tokens, 'dtype', type(tokens))}")
    if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= K):
        raise ValueError(f"token values must lie in [0, K={K}) (the codebook size); got min {int(tokens.min())}, "
                         f"max {int(tokens.max())}")


def _check_tokens(tokens, K: int) -> int:
    """Integer (N, L) with L = g² and values in [0, K); returns g."""
    _check_codes(tokens, K, " (N, h·w)")
    if tokens.ndim != 2:
        raise ValueError(f"tokens must have shape (N, h·w); got {tuple(tokens.shape)}")
    L, g = tokens.shape[1], math.isqrt(tokens.shape[1])
    if L == 0 or g * g != L:
        raise ValueError(f"token sequences have length {L}, which is not a square grid h·w with h = w "
                         "(e.g. 64 = 8×8, 256 = 16×16)")
    return g


@torch.no_grad()
def decode_tokens(model, tokens: torch.Tensor, batch_size: int = 256, device: str | torch.device = "auto"
                  ) -> torch.Tensor:
    """long (N, h·w), a square grid, row-major, values in [0, K) → uint8 (N, 3, h·f, w·f)."""
    K = int(model.config.num_vq_embeddings)
    g = _check_tokens(tokens, K)
    _check_batch_size(batch_size)
    f = _downsample(model)
    if len(tokens) == 0:
        return torch.empty(0, int(model.config.out_channels), g * f, g * f, dtype=torch.uint8)
    lo, hi = _pixel_range(model)
    D = int(model.quantize.vq_embed_dim)
    out = []
    with _on_device(model, device) as dev:
        for i in range(0, len(tokens), batch_size):
            k = tokens[i:i + batch_size].to(dev).long().reshape(-1)               # (n·h·w,)
            shape = (len(k) // (g * g), g, g, D)
            if model.config.lookup_from_codebook:                                 # decode looks the indices up
                y = model.decode(k, force_not_quantize=True, shape=shape).sample
            else:
                z_q = model.quantize.get_codebook_entry(k, shape)                 # (n, D, h, w)
                y = model.decode(z_q, force_not_quantize=True).sample             # (n, 3, H, W)
            out.append(_to_uint8(y, lo, hi).cpu())
    return torch.cat(out)


def reconstruct(model, images: torch.Tensor, batch_size: int = 256, device: str | torch.device = "auto"
                ) -> torch.Tensor:
    """decode_tokens(encode_tokens(images)): uint8 (N, 3, H, W) → uint8 (N, 3, H, W)."""
    return decode_tokens(model, encode_tokens(model, images, batch_size, device), batch_size, device)


#################################################################################
#                                   Measures                                    #
#################################################################################

def psnr(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """Per-image PSNR in dB of uint8 images (N, ...): 10·log10(255² / mean((a − b)²)); inf where identical."""
    a, b = (torch.as_tensor(v) for v in (a, b))
    if a.dtype != torch.uint8 or b.dtype != torch.uint8:
        raise ValueError(f"psnr takes uint8 images (peak 255); got {a.dtype} and {b.dtype}")
    if a.shape != b.shape or a.ndim < 2:
        raise ValueError(f"psnr needs two (N, ...) image batches of one shape; got {tuple(a.shape)} and "
                         f"{tuple(b.shape)}")
    d = a.reshape(len(a), -1).double() - b.reshape(len(b), -1).double()
    mse = (d * d).mean(dim=1).numpy()                                   # (N,)
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(255.0 ** 2 / mse)


def codebook_stats(tokens: torch.Tensor, K: int) -> dict:
    """{"usage": fraction of the K codes that occur, "perplexity": exp(−Σ_k p_k log p_k)} over all tokens."""
    positive("K", K)
    _check_codes(tokens, K)
    if tokens.numel() == 0:
        raise ValueError("tokens is empty: codebook statistics need at least one token")
    counts = torch.bincount(tokens.reshape(-1).long(), minlength=K).double()   # (K,)
    p = counts / counts.sum()
    nz = p[p > 0]
    entropy = float(-(nz * nz.log()).sum())
    return {"usage": float((counts > 0).sum()) / K, "perplexity": math.exp(entropy)}


#################################################################################
#                                 Save and load                                 #
#################################################################################

def save_vq(directory: str | os.PathLike, model) -> Path:
    """`model.save_pretrained(directory)`: config.json + diffusion_pytorch_model.safetensors; returns the path."""
    directory = Path(directory)
    model.save_pretrained(str(directory), safe_serialization=True)
    return directory


_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")


def _offline() -> bool:
    return any(os.environ.get(k, "").strip().lower() in ("1", "true", "yes", "on")
               for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def load_vq(source: str | os.PathLike, *, subfolder: str = "", device: str | torch.device = "cpu"
            ) -> "diffusers.VQModel":
    """A VQModel in eval mode from a local directory (written by `save_vq` or any diffusers VQModel directory,
    optionally in `subfolder`) or a Hugging Face hub id (e.g. "amused/amused-256" with subfolder "vqvae").

    With HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) set, only the local Hugging Face cache is used. Any failure is
    one FileNotFoundError (nothing to load: missing directory, hub id not cached or unreachable) or ValueError
    (the config is not a VQModel's) that names the way out.
    """
    from diffusers import VQModel

    src = str(source)
    path = Path(src).expanduser()
    sub = subfolder.strip("/") if subfolder else ""
    what = f"{src!r}" + (f" (subfolder {sub!r})" if sub else "")
    offline = _offline()
    if path.is_dir():
        where = path / sub if sub else path
        if not where.is_dir():
            subs = sorted(p.name for p in path.iterdir() if (p / "config.json").is_file())
            raise FileNotFoundError(f"{path} has no subfolder {sub!r}"
                                    + (f"; its model subfolders are {', '.join(subs)}" if subs else "")
                                    + ": pass the subfolder that holds the VQModel (e.g. subfolder='vqvae')")
        if not (where / "config.json").is_file():
            raise FileNotFoundError(f"{where / 'config.json'} is missing: {where} is not a diffusers VQModel "
                                    "directory (config.json + diffusion_pytorch_model.safetensors); pass a directory "
                                    "written by save_vq" + ("" if sub else " or its subfolder (subfolder='vqvae')"))
        location, local_only = str(path), True
    elif path.exists():
        raise FileNotFoundError(f"{path} is a file, not a VQModel directory: pass the directory written by save_vq")
    elif _HUB_ID.fullmatch(src) and not src.startswith("."):
        location, local_only = src, offline
    else:
        raise FileNotFoundError(f"VQ model directory {path} does not exist: pass a directory written by save_vq "
                                "(or any diffusers VQModel directory), or a hub id such as 'amused/amused-256' "
                                "with subfolder='vqvae'")

    def cannot(e: BaseException) -> FileNotFoundError:
        why = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        include = f" --include '{sub}/*'" if sub else ""
        return FileNotFoundError(
            f"cannot load the VQ model {what}"
            + (" (HF_HUB_OFFLINE is set and it is not in the local Hugging Face cache)" if offline and
               location == src else "")
            + f": {type(e).__name__}: {why}. Download it once on a machine with internet with "
              f"`hf download {src}{include}` (`huggingface-cli download {src}{include}` with older huggingface_hub) "
              f"or pass a local directory")

    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*local_dir_use_symlinks.*")   # diffusers ↔ hub 2.x
            config = VQModel.load_config(location, subfolder=sub or None, local_files_only=local_only)
    except (OSError, ValueError) as e:         # huggingface_hub's offline / not-found errors are OSErrors
        raise cannot(e) from None
    cls = config.get("_class_name") if isinstance(config, dict) else None
    if cls != "VQModel":
        raise ValueError(f"{what} holds " + (f"a config of class {cls}" if cls else "a config without a diffusers "
                         "_class_name") + ", not a VQModel's: pass the directory (or subfolder, e.g. 'vqvae') of a "
                         "diffusers VQModel")
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*local_dir_use_symlinks.*")
            model = VQModel.from_pretrained(location, subfolder=sub or None, local_files_only=local_only,
                                            low_cpu_mem_usage=False, use_safetensors=True)   # never a pickle
    except (OSError, ValueError) as e:
        raise cannot(e) from None
    return model.to(resolve_device(device)).eval()
