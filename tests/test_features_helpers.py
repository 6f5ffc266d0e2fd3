"""Shared helpers for the feature tests (no tests here): random-weight networks saved to disk and test images.

Nothing downloads: Inception is torch-fidelity's own architecture with seeded random weights whose BatchNorm
statistics are calibrated on a few images (so activations stay in a sane range), saved as a state dict and passed
to both torch-fidelity (`feature_extractor_weights_path`) and to us (`weights=`).
"""
from __future__ import annotations

from pathlib import Path
from unittest import mock

import numpy as np
import torch
import torch.nn.functional as F


def make_inception_weights(path: Path, seed: int = 0) -> Path:
    """Random-init torch-fidelity Inception-v3 with calibrated BatchNorm, saved as a .pth state dict."""
    import torch_fidelity.feature_extractor_inceptionv3 as tfi

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        # build the module without loading (or downloading) any weights
        with mock.patch.object(tfi.FeatureExtractorInceptionV3, "load_state_dict", lambda self, *a, **k: None), \
                mock.patch.object(tfi, "load_state_dict_from_url", lambda *a, **k: {}):
            net = tfi.FeatureExtractorInceptionV3("calibration", ["2048"])
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.reset_running_stats()
                m.momentum = None                      # cumulative average over the calibration pass
                m.train()
        with torch.no_grad():
            net(smooth_images(2, 32, seed=seed + 1000))
        net.eval()
        torch.save(net.state_dict(), path)
    return path


def smooth_images(n: int, size: int = 32, seed: int = 0, shift: float = 0.0) -> torch.Tensor:
    """uint8 (n, 3, size, size): smooth random colour fields plus pixel noise (more image-like than white noise)."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 4, 4, generator=g) * 255
    x = F.interpolate(low, size=(size, size), mode="bicubic", align_corners=False)
    x = x + 20 * torch.randn(n, 3, size, size, generator=g) + shift
    return x.clamp(0, 255).round().to(torch.uint8)


class UInt8Dataset(torch.utils.data.Dataset):
    """uint8 (3, H, W) items, the input type torch-fidelity accepts."""

    def __init__(self, images: torch.Tensor):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[i]


def save_pngs(images: torch.Tensor, folder: Path) -> Path:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i, im in enumerate(images.permute(0, 2, 3, 1).numpy()):
        Image.fromarray(np.ascontiguousarray(im)).save(folder / f"{i:04d}.png")
    return folder
