"""`dinov2-vit{s,b,l,g}14[-reg]`: DINOv2 ViT-*/14 (Oquab et al. 2023), with or without registers, via transformers.

Used for FD-DINOv2 (Stein et al. 2023, dgm-eval: ViT-L/14 CLS token, 224 px bicubic, ImageNet normalisation),
nearest-neighbour novelty and probes. Weights: a Hugging Face hub id (default facebook/dinov2-*) or a local
directory written by `save_pretrained` (config.json + model.safetensors). Feature `cls` is the final-LayerNorm CLS
token (= `pooler_output`, = `x_norm_clstoken` of the torch.hub model); `patch_mean` averages the normed patch tokens.
"""
from __future__ import annotations

import functools
import json
import os
import re
from pathlib import Path

import torch

from .base import FeatureExtractor, MissingWeightsError, downloads_disabled, files_sha256, register_extractor
from .resize import _version

__all__ = ["DINOv2", "DINOV2_ARCHS"]

# arch -> (hidden size, hub id, hub id with registers)
DINOV2_ARCHS = {
    "vits14": (384, "facebook/dinov2-small", "facebook/dinov2-with-registers-small"),
    "vitb14": (768, "facebook/dinov2-base", "facebook/dinov2-with-registers-base"),
    "vitl14": (1024, "facebook/dinov2-large", "facebook/dinov2-with-registers-large"),
    "vitg14": (1536, "facebook/dinov2-giant", "facebook/dinov2-with-registers-giant"),
}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def _resolve_dir(weights: str | os.PathLike, cache_dir, allow_download: bool | None, name: str) -> tuple[Path, str]:
    """A local model directory for `weights` (a directory, or a hub id fetched into / found in the HF cache)."""
    hint = (f"download the model directory (config.json + model.safetensors, e.g. with "
            f"`huggingface-cli download {weights}` on a machine with network access) and pass it with --weights DIR")
    p = Path(weights).expanduser()
    if p.is_dir():
        return p, str(p)
    s = str(weights)
    if p.exists() or not _HUB_ID.match(s):
        raise MissingWeightsError(f"{name} weights directory {p} does not exist (or is not a directory)", hint=hint)
    if allow_download is None:
        allow_download = not downloads_disabled()
    from huggingface_hub import snapshot_download

    try:
        local = snapshot_download(repo_id=s, allow_patterns=["*.json", "*.safetensors"], cache_dir=cache_dir,
                                  local_files_only=not allow_download)
    except Exception as e:  # LocalEntryNotFoundError, OfflineModeIsEnabled, HTTP and connection errors
        why = "downloads are disabled (HF_HUB_OFFLINE / DLC_BENCH_OFFLINE)" if not allow_download else \
            f"the hub is unreachable ({type(e).__name__})"
        raise MissingWeightsError(f"{name} weights {s!r} are not in the Hugging Face cache and {why}",
                                  hint=hint) from None
    return Path(local), s


class DINOv2(FeatureExtractor):
    """DINOv2 ViT/14 through transformers: final-LayerNorm CLS token (and mean patch token)."""

    input_size = 224
    default_resize = "clean"
    normalize = "(x / 255 - ImageNet mean) / ImageNet std"
    default_layer = "cls"

    def __init__(self, *, arch: str = "vitl14", registers: bool = False, weights: str | os.PathLike | None = None,
                 resize: str | None = None, device: str | torch.device = "auto", dtype: str | torch.dtype = "float32",
                 cache_dir: str | os.PathLike | None = None, allow_download: bool | None = None):
        if arch not in DINOV2_ARCHS:
            raise ValueError(f"unknown DINOv2 arch {arch!r}; choose one of {', '.join(DINOV2_ARCHS)}")
        self.name = f"dinov2-{arch}" + ("-reg" if registers else "")
        super().__init__(resize=resize, device=device, dtype=dtype)
        from transformers import Dinov2Model, Dinov2WithRegistersModel

        dim, hub, hub_reg = DINOV2_ARCHS[arch]
        self.arch, self.registers = arch, registers
        self.model_dir, self.weights_source = _resolve_dir(weights or (hub_reg if registers else hub), cache_dir,
                                                           allow_download, self.name)
        cfg_file = self.model_dir / "config.json"
        if not cfg_file.is_file():
            raise MissingWeightsError(f"{self.model_dir} has no config.json: not a transformers model directory",
                                      hint="pass a directory written by save_pretrained with --weights DIR")
        model_type = json.loads(cfg_file.read_text()).get("model_type")
        want = "dinov2_with_registers" if registers else "dinov2"
        if model_type != want:
            raise ValueError(f"{self.model_dir} holds a {model_type!r} model but {self.name} needs {want!r}; "
                             f"use {'dinov2-' + arch + ('' if model_type == 'dinov2' else '-reg')} or other weights")
        cls = Dinov2WithRegistersModel if registers else Dinov2Model
        try:
            net = cls.from_pretrained(str(self.model_dir), local_files_only=True, use_safetensors=True)  # never a .bin
        except (OSError, ValueError, RuntimeError) as e:
            raise ValueError(f"cannot load {self.name} from {self.model_dir}: {str(e).splitlines()[0][:300]}") from None
        self.net = net.to(device=self.device, dtype=self.dtype).eval()
        hidden = int(self.net.config.hidden_size)
        self.layer_dims = {"cls": hidden, "patch_mean": hidden}
        self.metric_labels = {"cls": "fd_dinov2", "patch_mean": "fd_dinov2_patch"}
        self.nominal_dim = dim
        mean = torch.tensor(_IMAGENET_MEAN, dtype=self.dtype, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(_IMAGENET_STD, dtype=self.dtype, device=self.device).view(1, 3, 1, 1)
        self._mean, self._std = mean, std

    def weights_info(self) -> dict:
        files = [p for p in self.model_dir.iterdir()
                 if p.name == "config.json" or p.suffix in (".safetensors", ".bin")]
        return {"source": self.weights_source, "path": str(self.model_dir), "sha256": files_sha256(files, self.model_dir),
                "hidden_size": self.layer_dims["cls"], "nominal_hidden_size": self.nominal_dim}

    def implementation(self) -> dict:
        return {**super().implementation(), "transformers": _version("transformers"),
                "class": type(self.net).__name__}

    def _forward(self, x: torch.Tensor, layers: list[str]) -> dict[str, torch.Tensor]:
        x = (x / 255 - self._mean) / self._std                          # (N, 3, 224, 224)
        h = self.net(pixel_values=x).last_hidden_state                  # (N, 1 + R + P, D), final LayerNorm applied
        out = {"cls": h[:, 0]}                                          # (N, D)
        if "patch_mean" in layers:
            r = int(getattr(self.net.config, "num_register_tokens", 0) or 0) if self.registers else 0
            out["patch_mean"] = h[:, 1 + r:].mean(dim=1)                # (N, D)
        return out


for _arch in DINOV2_ARCHS:
    for _reg in (False, True):
        register_extractor(f"dinov2-{_arch}" + ("-reg" if _reg else ""))(
            functools.partial(DINOv2, arch=_arch, registers=_reg))
