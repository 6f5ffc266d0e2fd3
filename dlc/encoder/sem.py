"""Simplicial Embedding (SEM) encoder: a backbone's summary tokens → L softmax distributions over V values.

SEM head, exactly as the DLC reference (`DinoVisionTransformerWithSEM`):

    s = flatten(pre-norm CLS + register tokens)                  (N, T·D)
    o = LayerNorm(Linear(s → L·V, no bias))   (eps 1e-6)         (N, L·V) → (N, L, V)   "logits"
    p = softmax(o / τ) over V, per position                       (N, L, V)              "soft SEM"
    z = backbone.norm(Linear(p → D, no bias))                     (N, D)  replaces the normalised CLS token

The DLC is argmax_v p per position (τ does not change it). τ = 1 during training (reference train config);
the reference evaluates at τ = 1e-5, i.e. one-hot; τ = 0 here gives the exact one-hot. The SEM layers keep
PyTorch's default init. Only the plain head is implemented (the reference also defines Shared / PosShared
variants; its committed L512 training config uses the plain one).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ..common import count_params, load_checkpoint, save_checkpoint
from ..validate import at_least, non_negative, positive
from .backbones import backbone_from_spec, build_backbone

__all__ = ["SEMConfig", "SEMHead", "SEMOutput", "SEMEncoder", "sem_softmax", "build_sem_encoder",
           "SEM_ENCODERS", "save_sem_encoder", "load_sem_encoder"]


@dataclass(frozen=True)
class SEMConfig:
    """SEM head size and temperature: L positions, V values per position."""
    L: int = 32
    V: int = 16
    tau: float = 1.0
    eps: float = 1e-6

    def __post_init__(self):
        positive("L", self.L, "a code needs at least one position")
        at_least("V", self.V, 2, "a code position needs at least 2 values")
        non_negative("tau", self.tau, "set a temperature ≥ 0; 0 gives one-hot codes")
        positive("eps", self.eps)


def sem_softmax(logits: torch.Tensor, tau: float) -> torch.Tensor:
    """softmax(logits / τ) over the last dim, in float32; τ = 0 gives the one-hot argmax."""
    if tau < 0:
        raise ValueError(f"tau must be ≥ 0 (got {tau})")
    if tau == 0:
        return F.one_hot(logits.argmax(-1), logits.shape[-1]).to(torch.float32)
    return torch.softmax(logits.float() / tau, dim=-1)


#################################################################################
#                                   SEM head                                    #
#################################################################################

class SEMHead(nn.Module):
    """Linear(in → L·V) → LayerNorm → per-position softmax(·/τ) → Linear(L·V → out), no biases."""

    def __init__(self, in_dim: int, out_dim: int, L: int, V: int, eps: float = 1e-6):
        super().__init__()
        self.L, self.V = L, V
        self.sem_embed = nn.Linear(in_dim, L * V, bias=False)
        self.sem_norm = nn.LayerNorm(L * V, eps=eps)
        self.sem_out = nn.Linear(L * V, out_dim, bias=False)

    def logits(self, s: torch.Tensor) -> torch.Tensor:
        """(N, in_dim) → (N, L, V): the normalised pre-temperature scores."""
        return self.sem_norm(self.sem_embed(s)).view(len(s), self.L, self.V)

    def project(self, soft: torch.Tensor) -> torch.Tensor:
        """(N, L, V) soft SEM → (N, out_dim), before the backbone norm."""
        return self.sem_out(soft.flatten(1).to(self.sem_out.weight.dtype))


@dataclass
class SEMOutput:
    """What an SEM encoder returns for a batch."""
    logits: torch.Tensor      # (N, L, V) LayerNorm output, before the temperature
    soft: torch.Tensor        # (N, L, V) softmax(logits / τ)
    codes: torch.Tensor       # (N, L) long, argmax per position: the DLC
    z: torch.Tensor           # (N, D) backbone.norm(sem_out(soft)): the SEM token (DINO head / KoLeo input)
    embedding: torch.Tensor   # (N, D) the continuous backbone embedding (DINOv2 / RCG baselines)


#################################################################################
#                                  SEM encoder                                  #
#################################################################################

class SEMEncoder(nn.Module):
    """Backbone + SEM head: images → soft SEMs, discrete codes and the projected SEM token."""

    def __init__(self, backbone: nn.Module, config: SEMConfig = SEMConfig()):
        super().__init__()
        self.config = config
        self.backbone = backbone
        self.head = SEMHead(backbone.num_tokens * backbone.embed_dim, backbone.embed_dim, config.L, config.V,
                            eps=config.eps)

    @property
    def input_size(self) -> int:
        return self.backbone.input_size

    @property
    def embed_dim(self) -> int:
        return self.backbone.embed_dim

    def forward(self, x: torch.Tensor, tau: float | None = None) -> SEMOutput:
        """x: (N, 3, H, W) normalised (see `preprocess`) → SEMOutput at temperature τ (default config.tau)."""
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != 3 or not x.dtype.is_floating_point:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"SEM encoder input must be a float tensor (N, 3, H, W), normalised with "
                             f"encoder.preprocess(uint8 images); got {got}")
        tokens = self.backbone(x)                                        # (N, T, D) pre-norm
        logits = self.head.logits(tokens.flatten(1))                     # (N, L, V)
        soft = sem_softmax(logits, self.config.tau if tau is None else tau)
        z = self.backbone.norm(self.head.project(soft))                  # (N, D)
        return SEMOutput(logits=logits, soft=soft, codes=logits.argmax(-1), z=z,
                         embedding=self.backbone.embedding(tokens))

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N, 3, H, W) square images → float model input at `input_size` (bicubic, antialiased)."""
        from ..data.base import check_images_uint8

        check_images_uint8(images, "images")
        if images.shape[2] != images.shape[3]:
            raise ValueError(f"images are {images.shape[2]}×{images.shape[3]}; the SEM encoder takes square images "
                             f"(centre-crop them first, e.g. dlc.data.center_crop_arr)")
        dev = next(self.parameters()).device
        x = images.to(dev).float() / 255.0
        s = self.input_size
        if x.shape[-1] != s:
            x = F.interpolate(x, size=(s, s), mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)
        return self.backbone.normalize(x)

    @torch.no_grad()
    def encode(self, images: torch.Tensor, tau: float | None = None) -> SEMOutput:
        """uint8 images (N, 3, H, W) → SEMOutput (eval mode is the caller's choice)."""
        return self.forward(self.preprocess(images), tau=tau)

    def spec(self) -> dict:
        return {"sem": asdict(self.config), "backbone": self.backbone.spec()}


