"""SEM encoder stage (backbone + Simplicial Embedding head, DINO + KoLeo) and the DLC export stage."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from dlc.encoder.dino import MultiCropConfig
from dlc.encoder.train import SEMTrainConfig

from dlc.validate import check, choice

from ..cache import Stage
from .base import progress_callback


def _default_train() -> SEMTrainConfig:
    return SEMTrainConfig(steps=1500, batch_size=64, lr=5e-4, warmup_steps=100, head_out_dim=1024,
                          warmup_teacher_temp_steps=500, crops=MultiCropConfig(n_local=2))


@dataclass(frozen=True)
class EncoderConfig:
    backbone: str = "vit-mini"       # dlc.encoder.BACKBONES: vit-tiny, vit-mini, ..., efficientnet-lite0, dinov2
    backbone_path: str = ""          # dinov2: hub id or local directory
    input_size: int = 0              # backbone input side (0: the backbone's default; ViTs: the data's)
    L: int = 32
    V: int = 32
    tau: float = 1.0
    train: SEMTrainConfig = field(default_factory=_default_train)   # dlc's own training config
    export_batch_size: int = 256

    def __post_init__(self):
        from dlc.encoder import BACKBONES, SEMConfig

        choice("backbone", self.backbone, BACKBONES)
        SEMConfig(L=self.L, V=self.V, tau=self.tau)                      # its checks of L, V and tau
        check(self, non_negative=("input_size",), positive=("export_batch_size",))


def train_encoder(ctx: Any, cfg: EncoderConfig, image_size: int, train, seed: int) -> dict:
    from dlc.encoder import VIT_PRESETS, build_sem_encoder, train_sem_encoder

    opts: dict[str, Any] = {}
    if cfg.backbone in VIT_PRESETS:   # trained from scratch at the data's resolution
        opts["image_size"] = cfg.input_size or image_size
    elif cfg.input_size:
        opts["input_size"] = cfg.input_size
    torch.manual_seed(seed)
    enc = build_sem_encoder(cfg.backbone, L=cfg.L, V=cfg.V, tau=cfg.tau, backbone_path=cfg.backbone_path or None,
                            **opts)
    bar, cb = progress_callback(ctx, cfg.train.steps, "train SEM encoder",
                                {"loss": ".3f", "codes_per_position": ".1f"})
    res = train_sem_encoder(enc, train, cfg.train, seed=seed, device=ctx.device, log_every=25, callback=cb)
    bar.close()
    return {"encoder": res.encoder.cpu(), "losses": [float(x) for x in res.losses],
            "logs": res.logs[-1] if res.logs else {}, "seconds": float(res.seconds)}


def _save_encoder(value: dict, d: Path) -> None:
    from dlc.encoder import save_sem_encoder

    save_sem_encoder(d / "encoder", value["encoder"])
    rest = {k: v for k, v in value.items() if k != "encoder"}
    (d / "train.json").write_text(json.dumps(rest, default=float))


def _load_encoder(d: Path) -> dict:
    from dlc.encoder import load_sem_encoder

    enc, _ = load_sem_encoder(d / "encoder")
    return {"encoder": enc, **json.loads((d / "train.json").read_text())}


ENCODER = Stage("encoder", code=("dlc.encoder", "dlc.common", "dlc.dist", "bench.stages.encoder"),
                save=_save_encoder, load=_load_encoder, description="SEM encoder trained with DINO + KoLeo")


def export_codes(ctx: Any, cfg: EncoderConfig, encoder, splits: dict) -> dict:
    """DLC artifacts (tokens, soft SEMs, continuous embedding, factors) of every split."""
    from dlc.encoder import export_codes as export

    return {s: export(encoder, data, batch_size=cfg.export_batch_size, device=ctx.device) for s, data in splits.items()}


def _save_codes(value: dict, d: Path) -> None:
    for s, a in value.items():
        a.save(d / s)
    (d / "splits.json").write_text(json.dumps(sorted(value)))


def _load_codes(d: Path) -> dict:
    from dlc.encoder import DLCArtifact

    return {s: DLCArtifact.load(d / s) for s in json.loads((d / "splits.json").read_text())}


CODES = Stage("codes", code=("dlc.encoder", "bench.stages.encoder"), save=_save_codes, load=_load_codes,
              description="DLC export: tokens, soft SEMs and the continuous embedding of every image")
