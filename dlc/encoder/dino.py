"""DINO self-distillation pieces for SEM training (DINOv2 logic, as the DLC reference uses it unchanged).

- DINOHead: 3-layer MLP (GELU, no BN) → L2-normalise → weight-normalised Linear with the norm g fixed to 1.
- DINOLoss: cross-entropy between the centred, sharpened teacher softmax ((t − c) / τ_t) and the student
  log-softmax (s / τ_s) over every (teacher global crop, student crop) pair of different views, averaged;
  the centre is an EMA (momentum 0.9) of the teacher's batch-mean logits.
- koleo_loss: −mean_i log(min_{j≠i} ‖x̂_i − x̂_j‖ + ε) of L2-normalised vectors (Sablayrolles et al. 2019).
- Schedules: teacher temperature warm-up (linear 0.04 → 0.07, then constant) and DINOv2's cosine scheduler
  (linear warm-up, then cosine) for lr, weight decay and the teacher EMA momentum (0.992 → 1).
- multi_crop: vectorised DINOv2 augmentation on a whole batch at once (random resized crops through
  torchvision's roi_align, flip, colour jitter, grayscale, Gaussian blur, solarisation), every draw from one
  torch.Generator.

iBOT (masked-patch) loss is not implemented: the reference uses it, but the SEM path only touches the CLS token.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from ..validate import at_least, check, in_range, interval, non_negative, nonempty, positive, probability

__all__ = ["DINOHead", "DINOLoss", "koleo_loss", "teacher_temperature", "cosine_schedule", "MultiCropConfig",
           "SMALL_CROPS", "multi_crop", "random_resized_boxes"]


#################################################################################
#                                   DINO head                                   #
#################################################################################

class DINOHead(nn.Module):
    """MLP in → hidden → hidden → bottleneck, L2-normalise, weight-normalised (g = 1) Linear → out_dim."""

    def __init__(self, in_dim: int, out_dim: int = 65536, hidden_dim: int = 2048, bottleneck_dim: int = 256):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, hidden_dim),
                                 nn.GELU(), nn.Linear(hidden_dim, bottleneck_dim))
        self.last_layer = nn.Linear(bottleneck_dim, out_dim, bias=False)   # direction v; W = v / ‖v‖ per row
        for m in self.mlp:
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        nn.init.trunc_normal_(self.last_layer.weight, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.normalize(self.mlp(x), dim=-1, eps=1e-12)                  # (N, bottleneck)
        w = F.normalize(self.last_layer.weight, dim=1)                   # weight norm with g ≡ 1
        return F.linear(x, w)                                            # (N, out_dim)


#################################################################################
#                                   DINO loss                                   #
#################################################################################

class DINOLoss(nn.Module):
    """Centred, sharpened teacher targets; cross-entropy to the student over pairs of different views."""

    def __init__(self, out_dim: int, student_temp: float = 0.1, center_momentum: float = 0.9):
        super().__init__()
        self.student_temp = float(student_temp)
        self.center_momentum = float(center_momentum)
        self.register_buffer("center", torch.zeros(1, out_dim))

    @torch.no_grad()
    def teacher_probs(self, teacher_logits: torch.Tensor, teacher_temp: float) -> torch.Tensor:
        """softmax((t − center) / τ_t) over the prototypes. (N, K) → (N, K)."""
        return torch.softmax((teacher_logits.float() - self.center) / teacher_temp, dim=-1)

    def forward(self, student_logits: list[torch.Tensor], teacher_probs: list[torch.Tensor]) -> torch.Tensor:
        """student_logits: one (N, K) per crop, the global crops first, in the teacher's order;
        teacher_probs: one (N, K) per global crop. Pairs with the same view index are skipped."""
        total, terms = 0.0, 0
        for iq, q in enumerate(teacher_probs):
            for v, s in enumerate(student_logits):
                if v == iq:
                    continue
                logp = F.log_softmax(s.float() / self.student_temp, dim=-1)
                total = total + torch.sum(-q * logp, dim=-1).mean()
                terms += 1
        if terms == 0:
            raise ValueError("the DINO loss needs at least two views (e.g. two global crops)")
        return total / terms

    @torch.no_grad()
    def update_center(self, teacher_logits: torch.Tensor) -> None:
        """center ← m·center + (1 − m)·mean over the (global) batch of teacher logits. (M, K) rows."""
        s = teacher_logits.float().sum(dim=0, keepdim=True)
        n = torch.tensor(float(len(teacher_logits)), device=s.device)
        if dist.is_initialized():
            dist.all_reduce(s)
            dist.all_reduce(n)
        self.center.mul_(self.center_momentum).add_(s / n, alpha=1 - self.center_momentum)


def koleo_loss(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """KoLeo regulariser (DINOv2): −mean log(distance to the nearest other L2-normalised row + eps). (N, D) → ()."""
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"KoLeo needs a (N, D) batch with N ≥ 2; got {tuple(x.shape)}")
    x = F.normalize(x.float(), p=2, dim=-1, eps=eps)
    with torch.no_grad():
        dots = x @ x.T                                                   # (N, N) cosine similarities
        dots.fill_diagonal_(-1.0)                                        # never pick yourself
        nn_idx = dots.argmax(dim=1)                                      # nearest neighbour on the sphere
    d = F.pairwise_distance(x, x[nn_idx], p=2, eps=eps)
    return -torch.log(d + eps).mean()


#################################################################################
#                                   Schedules                                   #
#################################################################################

def teacher_temperature(step: int, warmup_steps: int, warmup_temp: float = 0.04, temp: float = 0.07) -> float:
    """Linear warm-up from warmup_temp (step 0) to temp (step ≥ warmup_steps), then constant."""
    if warmup_steps <= 0 or step >= warmup_steps:
        return float(temp)
    return float(warmup_temp + (temp - warmup_temp) * step / warmup_steps)


def cosine_schedule(step: int, total_steps: int, base: float, final: float, warmup_steps: int = 0,
                    warmup_start: float = 0.0) -> float:
    """DINOv2 CosineScheduler: linear warmup_start → base over warmup_steps, then
    final + ½(base − final)(1 + cos(π·i / (total − warmup))); `final` from total_steps on."""
    if step < warmup_steps:
        return float(warmup_start + (base - warmup_start) * step / warmup_steps)
    n = total_steps - warmup_steps
    if n <= 0 or step >= total_steps:
        return float(final)
    i = step - warmup_steps
    return float(final + 0.5 * (base - final) * (1 + math.cos(math.pi * i / n)))


#################################################################################
#                           Multi-crop augmentation                             #
#################################################################################

@dataclass(frozen=True)
class MultiCropConfig:
    """DINOv2 multi-crop augmentation. Sizes None: global = the encoder input size, local = 7/16 of it (98/224).
    Blur σ is given in pixels at 224 px and scaled with the crop size."""
    n_global: int = 2
    n_local: int = 8
    global_size: int | None = None
    local_size: int | None = None
    global_scale: tuple[float, float] = (0.32, 1.0)
    local_scale: tuple[float, float] = (0.05, 0.32)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    jitter_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.2
    hue: float = 0.1
    grayscale_p: float = 0.2
    blur_p_global: tuple[float, ...] = (1.0, 0.1)   # per global crop (the last value repeats)
    blur_p_local: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    solarize_p_global: tuple[float, ...] = (0.0, 0.2)

    def __post_init__(self):
        positive("n_global", self.n_global)
        non_negative("n_local", self.n_local)
        at_least("n_local", self.n_local, 2 - self.n_global, "DINO needs at least two crops: raise n_local")
        check(self, positive=("global_size", "local_size"), probability=("flip_p", "jitter_p", "grayscale_p",
              "blur_p_local"), non_negative=("brightness", "contrast", "saturation"))
        in_range("hue", self.hue, 0.0, 0.5)
        for name in ("global_scale", "local_scale"):
            interval(name, getattr(self, name), 0.0, 1.0, lo_open=True)
        interval("ratio", self.ratio, 0.0, math.inf, lo_open=True)
        interval("blur_sigma", self.blur_sigma, 0.0, math.inf, lo_open=True)
        for name in ("blur_p_global", "solarize_p_global"):
            nonempty(name, getattr(self, name), "give one probability per global crop (the last repeats)")
            for p in getattr(self, name):
                probability(name, p)


# Milder crops for tiny synthetic images whose colour is a factor (shapes at 32 px): no hue shift or grayscale,
# larger crops. Not the reference setting; a pragmatic CPU default.
SMALL_CROPS = MultiCropConfig(n_global=2, n_local=4, global_scale=(0.5, 1.0), local_scale=(0.2, 0.5), jitter_p=0.3,
                              hue=0.0, grayscale_p=0.0)


def random_resized_boxes(n: int, height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float],
                         generator: torch.Generator, attempts: int = 10) -> torch.Tensor:
    """torchvision RandomResizedCrop's box sampling for n images at once: (n, 4) boxes (x1, y1, x2, y2) in
    pixels. Up to `attempts` draws per image (area ∈ scale, log-uniform aspect ∈ ratio); the first that fits
    is used, else the centred crop with the aspect clamped to `ratio`."""
    area = height * width
    s = torch.empty(n, attempts).uniform_(scale[0], scale[1], generator=generator) * area
    logr = torch.empty(n, attempts).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=generator)
    r = torch.exp(logr)
    w = torch.round(torch.sqrt(s * r))
    h = torch.round(torch.sqrt(s / r))
    ok = (w > 0) & (h > 0) & (w <= width) & (h <= height)
    u = torch.rand(n, attempts, 2, generator=generator)
    first = torch.where(ok.any(1), ok.float().argmax(1), torch.full((n,), -1))
    boxes = torch.empty(n, 4)
    # fallback: centre crop with the aspect ratio clamped (torchvision)
    in_ratio = width / height
    if in_ratio < ratio[0]:
        fw, fh = width, round(width / ratio[0])
    elif in_ratio > ratio[1]:
        fw, fh = round(height * ratio[1]), height
    else:
        fw, fh = width, height
    for_fallback = first < 0
    j = first.clamp_min(0)
    ar = torch.arange(n)
    ww, hh = w[ar, j], h[ar, j]
    top = torch.floor(u[ar, j, 0] * (height - hh + 1))
    left = torch.floor(u[ar, j, 1] * (width - ww + 1))
    boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3] = left, top, left + ww, top + hh
    if for_fallback.any():
        fl, ft = (width - fw) // 2, (height - fh) // 2
        boxes[for_fallback] = torch.tensor([fl, ft, fl + fw, ft + fh], dtype=torch.float32)
    return boxes


def _gray(x: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 luma, (N, 3, H, W) → (N, 1, H, W)."""
    return (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])


