"""dlc.data: shapes (determinism, factor labels measured from pixels, held-out combinations), Fashion-MNIST idx
files (real Debian copy and tiny files written here), scikit-learn digits, image folders with the ADM centre crop
(compared with PIL operations spelled out step by step), the registry and bad inputs."""
import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dlc.data import (BACKGROUNDS, COLOURS, DATASETS, SHAPES, SIZES, ImageData, center_crop_arr, load_dataset,
                      read_idx)

FMNIST = Path("/usr/share/datasets/fashion-mnist")


#################################################################################
#                                    Shapes                                     #
#################################################################################

@pytest.fixture(scope="module")
def shapes():
    return load_dataset("shapes", n=3000, seed=3)


def test_shapes_container(shapes):
    assert isinstance(shapes, ImageData)
    assert shapes.images.shape == (3000, 3, 32, 32) and shapes.images.dtype == torch.uint8
    assert shapes.labels.dtype == torch.long and torch.equal(shapes.labels, shapes.factors["shape"])
    assert shapes.class_names == list(SHAPES)
    assert set(shapes.factors) == {"shape", "colour", "size", "x", "y", "background"}
    for f, v in shapes.factors.items():
        assert v.dtype == torch.long and v.min() >= 0 and v.max() < len(shapes.factor_values[f])
        assert len(torch.unique(v)) == len(shapes.factor_values[f])        # every value occurs
    img, lab = shapes.dataset[5]
    assert torch.equal(img, shapes.images[5]) and lab == int(shapes.labels[5])


def test_shapes_deterministic_per_seed_and_split():
    a = load_dataset("shapes", n=200, seed=1)
    b = load_dataset("shapes", n=200, seed=1)
    c = load_dataset("shapes", n=200, seed=2)
    t = load_dataset("shapes", split="test", n=200, seed=1)
    assert torch.equal(a.images, b.images) and all(torch.equal(a.factors[k], b.factors[k]) for k in a.factors)
    assert not torch.equal(a.images, c.images)
    assert not torch.equal(a.images, t.images)
    assert torch.equal(load_dataset("shapes", n=50, seed=1, image_size=48).images,
                       load_dataset("shapes", n=50, seed=1, image_size=48).images)


def test_shapes_pixels_match_labels(shapes):
    """Measured from the pixels: background = corner colour, every other pixel = the labelled shape colour,
    horizontal centroid = the labelled x position, rings have a hole, width grows with the size label."""
    x, f = shapes.images, shapes.factors
    bg = torch.tensor(list(BACKGROUNDS.values()), dtype=torch.uint8)[f["background"]]
    fg = torch.tensor(list(COLOURS.values()), dtype=torch.uint8)[f["colour"]]
    assert torch.equal(x[:, :, 0, 0], bg) and torch.equal(x[:, :, -1, -1], bg)
    is_bg = (x == bg[:, :, None, None]).all(1)                            # (N, H, W)
    is_fg = (x == fg[:, :, None, None]).all(1)
    assert (is_bg | is_fg).all()                                          # two colours only, no antialiasing
    area = is_fg.sum((1, 2))
    assert (area >= 6).all()
    cols = torch.arange(32, dtype=torch.float32) + 0.5
    cx = (is_fg.float().sum(1) * cols).sum(1) / area                      # horizontal centroid in pixels
    expected = torch.linspace(0.32, 0.68, 3)[f["x"]] * 32
    assert (cx - expected).abs().max() < 0.75
    centre_px = is_fg[torch.arange(len(x)), (torch.linspace(0.32, 0.68, 3)[f["y"]] * 32).long(),
                      (torch.linspace(0.32, 0.68, 3)[f["x"]] * 32).long()]
    ring = f["shape"] == SHAPES.index("ring")
    assert not centre_px[ring].any() and centre_px[~ring & (f["shape"] != SHAPES.index("triangle"))].all()
    width = is_fg.any(1).sum(1).float()
    for s in range(len(SHAPES)):
        means = [width[(f["shape"] == s) & (f["size"] == k)].mean().item() for k in range(len(SIZES))]
        assert means[0] < means[1] < means[2], (SHAPES[s], means)


def test_shapes_holdout_combinations():
    hold = [{"shape": "circle", "colour": "red"}, {"size": "large", "background": 3}]
    train = load_dataset("shapes", n=4000, seed=0, holdout=hold)
    test = load_dataset("shapes", split="test", n=1000, seed=0, holdout=hold)
    held = load_dataset("shapes", split="holdout", n=1000, seed=0, holdout=hold)

    def matches(d):
        f = d.factors
        a = (f["shape"] == SHAPES.index("circle")) & (f["colour"] == list(COLOURS).index("red"))
        b = (f["size"] == list(SIZES).index("large")) & (f["background"] == 3)
        return a, b

    for d in (train, test):
        a, b = matches(d)
        assert not (a | b).any()
    a, b = matches(held)
    assert (a | b).all() and a.any() and b.any()
    # everything else is still covered: 6 × 6 shape/colour pairs minus the held-out one
    pairs = set(zip(train.factors["shape"].tolist(), train.factors["colour"].tolist()))
    assert len(pairs) == 35
    assert train.info["holdout"] == [{"shape": "circle", "colour": "red"}, {"size": "large", "background": "navy"}]


