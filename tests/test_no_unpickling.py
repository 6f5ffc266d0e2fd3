"""Nothing the project reads runs a pickle: a payload is planted in every place weights or caches are read from.

The payload is an object whose unpickling touches a marker file (`pathlib.Path.touch`, nothing else): a file
`torch.load(weights_only=False)`, `pickle.load` or `np.load(allow_pickle=True)` would execute. It is planted as the
Inception and EfficientNet weights (Python API, `dlc-bench metrics`, `dlc-bench ref-stats`, the default cache location,
the pipeline's `eval.weights`), as the weights of a DINOv2 / VAE model directory (`pytorch_model.bin`,
`diffusion_pytorch_model.bin` beside a valid config.json), as every safetensors checkpoint (DiT, SEDD, SEM encoder,
RDM, RCG projector), as a stage-cache file (with its manifest rewritten to match, as an attacker with write access
to the cache would), as a feature-cache entry (sidecar rewritten to match), as reference statistics and as input
images. Every case asserts that the marker does not exist afterwards and that the read failed with a clean error or
recomputed. `test_payload_is_live` proves the payloads do run when unpickled unsafely, so the absence means something.
A static guard reads the source of bench/, dlc/, reports/ and toy/ for unsafe load calls.
"""
from __future__ import annotations

import ast
import io
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.cli import main
from bench.errors import UserError

from .test_features_helpers import make_inception_weights, smooth_images

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bench", "dlc", "reports", "toy")

# torch's weights-only unpickler notes the protocol of a plain pickle.dumps payload before refusing it
pytestmark = pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")


class Payload:
    """Unpickling this touches `marker` (its __reduce__ names pathlib.Path.touch)."""

    def __init__(self, marker: Path):
        self.marker = Path(marker)

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.fixture
def marker(tmp_path):
    m = tmp_path / "PAYLOAD-RAN"
    yield m
    assert not m.exists(), "a planted pickle was unpickled"


def torch_payload(path: Path, marker: Path) -> Path:
    """A torch.save'd dict whose value is the payload: what a malicious .pth / .bin looks like."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"weight": Payload(marker)}, path)
    return path


def pickle_payload(path: Path, marker: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps({"weight": Payload(marker)}))
    return path


def npy_payload(path: Path, marker: Path) -> Path:
    """An .npy holding an object array: np.load(allow_pickle=True) would run it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        np.save(f, np.array([Payload(marker)], dtype=object), allow_pickle=True)
    return path