#################################################################################
#                            Presets and checkpoints                            #
#################################################################################

def build_sem_encoder(backbone: str = "vit-tiny", L: int = 32, V: int = 16, tau: float = 1.0,
                      backbone_path: str | Path | None = None, **backbone_options: Any) -> SEMEncoder:
    """An SEM encoder on a registered backbone (dlc.encoder.BACKBONES); options go to the backbone."""
    return SEMEncoder(build_backbone(backbone, path=backbone_path, **backbone_options), SEMConfig(L=L, V=V, tau=tau))


SEM_ENCODERS = {
    "sem-tiny": lambda **kw: build_sem_encoder(**{"backbone": "vit-tiny", "L": 16, "V": 16, **kw}),
    "sem-mini": lambda **kw: build_sem_encoder(**{"backbone": "vit-mini", "L": 32, "V": 32, **kw}),
    "sem-effnet": lambda **kw: build_sem_encoder(**{"backbone": "efficientnet-lite0", "L": 64, "V": 64, **kw}),
    # the paper: DINOv2 ViT-L/14 with 4 registers at 224 px, L = 512, V = 256
    "sem-dinov2-L512": lambda **kw: build_sem_encoder(**{"backbone": "dinov2", "L": 512, "V": 256,
                                                         "backbone_path": "facebook/dinov2-with-registers-large",
                                                         **kw}),
}


def save_sem_encoder(path: str | Path, encoder: nn.Module, meta: Mapping[str, Any] | None = None) -> Path:
    """Weights (safetensors) + {sem config, backbone spec} sidecar; rebuilt by `load_sem_encoder` offline."""
    encoder = getattr(encoder, "module", encoder)
    meta = {"kind": "sem_encoder", "params": count_params(encoder), **(meta or {})}
    return save_checkpoint(path, encoder, config=encoder.spec(), meta=meta)


def load_sem_encoder(path: str | Path, device: str | torch.device = "cpu") -> tuple[SEMEncoder, dict]:
    """Rebuild an SEM encoder saved by `save_sem_encoder` (no download); returns (encoder in eval mode, meta)."""
    state, config, meta = load_checkpoint(path, device="cpu")
    if not config or "sem" not in config or "backbone" not in config:
        raise FileNotFoundError(f"{Path(path).with_suffix('.json')} (the SEM encoder config sidecar) is missing or "
                                f"not an SEM encoder's; save encoders with dlc.encoder.save_sem_encoder")
    encoder = SEMEncoder(backbone_from_spec(config["backbone"]), SEMConfig(**config["sem"]))
    encoder.load_state_dict(state)
    return encoder.to(device).eval(), meta
