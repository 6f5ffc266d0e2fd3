"""The data stage: train / held-out images of a registered data set (dlc.data)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dlc.validate import ConfigError, check, choice, non_negative, nonempty

from ..cache import Stage

DATA = Stage("data", code=("dlc.data", "bench.stages.data"), description="train / test images")
FULL_SPLITS = {"shapes": (10_000, 2_000), "fashion-mnist": (60_000, 10_000), "digits": (1_438, 359)}  # (train, test)


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "shapes"          # shapes | fashion-mnist | digits | imagefolder
    n_train: int = 10_000            # 0: the whole split
    n_test: int = 2_000
    image_size: int = 32
    data_dir: str = ""               # fashion-mnist idx directory / imagefolder root ('' = the loader's default)
    test_split: str = "test"         # imagefolder: the held-out sub-tree name (e.g. 'val')
    seed: int = 0

    def __post_init__(self):
        from dlc.data import DATASETS

        choice("dataset", self.dataset, DATASETS.names())
        for name in ("n_train", "n_test"):
            non_negative(name, getattr(self, name), "set 0 for the whole split or a positive count")
        check(self, non_negative=("seed",), positive=("image_size",))
        nonempty("test_split", self.test_split, "name the held-out sub-tree, e.g. test_split=val")

    def sizes(self) -> tuple[int, int]:
        """(train, test) image counts; n = 0 is the whole split (0 where its size is unknown: imagefolder)."""
        full = FULL_SPLITS.get(self.dataset, (0, 0))
        return self.n_train or full[0], self.n_test or full[1]

    def check_resources(self) -> None:
        """A data_dir that is set exists (checked when a run starts, not when the config is read)."""
        if self.data_dir and not Path(self.data_dir).expanduser().is_dir():
            raise ConfigError("data_dir", self.data_dir, "is not a directory on this machine",
                              "point it at the data set's directory, or set data_dir='' for the loader's default")


def load_split(cfg: DataConfig, split: str):
    """The `split` ('train' or 'test') of the data set, cut to n_train / n_test images."""
    from dlc.data import load_dataset

    n = (cfg.n_train if split == "train" else cfg.n_test) or None
    d = cfg.dataset
    if d == "imagefolder":      # the loader finds <data_dir>/train and <data_dir>/<test_split> itself
        return load_dataset(d, split="train" if split == "train" else cfg.test_split, root=cfg.data_dir or None,
                            resolution=cfg.image_size, max_images=n)
    opts = {"shapes": {"n": n, "seed": cfg.seed, "image_size": cfg.image_size},
            "fashion-mnist": {"n": n, "image_size": cfg.image_size, "data_dir": cfg.data_dir or None},
            "digits": {"image_size": cfg.image_size}}.get(d, {})
    data = load_dataset(d, split=split, **opts)
    if n is not None and len(data) > n:
        data = data.subset(range(n))
    return data