def npz_payload(path: Path, marker: Path, keys: tuple[str, ...]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        np.savez(f, **{k: np.array([Payload(marker)], dtype=object) for k in keys})
    return path


PAYLOADS = {"torch.save": torch_payload, "pickle": pickle_payload}


def run_cli(capsys, *argv) -> tuple[int, str]:
    rc = main([str(a) for a in argv])
    return rc, capsys.readouterr().err


@pytest.fixture(scope="module")
def image_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    np.save(root / "real.npy", smooth_images(4, 16, seed=1).numpy())
    np.save(root / "fake.npy", smooth_images(4, 16, seed=2).numpy())
    return root / "real.npy", root / "fake.npy"


def test_payload_is_live(tmp_path):
    """The payloads do run when loaded unsafely: the marker checks below are not vacuous."""
    for i, (write, load) in enumerate([
            (torch_payload, lambda p: torch.load(p, weights_only=False)),
            (pickle_payload, lambda p: pickle.loads(p.read_bytes())),
            (npy_payload, lambda p: np.load(p, allow_pickle=True))]):
        m = tmp_path / f"ran-{i}"
        load(write(tmp_path / f"payload-{i}", m))
        assert m.exists()


# ---- Inception: Python API, CLI, default location, pipeline ------------------------------------------------

@pytest.mark.parametrize("kind", PAYLOADS)
def test_inception_weights_api(tmp_path, marker, kind):
    from bench.features import build_extractor

    evil = PAYLOADS[kind](tmp_path / "evil.pth", marker)
    with pytest.raises(ValueError, match="not a torch-fidelity Inception-v3 state dict"):
        build_extractor("inception-v3-compat", weights=evil, device="cpu")


def test_inception_weights_at_default_location(tmp_path, marker):
    """A payload where a download (or torch-fidelity's own cache) would put the weights."""
    from bench.features import build_extractor
    from bench.features.inception import default_inception_path

    torch_payload(default_inception_path(tmp_path), marker)
    with pytest.raises(ValueError, match="not a torch-fidelity Inception-v3 state dict"):
        build_extractor("inception-v3-compat", cache_dir=tmp_path, allow_download=False, device="cpu")


def test_inception_weights_cli_metrics(tmp_path, marker, image_files, capsys):
    real, fake = image_files
    evil = torch_payload(tmp_path / "evil.pth", marker)
    rc, err = run_cli(capsys, "metrics", "--real", real, "--fake", fake, "--features", "inception-v3-compat",
                      "--weights", evil, "--metrics", "fid", "--device", "cpu", "--no-store",
                      "--cache-dir", tmp_path / "cache", "--quiet")
    assert rc == 2 and err.startswith("error: --features inception-v3-compat:") and "Traceback" not in err
    assert "not a torch-fidelity Inception-v3 state dict" in err


def test_inception_weights_cli_ref_stats(tmp_path, marker, image_files, capsys):
    evil = pickle_payload(tmp_path / "evil.pth", marker)
    out = tmp_path / "ref.npz"
    rc, err = run_cli(capsys, "ref-stats", image_files[0], "--out", out, "--features", "inception-v3-compat",
                      "--weights", evil, "--device", "cpu", "--cache-dir", tmp_path / "cache", "--quiet")
    assert rc == 2 and err.startswith("error:") and "not a torch-fidelity Inception-v3 state dict" in err
    assert not out.exists()


def test_pipeline_eval_weights(tmp_path, marker):
    """The dlc-pipeline builds its extractor from `eval.weights` before training."""
    from types import SimpleNamespace

    from bench.experiments.dlc_pipeline import build_extractor

    evil = torch_payload(tmp_path / "evil.pth", marker)
    cfg = SimpleNamespace(features="inception-v3-compat", weights=str(evil), resize=None)
    from bench.errors import UserError

    with pytest.raises(UserError, match="not a torch-fidelity Inception-v3 state dict"):   # an input error: exit 2
        build_extractor(SimpleNamespace(device="cpu"), cfg)


def test_inception_torch_fidelity_never_reads_the_file(tmp_path, monkeypatch):
    """torch-fidelity's constructor unpickles what it is given (weights_only=False): it only ever gets our
    stand-in, an in-memory buffer, never the path of the user's file (nor None, which would download)."""
    import torch_fidelity.feature_extractor_inceptionv3 as tfi

    from bench.features import build_extractor

    seen = []
    real_init = tfi.FeatureExtractorInceptionV3.__init__

    def spy(self, *a, **k):
        seen.append(k.get("feature_extractor_weights_path"))
        real_init(self, *a, **k)

    weights = make_inception_weights(tmp_path / "inception-random.pth")
    monkeypatch.setattr(tfi.FeatureExtractorInceptionV3, "__init__", spy)
    build_extractor("inception-v3-compat", weights=weights, device="cpu")
    assert len(seen) == 1 and isinstance(seen[0], io.BytesIO)


def test_forced_weights_only(tmp_path, marker, monkeypatch):
    """torch-fidelity's own torch.load(weights_only=False) runs as weights_only=True; the environment is restored."""
    import os

    from bench.features.inception import forced_weights_only

    evil = torch_payload(tmp_path / "evil.pth", marker)
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    monkeypatch.delenv("TORCH_FORCE_WEIGHTS_ONLY_LOAD", raising=False)
    with forced_weights_only(), pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        torch.load(evil, weights_only=False)
    assert os.environ.get("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD") == "1"
    assert "TORCH_FORCE_WEIGHTS_ONLY_LOAD" not in os.environ


# ---- EfficientNet, DINOv2, VAE, and our safetensors checkpoints ------------------------------------------------

@pytest.mark.parametrize("kind", PAYLOADS)
def test_effnet_weights(tmp_path, marker, kind):
    from bench.features import build_extractor
    from dlc.encoder import build_backbone

    evil = PAYLOADS[kind](tmp_path / "evil.pth", marker)
    with pytest.raises(ValueError, match="not an EfficientNet-Lite0 state dict"):
        build_extractor("effnet-lite0", weights=evil, device="cpu")
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):      # refused, not run
        build_backbone("efficientnet-lite0", path=evil)


def _dinov2_dir(root: Path, marker: Path) -> Path:
    """A transformers model directory: a valid tiny Dinov2 config.json, weights as a pickle pytorch_model.bin."""
    from transformers import Dinov2Config

    Dinov2Config(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16, image_size=28,
                 patch_size=14).save_pretrained(root)
    torch_payload(root / "pytorch_model.bin", marker)
    return root


def test_dinov2_weights(tmp_path, marker, image_files, capsys):
    from bench.features import build_extractor
    from dlc.encoder import build_backbone

    d = _dinov2_dir(tmp_path / "dinov2", marker)
    with pytest.raises(ValueError, match="cannot load dinov2-vits14"):
        build_extractor("dinov2-vits14", weights=d, device="cpu")
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):   # transformers: weights_only
        build_backbone("dinov2", path=d)
    rc, err = run_cli(capsys, "metrics", "--real", image_files[0], "--fake", image_files[1], "--features",
                      "dinov2-vits14", "--weights", d, "--metrics", "fid", "--device", "cpu", "--no-store",
                      "--cache-dir", tmp_path / "cache", "--quiet")
    assert rc == 2 and err.startswith("error: --features dinov2-vits14:") and "Traceback" not in err