_RGB2YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


def _hue_rotate(x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """Rotate the chroma of (N, 3, H, W) by 2π·h (N,) in YIQ space (a vectorised stand-in for an HSV hue shift)."""
    m = _RGB2YIQ.to(x.device, x.dtype)
    yiq = torch.einsum("ij,njhw->nihw", m, x)
    c, s = torch.cos(2 * math.pi * h).to(x)[:, None, None], torch.sin(2 * math.pi * h).to(x)[:, None, None]
    i, q = yiq[:, 1] * c - yiq[:, 2] * s, yiq[:, 1] * s + yiq[:, 2] * c
    yiq = torch.stack([yiq[:, 0], i, q], dim=1)
    return torch.einsum("ij,njhw->nihw", torch.linalg.inv(m), yiq)


def _blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur with one σ per image (σ = 0: unchanged), reflect padding. (N, C, H, W)."""
    n, c, hgt, wid = x.shape
    radius = max(1, int(math.ceil(3 * float(sigma.max()))))
    radius = min(radius, hgt - 1, wid - 1)
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    sig = sigma.to(x).clamp_min(1e-6)[:, None]
    k = torch.exp(-0.5 * (t[None] / sig) ** 2)
    k = torch.where(sigma.to(x.device)[:, None] > 0, k, (t[None] == 0).to(x))
    k = (k / k.sum(1, keepdim=True)).repeat_interleave(c, dim=0)          # (N·C, 2r+1)
    y = x.reshape(1, n * c, hgt, wid)
    y = F.conv2d(F.pad(y, (radius, radius, 0, 0), mode="reflect"), k[:, None, None, :], groups=n * c)
    y = F.conv2d(F.pad(y, (0, 0, radius, radius), mode="reflect"), k[:, None, :, None], groups=n * c)
    return y.reshape(n, c, hgt, wid)


def _augment(x: torch.Tensor, size: int, scale: tuple[float, float], cfg: MultiCropConfig, blur_p: float,
             solarize_p: float, g: torch.Generator) -> torch.Tensor:
    """One crop of every image: (N, 3, H, W) in [0, 1] → (N, 3, size, size) in [0, 1]."""
    from torchvision.ops import roi_align

    n, _, hgt, wid = x.shape
    boxes = random_resized_boxes(n, hgt, wid, scale, cfg.ratio, g)
    rois = torch.cat([torch.arange(n, dtype=torch.float32)[:, None], boxes], dim=1).to(x)
    y = roi_align(x, rois, output_size=(size, size), spatial_scale=1.0, sampling_ratio=-1, aligned=True)
    draws = torch.rand(n, 11, generator=g)                               # every per-image draw at once
    flip = (draws[:, 0] < cfg.flip_p).to(x.device)[:, None, None, None]
    y = torch.where(flip, y.flip(-1), y)
    jit = draws[:, 1] < cfg.jitter_p

    def factor(u: torch.Tensor, amount: float) -> torch.Tensor:          # U(1 − a, 1 + a), identity if not jittered
        f = 1 - amount + 2 * amount * u
        return torch.where(jit, f, torch.ones_like(f)).to(x)[:, None, None, None]

    y = (y * factor(draws[:, 2], cfg.brightness)).clamp(0, 1)
    m = _gray(y).mean(dim=(1, 2, 3), keepdim=True)
    y = ((y - m) * factor(draws[:, 3], cfg.contrast) + m).clamp(0, 1)
    gy = _gray(y)
    y = (gy + (y - gy) * factor(draws[:, 4], cfg.saturation)).clamp(0, 1)
    if cfg.hue > 0:
        h = torch.where(jit, (2 * draws[:, 5] - 1) * cfg.hue, torch.zeros(n))
        y = _hue_rotate(y, h).clamp(0, 1)
    gray = (draws[:, 6] < cfg.grayscale_p).to(x.device)[:, None, None, None]
    y = torch.where(gray, _gray(y).expand_as(y), y)
    if blur_p > 0:
        lo, hi = cfg.blur_sigma
        sigma = (lo + (hi - lo) * draws[:, 7]) * (size / 224.0)
        y = _blur(y, torch.where(draws[:, 8] < blur_p, sigma, torch.zeros(n)))
    if solarize_p > 0:
        sol = (draws[:, 9] < solarize_p).to(x.device)[:, None, None, None]
        y = torch.where(sol & (y >= 0.5), 1 - y, y)
    return y.clamp(0, 1)


def multi_crop(images: torch.Tensor, config: MultiCropConfig, generator: torch.Generator,
               input_size: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """uint8 or [0, 1] float images (N, 3, H, W) → (global crops, local crops), each a list of (N, 3, s, s)
    float tensors in [0, 1]; global size defaults to `input_size`, local size to 7/16 of it."""
    x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
    gs = config.global_size or input_size
    ls = config.local_size or max(1, round(gs * 7 / 16))
    gp, sp = config.blur_p_global, config.solarize_p_global
    globals_ = [_augment(x, gs, config.global_scale, config, gp[min(i, len(gp) - 1)], sp[min(i, len(sp) - 1)],
                         generator) for i in range(config.n_global)]
    locals_ = [_augment(x, ls, config.local_scale, config, config.blur_p_local, 0.0, generator)
               for _ in range(config.n_local)]
    return globals_, locals_