def test_shapes_bad_inputs():
    with pytest.raises(ValueError, match="Did you mean 'colour'"):
        load_dataset("shapes", n=10, holdout=[{"color": "red"}])
    with pytest.raises(ValueError, match="Did you mean 'circle'"):
        load_dataset("shapes", n=10, holdout=[{"shape": "circel"}])
    with pytest.raises(ValueError, match="out of range"):
        load_dataset("shapes", n=10, holdout=[{"size": 7}])
    with pytest.raises(ValueError, match="every combination"):
        load_dataset("shapes", n=10, holdout=[{"shape": s} for s in SHAPES])
    with pytest.raises(ValueError, match="no holdout combinations"):
        load_dataset("shapes", split="holdout", n=10)
    with pytest.raises(ValueError, match="split"):
        load_dataset("shapes", split="val", n=10)


def test_registry_did_you_mean_and_options():
    assert {"shapes", "fashion-mnist", "digits", "imagefolder"} <= set(DATASETS.names())
    with pytest.raises(ValueError, match="Did you mean 'fashion-mnist'"):
        load_dataset("fashion_mnist")
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['size'\].*image_size"):
        load_dataset("shapes", size=32)


#################################################################################
#                                Fashion-MNIST                                  #
#################################################################################

def _write_idx(path: Path, arr: np.ndarray, gz: bool) -> None:
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(struct.pack(">i", d) for d in arr.shape)
    data = header + arr.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if gz else data)


@pytest.mark.parametrize("gz", [True, False])
def test_fashion_mnist_tiny_idx_files(tmp_path, gz):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    labs = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    sfx = ".gz" if gz else ""
    _write_idx(tmp_path / f"t10k-images-idx3-ubyte{sfx}", imgs, gz)
    _write_idx(tmp_path / f"t10k-labels-idx1-ubyte{sfx}", labs, gz)
    d = load_dataset("fashion-mnist", split="test", data_dir=tmp_path)
    assert d.images.shape == (5, 3, 28, 28) and d.images.dtype == torch.uint8
    for c in range(3):
        assert np.array_equal(d.images[:, c].numpy(), imgs)
    assert d.labels.tolist() == [3, 1, 4, 1, 5] and d.info["grayscale_to_rgb"] is True
    assert d.class_names[9] == "Ankle boot"
    assert load_dataset("fashion-mnist", split="test", data_dir=tmp_path, image_size=32).images.shape == (5, 3, 32, 32)