def test_vae_weights(tmp_path, marker):
    from diffusers import AutoencoderKL

    from dlc.dit import load_vae

    d = tmp_path / "vae"
    AutoencoderKL.from_config(dict(block_out_channels=(8,), down_block_types=("DownEncoderBlock2D",),
                                   up_block_types=("UpDecoderBlock2D",), latent_channels=4, norm_num_groups=4,
                                   layers_per_block=1)).save_config(d)
    torch_payload(d / "diffusion_pytorch_model.bin", marker)
    with pytest.raises(FileNotFoundError, match="could not load the VAE weights"):
        load_vae(d)


def _checkpoint_loaders():
    from dlc.baselines import load_projector, load_rdm
    from dlc.common import load_checkpoint
    from dlc.dit import load_dit
    from dlc.encoder import load_sem_encoder
    from dlc.sedd import load_sedd

    return {"checkpoint": load_checkpoint, "dit": load_dit, "sedd": load_sedd, "sem": load_sem_encoder,
            "rdm": load_rdm, "projector": load_projector}


@pytest.mark.parametrize("name", ["checkpoint", "dit", "sedd", "sem", "rdm", "projector"])
def test_safetensors_checkpoints(tmp_path, marker, name):
    """Every model checkpoint of dlc/ is safetensors: a pickle under that name is not a safetensors file."""
    from safetensors import SafetensorError

    path = torch_payload(tmp_path / "model.safetensors", marker)
    path.with_suffix(".json").write_text(json.dumps({"config": {}, "meta": {}}))
    with pytest.raises((SafetensorError, FileNotFoundError)):
        _checkpoint_loaders()[name](tmp_path / "model")


# ---- the stage cache and the feature cache ----------------------------------------------------------------------

def _rewrite_manifest(d: Path) -> None:
    """Record the planted files' sha256 in the stage manifest, as someone with write access to the cache could."""
    from bench.cache import MANIFEST
    from dlc.io import file_sha256

    meta = json.loads((d / MANIFEST).read_text())
    meta["files"] = {str(p.relative_to(d)): file_sha256(p) for p in sorted(d.rglob("*"))
                     if p.is_file() and p.name != MANIFEST}
    (d / MANIFEST).write_text(json.dumps(meta))


@pytest.mark.parametrize("plant", ["tensors.safetensors", "arrays.npz", "value.pt"])
def test_stage_cache(tmp_path, marker, capsys, plant):
    from bench.cache import Stage, StageCache, load_tree, stage_key

    cache, stage = StageCache(tmp_path), Stage("probe", code=("bench.cache",))
    key = stage_key(stage, {"n": 1})
    value = {"t": torch.arange(3.0), "a": np.arange(4), "x": 1.5}
    d = cache.store(key, value, stage.save, 0.0)
    if plant == "arrays.npz":
        npz_payload(d / plant, marker, ("a0",))
    else:
        torch_payload(d / plant, marker)
    _rewrite_manifest(d)
    hit, got = cache.load(key, load_tree)
    if plant == "value.pt":          # a file nothing reads: the stage loads from its own safe files
        assert hit and torch.equal(got["t"], value["t"]) and np.array_equal(got["a"], value["a"])
    else:                             # unreadable: rejected, so the stage is recomputed
        assert (hit, got) == (False, None) and not d.exists()
        assert "warning: cached file" in capsys.readouterr().err


def test_dlc_artifact_npy(tmp_path, marker):
    """The `codes` stage's DLC artifacts are .npy files read with np.load (allow_pickle=False, the default)."""
    from dlc.encoder import DLCArtifact

    art = DLCArtifact(tokens=torch.zeros(2, 3, dtype=torch.long), V=4)
    art.save(tmp_path / "art")
    npy_payload(tmp_path / "art" / "tokens.npy", marker)
    for mmap in (False, True):
        with pytest.raises(ValueError):
            DLCArtifact.load(tmp_path / "art", mmap=mmap)


