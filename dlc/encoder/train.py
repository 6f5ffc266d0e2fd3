"""SEM encoder training: DINO self-distillation on the SEM token, with KoLeo, an EMA teacher and multi-crop.

Per step (DINOv2 logic as the DLC reference uses it): multi-crop the batch; the student sees every crop, the
teacher (an EMA of the student) the global crops only; loss = DINO(student, teacher) + w·Σ_global KoLeo(SEM token);
AdamW with a cosine lr (linear warm-up) and cosine weight decay (0.04 → 0.4; none on biases, norms, tokens and
positions), gradient clipping, the head's last layer frozen for the first steps; teacher momentum cosine
0.992 → 1; teacher temperature warm-up 0.04 → 0.07; DINO centre momentum 0.9.

Works unchanged under `torchrun`: each rank reads its strided shard of a shared epoch permutation (the batch size
is global), gradients are averaged by DDP, the DINO centre is all-reduced; rank 0 calls back and saves.
Simplifications against the reference: no iBOT loss, no layer-wise lr decay, no patch-embed lr multiplier.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from .. import dist as ddist
from ..common import EMA, autocast, seed_for
from ..data.base import ImageData, check_images_uint8
from ..validate import at_least, check
from .dino import DINOHead, DINOLoss, MultiCropConfig, cosine_schedule, koleo_loss, multi_crop, teacher_temperature
from .sem import SEMEncoder, save_sem_encoder

__all__ = ["SEMTrainConfig", "SSLModel", "SEMTrainResult", "train_sem_encoder", "PAPER_TRAIN_CONFIG"]

Callback = Callable[[int, dict], None]


@dataclass(frozen=True)
class SEMTrainConfig:
    """Optimisation, DINO and augmentation settings. Defaults are CPU-sized; PAPER_TRAIN_CONFIG is the reference."""
    steps: int = 1000
    batch_size: int = 64                  # global (split over ranks)
    lr: float = 5e-4
    min_lr: float = 1e-6
    warmup_steps: int = 100
    weight_decay: float = 0.04
    weight_decay_end: float = 0.4
    momentum: float = 0.992               # teacher EMA momentum, cosine to momentum_end
    momentum_end: float = 1.0
    clip_grad: float | None = 3.0
    freeze_last_layer_steps: int = 0
    head_out_dim: int = 4096              # DINO prototypes (reference 65536)
    head_hidden_dim: int = 512            # (reference 2048)
    head_bottleneck_dim: int = 256
    student_temp: float = 0.1
    teacher_temp: float = 0.07
    warmup_teacher_temp: float = 0.04
    warmup_teacher_temp_steps: int = 300
    center_momentum: float = 0.9
    koleo_weight: float = 0.1
    freeze_backbone: bool = False         # train only the SEM head (pretrained backbones)
    crops: MultiCropConfig = field(default_factory=MultiCropConfig)

    def __post_init__(self):
        if isinstance(self.crops, dict):                                  # from a JSON / YAML config
            object.__setattr__(self, "crops", MultiCropConfig(**{k: tuple(v) if isinstance(v, list) else v
                                                                 for k, v in self.crops.items()}))
        at_least("batch_size", self.batch_size, 2, "DINO's centering and KoLeo need a batch of at least 2")
        check(self, positive=("steps", "lr", "clip_grad", "head_out_dim", "head_hidden_dim", "head_bottleneck_dim",
                              "student_temp", "teacher_temp", "warmup_teacher_temp"),
              non_negative=("min_lr", "warmup_steps", "weight_decay", "weight_decay_end", "freeze_last_layer_steps",
                            "warmup_teacher_temp_steps", "koleo_weight"),
              probability=("momentum", "momentum_end", "center_momentum"))


# The reference run (dinov2 configs + vitl14_sem_L512.yaml): 100 × 1250 iterations, batch 4 × 64.
PAPER_TRAIN_CONFIG = SEMTrainConfig(
    steps=125_000, batch_size=256, lr=5e-5, min_lr=1e-6, warmup_steps=12_500, weight_decay=0.04,
    weight_decay_end=0.4, momentum=0.992, momentum_end=1.0, clip_grad=3.0, freeze_last_layer_steps=1250,
    head_out_dim=65536, head_hidden_dim=2048, head_bottleneck_dim=256, warmup_teacher_temp_steps=37_500,
    koleo_weight=0.1, crops=MultiCropConfig(n_global=2, n_local=8, global_size=224, local_size=98))


#################################################################################
#                        Student / teacher (SEM encoder + head)                 #
#################################################################################

class SSLModel(nn.Module):
    """SEM encoder + DINO head; one forward over all crops (so DDP sees one call per step)."""

    def __init__(self, encoder: SEMEncoder, head: DINOHead):
        super().__init__()
        self.encoder, self.head = encoder, head

    def forward(self, global_crops: torch.Tensor, local_crops: torch.Tensor | None = None):
        """Normalised crops (G·N, 3, s, s) and (M·N, 3, s', s') → (SEM tokens z (G·N, D), codes (G·N, L),
        DINO logits of the global crops (G·N, K), of the local crops (M·N, K) or None)."""
        out = self.encoder(global_crops)
        logits_g = self.head(out.z)
        logits_l = self.head(self.encoder(local_crops).z) if local_crops is not None else None
        return out.z, out.codes, logits_g, logits_l


@dataclass
class SEMTrainResult:
    """The teacher encoder (used for DLC export, as the reference), the student, and per-step losses."""
    encoder: SEMEncoder
    student: SEMEncoder
    head: DINOHead
    losses: list[float] = field(default_factory=list)
    logs: list[dict] = field(default_factory=list)
    seconds: float = 0.0


def _param_groups(model: nn.Module) -> list[dict]:
    """DINOv2: no weight decay on biases, norms, LayerScale, tokens and position embeddings."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        skip = p.ndim <= 1 or name.endswith(".bias") or "norm" in name or "token" in name or "pos_embed" in name \
            or "position_embeddings" in name
        (no_decay if skip else decay).append(p)
    return [{"params": decay, "wd_mult": 1.0}, {"params": no_decay, "wd_mult": 0.0}]