def test_idx_bad_files(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x08\x03\x00\x00garbage")
    with pytest.raises(ValueError, match="not an idx file"):
        read_idx(tmp_path / "bad")
    _write_idx(tmp_path / "short", np.zeros((4, 2, 2), np.uint8), gz=False)
    (tmp_path / "short").write_bytes((tmp_path / "short").read_bytes()[:-3])
    with pytest.raises(ValueError, match="truncated"):
        read_idx(tmp_path / "short")
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
        load_dataset("fashion-mnist", data_dir=tmp_path / "nowhere")


@pytest.mark.skipif(not (FMNIST / "train-images-idx3-ubyte.gz").exists(),
                    reason="Debian package dataset-fashion-mnist is not installed (/usr/share/datasets/fashion-mnist)")
def test_fashion_mnist_real_files():
    d = load_dataset("fashion-mnist", split="test")
    assert d.images.shape == (10000, 3, 28, 28)
    raw = np.frombuffer(gzip.open(FMNIST / "t10k-images-idx3-ubyte.gz").read(), np.uint8, offset=16)
    assert np.array_equal(d.images[:, 1].numpy().reshape(-1), raw)
    lab = np.frombuffer(gzip.open(FMNIST / "t10k-labels-idx1-ubyte.gz").read(), np.uint8, offset=8)
    assert np.array_equal(d.labels.numpy(), lab)
    assert np.bincount(lab).tolist() == [1000] * 10                     # Fashion-MNIST's balanced test set
    assert len(load_dataset("fashion-mnist", split="train", n=100)) == 100


#################################################################################
#                                    digits                                     #
#################################################################################

def test_digits():
    from sklearn.datasets import load_digits

    sk = load_digits()
    tr, te = load_dataset("digits"), load_dataset("digits", split="test")
    assert len(tr) + len(te) == len(sk.target) and tr.images.shape[1:] == (3, 8, 8)
    idx = np.arange(len(sk.target))
    assert np.array_equal(te.labels.numpy(), sk.target[idx % 5 == 4])
    assert np.array_equal(tr.images[:, 0].numpy(), np.rint(sk.images[idx % 5 != 4] * 255 / 16).astype(np.uint8))
    assert load_dataset("digits", image_size=16).images.shape[-1] == 16


#################################################################################
#                         Image folders + ADM centre crop                       #
#################################################################################

def _synthetic(w: int, h: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    arr = np.stack([(xx * 255 // max(w - 1, 1)), (yy * 255 // max(h - 1, 1)), rng.integers(0, 256, (h, w))], -1)
    return Image.fromarray(arr.astype(np.uint8))


@pytest.mark.parametrize("size,res,steps", [
    ((300, 200), 64, [("box", (150, 100)), ("bicubic", (96, 64)), ("crop", 16, 0)]),
    ((90, 70), 64, [("bicubic", (82, 64)), ("crop", 9, 0)]),
    ((1000, 700), 64, [("box", (500, 350)), ("box", (250, 175)), ("box", (125, 87)), ("bicubic", (92, 64)),
                       ("crop", 14, 0)]),
    ((200, 400), 48, [("box", (100, 200)), ("box", (50, 100)), ("bicubic", (48, 96)), ("crop", 0, 24)]),
])
def test_adm_center_crop_matches_pil_steps(size, res, steps):
    """The ADM recipe spelled out with the resulting sizes worked out by hand for each case."""
    img = _synthetic(*size)
    ref = img
    for op in steps:
        if op[0] == "box":
            ref = ref.resize(op[1], resample=Image.BOX)
        elif op[0] == "bicubic":
            ref = ref.resize(op[1], resample=Image.BICUBIC)
        else:
            ref = np.asarray(ref)[op[2]:op[2] + res, op[1]:op[1] + res]
    out = center_crop_arr(img, res)
    assert out.shape == (res, res, 3)
    assert np.array_equal(out, ref)


def _tree(root: Path) -> None:
    (root / "train" / "b_dog").mkdir(parents=True)
    (root / "train" / "a_cat" / "sub").mkdir(parents=True)
    (root / "val" / "a_cat").mkdir(parents=True)
    _synthetic(120, 80, 1).save(root / "train" / "a_cat" / "x1.png")
    _synthetic(64, 64, 2).convert("L").save(root / "train" / "a_cat" / "sub" / "x2.JPG", quality=95)
    _synthetic(50, 90, 3).convert("RGBA").save(root / "train" / "b_dog" / "y1.png")
    (root / "train" / "b_dog" / "notes.txt").write_text("not an image")
    _synthetic(40, 40, 4).save(root / "val" / "a_cat" / "v.png")


def test_imagefolder_lazy_with_adm_crop(tmp_path):
    _tree(tmp_path)
    d = load_dataset("imagefolder", root=tmp_path, resolution=32)
    assert d.lazy and len(d) == 3 and d.class_names == ["a_cat", "b_dog"]
    assert d.labels.tolist() == [0, 0, 1]
    img, lab = d.dataset[2]
    ref = center_crop_arr(Image.open(tmp_path / "train" / "b_dog" / "y1.png").convert("RGB"), 32)
    assert lab == 1 and img.dtype == torch.uint8 and np.array_equal(img.permute(1, 2, 0).numpy(), ref)
    gray = d.dataset[0][0]                                                # a_cat/sub/x2.JPG sorts first
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])   # grayscale → RGB
    assert d.images.shape == (3, 3, 32, 32)
    assert not d.lazy
    val = load_dataset("imagefolder", split="test", root=tmp_path, resolution=16)
    assert len(val) == 1 and val.images.shape == (1, 3, 16, 16)
    flat = load_dataset("imagefolder", root=tmp_path / "val" / "a_cat", resolution=8)
    assert len(flat) == 1 and flat.class_names == ["a_cat"]


def test_the_harness_reads_both_splits_of_an_image_folder(tmp_path):
    """bench.stages.data.load_split on root/train and root/<test_split> (a held-out split used to resolve to
    root/test/test and fail: every imagefolder run, the paper presets', stopped at its held-out images)."""
    from bench.stages.data import DataConfig, load_split

    _tree(tmp_path)
    for test_split in ("test", "val"):          # 'test' finds val/ too, as the loader's candidates say
        cfg = DataConfig(dataset="imagefolder", data_dir=str(tmp_path), image_size=16, n_train=0, n_test=0,
                         test_split=test_split)
        assert len(load_split(cfg, "train")) == 3 and len(load_split(cfg, "test")) == 1
    two = DataConfig(dataset="imagefolder", data_dir=str(tmp_path), image_size=16, n_train=2, n_test=0)
    assert len(load_split(two, "train")) == 2


def test_imagefolder_bad_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_dataset("imagefolder", root=tmp_path / "missing")
    with pytest.raises(ValueError, match="root="):
        load_dataset("imagefolder")
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no images"):
        load_dataset("imagefolder", root=tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="'test' or 'val'"):
        load_dataset("imagefolder", split="test", root=tmp_path / "empty")
    (tmp_path / "bad" / "c").mkdir(parents=True)
    (tmp_path / "bad" / "c" / "broken.jpg").write_bytes(b"not a jpeg")
    d = load_dataset("imagefolder", root=tmp_path / "bad", resolution=8)
    with pytest.raises(ValueError, match="broken.jpg"):
        d.dataset[0]
