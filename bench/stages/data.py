"""The data stage: train / held-out images of a registered data set (dlc.data)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..cache import Stage

DATA = Stage("data", code=("dlc.data", "bench.stages.data"), description="train / test images")


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "shapes"          # shapes | fashion-mnist | digits | imagefolder
    n_train: int = 10_000            # 0: the whole split
    n_test: int = 2_000
    image_size: int = 32
    data_dir: str = ""               # fashion-mnist idx directory / imagefolder root ('' = the loader's default)
    test_split: str = "test"         # imagefolder: the held-out sub-tree name (e.g. 'val')
    seed: int = 0


def load_split(cfg: DataConfig, split: str):
    """The `split` ('train' or 'test') of the data set, cut to n_train / n_test images."""
    from dlc.data import load_dataset

    n = (cfg.n_train if split == "train" else cfg.n_test) or None
    d = cfg.dataset
    if d == "imagefolder":
        root = Path(cfg.data_dir) / (split if split == "train" else cfg.test_split) if cfg.data_dir else None
        return load_dataset(d, split=split, root=root, resolution=cfg.image_size, max_images=n)
    opts = {"shapes": {"n": n, "seed": cfg.seed, "image_size": cfg.image_size},
            "fashion-mnist": {"n": n, "image_size": cfg.image_size, "data_dir": cfg.data_dir or None},
            "digits": {"image_size": cfg.image_size}}.get(d, {})
    data = load_dataset(d, split=split, **opts)
    if n is not None and len(data) > n:
        data = data.subset(range(n))
    return data