def test_feature_cache(tmp_path, marker, capsys):
    """Feature-cache entries are stage-cache entries: a payload planted as their arrays.npz, with the manifest
    rewritten to match, is refused by np.load(allow_pickle=False) and the features are recomputed."""
    from bench.features import build_extractor, extract_features, feature_statistics_cached

    images, ext, cache = smooth_images(6, 8, seed=3), build_extractor("pixels", device="cpu"), tmp_path / "fc"
    want = extract_features(images, ext, cache=cache)
    mu, sigma, n = feature_statistics_cached(images, ext, cache=cache)[:3]
    entries = sorted((cache / "stages").glob("image-*/*/arrays.npz"))
    assert {p.parent.parent.name for p in entries} == {"image-features", "image-statistics"}
    for data in entries:
        npz_payload(data, marker, ("a0", "a1"))
        _rewrite_manifest(data.parent)
    capsys.readouterr()
    got = extract_features(images, ext, cache=cache)                        # recomputed
    for layer in want:
        np.testing.assert_array_equal(got[layer], want[layer])
    mu2, sigma2, n2 = feature_statistics_cached(images, ext, cache=cache)[:3]
    np.testing.assert_array_equal(mu2, mu)
    np.testing.assert_array_equal(sigma2, sigma)
    assert n2 == n and "unreadable" in capsys.readouterr().err


# ---- reference statistics and input images ---------------------------------------------------------------------

def test_ref_stats_npz(tmp_path, marker, image_files, capsys):
    from bench.refstats import load_ref_stats

    ref = npz_payload(tmp_path / "ref.npz", marker, ("mu", "sigma", "mu_s", "sigma_s"))
    with pytest.raises(ValueError):
        load_ref_stats(ref)
    rc, err = run_cli(capsys, "metrics", "--real", ref, "--fake", image_files[1], "--features", "pixels",
                      "--metrics", "fid", "--no-store", "--cache-dir", tmp_path / "cache", "--quiet")
    assert rc == 2 and err.startswith("error:") and "Traceback" not in err


@pytest.mark.parametrize("suffix", [".npy", ".npz"])
def test_input_images(tmp_path, marker, image_files, capsys, suffix):
    from bench.inputs import open_images

    evil = (npy_payload(tmp_path / "evil.npy", marker) if suffix == ".npy"
            else npz_payload(tmp_path / "evil.npz", marker, ("arr_0",)))
    with pytest.raises((ValueError, UserError)):
        open_images(evil)
    for side in ("--real", "--fake"):
        other = image_files[1] if side == "--real" else image_files[0]
        argv = ["--real", evil, "--fake", other] if side == "--real" else ["--real", other, "--fake", evil]
        rc, err = run_cli(capsys, "metrics", *argv, "--features", "pixels", "--metrics", "fid", "--no-store",
                          "--cache-dir", tmp_path / "cache", "--quiet")
        assert rc == 2 and err.startswith("error:") and "Traceback" not in err


# ---- static guard: no unsafe load call in our source --------------------------------------------------------------

def _dotted(node: ast.expr) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts))


def _kw(call: ast.Call, name: str):
    for k in call.keywords:
        if k.arg == name:
            return k.value.value if isinstance(k.value, ast.Constant) else k.value
    return None


def unsafe_loads(source: str) -> list[tuple[int, str]]:
    """(line, call) of each load call that may unpickle: torch.load without a literal weights_only=True,
    np.load with allow_pickle not literally False/absent, any pickle/dill/cloudpickle/joblib load, torch.hub loaders,
    and any literal weights_only=False / allow_pickle=True."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        last = name.rsplit(".", 1)[-1]
        if name.endswith("torch.load") or last == "load_state_dict_from_url":
            bad = _kw(node, "weights_only") is not True
        elif name in ("np.load", "numpy.load"):
            bad = _kw(node, "allow_pickle") not in (None, False)
        elif name.split(".")[0] in ("pickle", "dill", "cloudpickle", "joblib", "_pickle") and last.startswith("load"):
            bad = True
        elif name in ("torch.hub.load", "torch.jit.load") or last == "Unpickler":
            bad = True
        else:
            bad = _kw(node, "weights_only") is False or _kw(node, "allow_pickle") is True
        if bad:
            found.append((node.lineno, name))
    return found


def test_static_guard_detects_unsafe_calls():
    src = ("torch.load(p)\ntorch.load(p, weights_only=False)\ntorch.load(p, weights_only=flag)\n"
           "np.load(p, allow_pickle=True)\npickle.loads(b)\nx.from_pretrained(p, weights_only=False)\n"
           "torch.hub.load_state_dict_from_url(u)\n"
           "torch.load(p, map_location='cpu', weights_only=True)\nnp.load(p, allow_pickle=False)\nnp.load(p)\n")
    assert [line for line, _ in unsafe_loads(src)] == [1, 2, 3, 4, 5, 6, 7]


def test_no_unsafe_load_in_source():
    files = [p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))]
    assert len(files) > 50
    bad = [f"{p.relative_to(ROOT)}:{line}: {call}" for p in files for line, call in unsafe_loads(p.read_text())]
    assert not bad, "calls that may unpickle:\n" + "\n".join(bad)
