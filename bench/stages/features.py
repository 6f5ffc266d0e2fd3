"""Features of an image set with one registered extractor, split over ranks by sample index."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..cache import Stage
from .base import gather_block, rank_block


def extract(ctx: Any, extractor, images: torch.Tensor, batch_size: int, desc: str = "features") -> np.ndarray:
    """Features of `images` (this rank's block, gathered), with a progress bar over the images."""
    lo, hi = rank_block(len(images), ctx.rank, ctx.world_size)
    with ctx.progress(total=hi - lo, desc=desc) as bar:
        f = extractor.extract(images[lo:hi], batch_size=batch_size,
                              progress=lambda done, total: bar.update(done - bar.n))[extractor.default_layer]
    return gather_block(torch.from_numpy(f), lo, len(images)).numpy()


def feature_config(extractor, batch_size: int) -> dict:
    """What features depend on: the extractor's full description (weights sha256, preprocessing) and batching."""
    return {"extractor": extractor.describe(), "layer": extractor.default_layer, "batch_size": batch_size}


# the extractor's weights and preprocessing are in the key through feature_config; its code through `code`
FEATURES = Stage("features", code=("bench.features", "bench.inputs", "bench.stages.features"),
                 description="features of an image set")