def _local_size(cfg: MultiCropConfig, encoder: SEMEncoder) -> MultiCropConfig:
    """Fill in crop sizes; for ViTs round them to multiples of the patch size."""
    gs = cfg.global_size or encoder.input_size
    ls = cfg.local_size or max(1, round(gs * 7 / 16))
    patch = getattr(getattr(encoder.backbone, "config", None), "patch_size", None)
    if isinstance(patch, int) and patch > 1:
        gs = max(patch, round(gs / patch) * patch)
        ls = max(patch, round(ls / patch) * patch)
    return dataclasses.replace(cfg, global_size=gs, local_size=ls)


def train_sem_encoder(encoder: SEMEncoder, data: torch.Tensor | ImageData, config: SEMTrainConfig = SEMTrainConfig(),
                      *, seed: int = 0, device: str | torch.device = "auto", log_every: int = 50,
                      callback: Callback | None = None, save_path: str | Path | None = None,
                      save_every: int | None = None) -> SEMTrainResult:
    """Train `encoder` (in place: it becomes the student) on uint8 images (N, 3, H, W) or an ImageData.

    callback(step, logs) on rank 0 every `log_every` steps and at the end; logs = {loss, dino, koleo, lr, wd,
    momentum, teacher_temp, codes_per_position (distinct codes per position in the batch, averaged),
    steps_per_s}. save_path: the teacher encoder is saved there (save_sem_encoder) every `save_every` steps and
    at the end. Returns the teacher (`.encoder`), student and head.
    """
    if not isinstance(encoder, SEMEncoder):
        raise ValueError("train_sem_encoder expects a dlc.encoder.SEMEncoder (see build_sem_encoder)")
    lazy = isinstance(data, ImageData) and data.lazy
    if isinstance(data, ImageData):
        n = len(data)
        if not lazy:
            data = data.images
    else:
        check_images_uint8(data, "training images")
        n = len(data)
    if n < 2:
        raise ValueError(f"need at least 2 training images (got {n})")
    info = ddist.setup(device)
    dev = info.device
    cfg = config
    if cfg.batch_size % info.world_size:
        raise ValueError(f"batch_size={cfg.batch_size} must be divisible by the world size {info.world_size}")
    local_bs = cfg.batch_size // info.world_size
    crops = _local_size(cfg.crops, encoder)

    with torch.random.fork_rng(devices=[]):                              # seeded head init, global RNG untouched
        torch.manual_seed(seed_for(seed, 0, stream=3))
        head = DINOHead(encoder.embed_dim, cfg.head_out_dim, cfg.head_hidden_dim, cfg.head_bottleneck_dim)
    student = SSLModel(encoder, head).to(dev).train()
    if cfg.freeze_backbone:
        encoder.backbone.requires_grad_(False)
    ema = EMA(student, decay=cfg.momentum)
    teacher = ema.model
    net = ddist.wrap_ddp(student, info)
    groups = _param_groups(student)
    opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.999))
    dino_loss = DINOLoss(cfg.head_out_dim, cfg.student_temp, cfg.center_momentum).to(dev)
    batches = ddist.index_stream(n, local_bs, info, seed)
    g = torch.Generator().manual_seed(seed_for(seed, info.rank, stream=2))
    G = crops.n_global

    losses, logs_all, window = [], [], []
    t0 = time.perf_counter()
    for step in range(1, cfg.steps + 1):
        i = step - 1
        lr = cosine_schedule(i, cfg.steps, cfg.lr, cfg.min_lr, cfg.warmup_steps)
        wd = cosine_schedule(i, cfg.steps, cfg.weight_decay, cfg.weight_decay_end)
        mom = cosine_schedule(i, cfg.steps, cfg.momentum, cfg.momentum_end)
        t_temp = teacher_temperature(i, cfg.warmup_teacher_temp_steps, cfg.warmup_teacher_temp, cfg.teacher_temp)
        for grp in opt.param_groups:
            grp["lr"], grp["weight_decay"] = lr, wd * grp["wd_mult"]

        idx = next(batches)
        x = torch.stack([data.dataset[int(j)][0] for j in idx]) if lazy else data[idx]
        student.train()
        if cfg.freeze_backbone:
            encoder.backbone.eval()
        gl, lo = multi_crop(x.to(dev, non_blocking=True), crops, g, encoder.input_size)
        norm = encoder.backbone.normalize
        xg = norm(torch.cat(gl))                                          # (G·B, 3, s, s)
        xl = norm(torch.cat(lo)) if lo else None                          # (M·B, 3, s', s')
        with autocast(dev):
            z, codes, s_g, s_l = net(xg, xl)
            with torch.no_grad():
                _, _, t_g, _ = teacher(xg, None)
        student_out = list(s_g.chunk(G)) + (list(s_l.chunk(len(lo))) if lo else [])
        t_probs = dino_loss.teacher_probs(t_g, t_temp).chunk(G)
        l_dino = dino_loss(student_out, list(t_probs))
        l_koleo = sum(koleo_loss(zz) for zz in z.chunk(G)) if cfg.koleo_weight > 0 else torch.zeros((), device=dev)
        loss = l_dino + cfg.koleo_weight * l_koleo

        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.clip_grad is not None:
            torch.nn.utils.clip_grad_norm_([p for grp in groups for p in grp["params"]], cfg.clip_grad)
        if step <= cfg.freeze_last_layer_steps:
            head.last_layer.weight.grad = None
        opt.step()
        ema.decay = mom
        ema.update(student)
        dino_loss.update_center(t_g)
        losses.append(loss.detach())
        window.append(torch.stack([loss.detach(), l_dino.detach(), torch.as_tensor(l_koleo).detach()]))

        last = step == cfg.steps
        if (step % log_every == 0 or last) and not info.is_main:
            window = []
        if info.is_main and (step % log_every == 0 or last):
            mean = torch.stack(window).mean(0).tolist()
            c0 = codes[:local_bs]                                         # first global crop: (B, L)
            per_pos = float((torch.sort(c0, dim=0).values.diff(dim=0) != 0).sum(0).add(1).float().mean())
            logs = {"loss": mean[0], "dino": mean[1], "koleo": mean[2], "lr": lr, "wd": wd, "momentum": mom,
                    "teacher_temp": t_temp, "codes_per_position": per_pos,
                    "steps_per_s": step / (time.perf_counter() - t0)}
            logs_all.append({"step": step, **logs})
            window = []
            if callback is not None:
                callback(step, logs)
        if info.is_main and save_path is not None and (last or (save_every and step % save_every == 0)):
            save_sem_encoder(save_path, teacher.encoder, meta={"step": step, "train": dataclasses.asdict(cfg),
                                                               "role": "teacher"})
    ddist.barrier()
    return SEMTrainResult(encoder=teacher.encoder.eval(), student=encoder, head=head,
                          losses=torch.stack(losses).float().cpu().tolist(), logs=logs_all,
                          seconds=time.perf_counter() - t0)
