"""`inception-v3-compat`: the TF 2015-12-05 Inception-v3 behind every published FID, sFID and IS.

We reuse torch-fidelity's port (`FeatureExtractorInceptionV3`: its modules, its converted weights file and its
TF1-bilinear resize) and only re-sequence its forward so that one pass yields every layer the ADM evaluator
reads, and so that the `clean` resize can feed it float input. With `resize='legacy-tf'` the pool3 features are
bit-identical to torch-fidelity's on CPU for the same batches (tests/test_features_inception.py; in float32 the
batch size can change oneDNN's summation order, ~1e-6 of the layer scale).

Layers:
  pool3            (2048)  FID / KID / precision-recall: TF `pool_3:0`.
  logits_unbiased  (1008)  IS: pool3 @ W without the bias, as the original IS code and ADM (`softmax/logits/MatMul`).
  logits           (1008)  pool3 @ W + b.
  spatial          (2023)  sFID, exactly as ADM's evaluator: TF `mixed_6/conv:0`, channels [..., :7], flattened
                           NHWC, i.e. 17 * 17 * 7 values per image in (h, w, c) order.
  pool_64, pool_192, pool_768   average-pooled earlier blocks (torch-fidelity's '64', '192', '768'; pytorch-fid's
                           `--dims`): cheap low-dimensional Fréchet distances, used by the fast tests.

Which PyTorch module is TF `mixed_6/conv`? The TF graph names its Inception blocks mixed, mixed_1, ..., mixed_10:
three 35x35 blocks (Mixed_5b/5c/5d), the 35->17 reduction mixed_3 (Mixed_6a), four 17x17 blocks mixed_4..mixed_7
(Mixed_6b..Mixed_6e), then mixed_8..mixed_10 (Mixed_7a/7b/7c). Inside a block the first tower is the 1x1 conv,
scope `conv` (ops `conv/Conv2D`, `conv/batchnorm`, and the block's ReLU output named `mixed_6/conv`); the others are
`tower/conv*`, `tower_1/conv*`, `tower_2/pool` + `tower_2/conv`. Evidence: torch-fidelity's weight converter
(utils/util_convert_inception_weights.py) maps `mixed_6/conv/conv2d_params` and `mixed_6/conv/batchnorm` to
`Mixed_6d.branch1x1.conv` / `.bn`; openai/guided-diffusion#109 finds the layer as the first 192 channels of
Mixed_6d's output (torch.cat puts branch1x1 first); lavinal712/ADM-evaluation-suite-pytorch#2 fixed that port's sFID
by flattening in NHWC order, as TF does (`spatial[..., :7]` on an NHWC tensor; flattening NCHW gives other numbers).
(Ports that take Mixed_6e, i.e. mixed_7, are off by one block.) So spatial = ReLU(BN(conv1x1)) of Mixed_6d =
Mixed_6d(x)[:, :7], permuted to (N, 17, 17, 7) and flattened.

Weights are read by us, never by torch-fidelity: its constructor unpickles whatever file it is given
(`torch.load(path, weights_only=False)`), so a `--weights` file could run code. We read the file once, hash those
bytes, load them with `torch.load(weights_only=True)` (tensors only), hand torch-fidelity's constructor a stand-in
we serialised ourselves, then `load_state_dict(strict=True)` the real tensors. A file whose sha256 is not that of
torch-fidelity's release file (INCEPTION_SHA256) is used, with one warning: its FID is not comparable with
published numbers.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import os
import urllib.error
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F

from ..cache import warn
from .base import FeatureExtractor, MissingWeightsError, downloads_disabled, load_error_reason, register_extractor
from .resize import _version

__all__ = ["InceptionV3Compat", "INCEPTION_URL", "INCEPTION_FILE", "INCEPTION_SHA256", "default_inception_path",
           "load_inception_state_dict", "forced_weights_only"]

INCEPTION_URL = ("https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
                 "weights-inception-2015-12-05-6726825d.pth")
INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
# sha256 of that release file (95,628,359 bytes); the file name carries its first 8 hex digits, torch hub's convention
INCEPTION_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"

# the network in stages: after each, the layers it makes available (torch-fidelity's forward order)
_STAGES = (
    (("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "MaxPool_1"), "pool_64"),        # (N, 64, 73, 73)
    (("Conv2d_3b_1x1", "Conv2d_4a_3x3", "MaxPool_2"), "pool_192"),                        # (N, 192, 35, 35)
    (("Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d"), "spatial"),  # TF mixed_6
    (("Mixed_6e",), "pool_768"),                                                          # (N, 768, 17, 17)
    (("Mixed_7a", "Mixed_7b", "Mixed_7c"), "pool3"),                                      # (N, 2048, 8, 8)
)
_NEEDS_POOL3 = {"pool3", "logits_unbiased", "logits"}


def default_inception_path(cache_dir: str | os.PathLike | None = None) -> Path:
    """Where the weights are looked for when none are given: `cache_dir`, else torch hub's checkpoint dir
    (where torch-fidelity itself caches them, so an existing torch-fidelity download is reused)."""
    root = Path(cache_dir) if cache_dir is not None else Path(torch.hub.get_dir()) / "checkpoints"
    return root / INCEPTION_FILE


def resolve_inception_weights(weights: str | os.PathLike | None, cache_dir: str | os.PathLike | None = None,
                              allow_download: bool | None = None) -> tuple[Path, str]:
    """(local path, source) of the weights; downloads once into the cache unless downloads are disabled."""
    hint = (f"download {INCEPTION_URL} on a machine with network access and pass it with --weights FILE "
            "(Python: weights='path/to/file')")
    if weights is not None:
        p = Path(weights).expanduser()
        if not p.is_file():
            raise MissingWeightsError(f"Inception weights file {p} does not exist", hint=hint)
        return p, str(p)
    p = default_inception_path(cache_dir)
    if p.is_file():
        return p, INCEPTION_URL
    if allow_download is None:
        allow_download = not downloads_disabled()
    if not allow_download:
        raise MissingWeightsError(f"Inception weights {INCEPTION_FILE} are not at {p} and downloads are disabled "
                                  "(DLC_BENCH_OFFLINE / HF_HUB_OFFLINE)", hint=hint)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(INCEPTION_URL, str(p), progress=False)   # writes a temp file, then renames
    except (urllib.error.URLError, OSError, TimeoutError) as e:
        raise MissingWeightsError(f"Inception weights {INCEPTION_FILE} are not at {p} and downloading "
                                  f"{INCEPTION_URL} failed ({e})", hint=hint) from None
    return p, INCEPTION_URL


def _not_inception(path: Path, why: str) -> str:
    return (f"{path} is not a torch-fidelity Inception-v3 state dict ({why}); "
            f"pass the file {INCEPTION_FILE} via --weights FILE")


def load_inception_state_dict(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], str]:
    """(state dict, sha256 of the bytes it was read from): the file is read once and loaded with
    torch.load(weights_only=True), so nothing but tensors and plain containers is unpickled."""
    path = Path(path)
    data = path.read_bytes()
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:  # UnpicklingError (refused global, garbage), EOFError (empty), RuntimeError (bad zip)
        raise ValueError(_not_inception(path, load_error_reason(e))) from None
    if not (isinstance(state, Mapping) and state
            and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items())):
        raise ValueError(_not_inception(path, f"it holds a {type(state).__name__}, not a mapping of names to tensors"))
    return dict(state), hashlib.sha256(data).hexdigest()


@contextlib.contextmanager
def forced_weights_only():
    """Inside, torch.load(weights_only=False) loads as weights_only=True: torch reads TORCH_FORCE_WEIGHTS_ONLY_LOAD
    at every call (TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD, which would conflict with it, is lifted meanwhile)."""
    names = ("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")
    saved = {k: os.environ.pop(k, None) for k in names}
    os.environ[names[0]] = "1"
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _torch_fidelity_module(state: dict[str, torch.Tensor], internal_dtype: str) -> torch.nn.Module:
    """torch-fidelity's FeatureExtractorInceptionV3 holding `state` (load_state_dict(strict=True)).

    Its constructor always loads weights itself: downloads them (path None) or unpickles the path it is given with
    weights_only=False. It gets a stand-in we serialised here instead: the same names and shapes, each a broadcast
    zero (one stored element), so it neither downloads nor reads anything that came from outside; and its
    torch.load runs under `forced_weights_only` all the same."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    stand_in = io.BytesIO()
    torch.save({k: torch.zeros((), dtype=v.dtype).expand(v.shape) for k, v in state.items()}, stand_in)
    stand_in.seek(0)
    with forced_weights_only():
        net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=stand_in,
                                          feature_extractor_internal_dtype=internal_dtype)
    net.load_state_dict(state, strict=True)
    return net


@register_extractor("inception-v3-compat")
class InceptionV3Compat(FeatureExtractor):
    """TF-2015 Inception-v3 (torch-fidelity port): pool3, sFID spatial, logits."""

    name = "inception-v3-compat"
    input_size = 299
    default_resize = "legacy-tf"
    normalize = "(x - 128) / 128"
    default_layer = "pool3"
    layer_dims = {"pool3": 2048, "spatial": 17 * 17 * 7, "logits_unbiased": 1008, "logits": 1008,
                  "pool_64": 64, "pool_192": 192, "pool_768": 768}
    metric_labels = {"pool3": "fid", "spatial": "sfid"}

    def __init__(self, *, weights: str | os.PathLike | None = None, resize: str | None = None,
                 device: str | torch.device = "auto", dtype: str | torch.dtype = "float32",
                 cache_dir: str | os.PathLike | None = None, allow_download: bool | None = None):
        super().__init__(resize=resize, device=device, dtype=dtype)
        self.weights_path, self.weights_source = resolve_inception_weights(weights, cache_dir, allow_download)
        state, self.weights_sha256 = load_inception_state_dict(self.weights_path)
        try:
            net = _torch_fidelity_module(state, str(self.dtype).replace("torch.", ""))
        except (RuntimeError, KeyError, ValueError, TypeError) as e:   # missing/unexpected keys, shape mismatches
            raise ValueError(_not_inception(self.weights_path, load_error_reason(e))) from None
        if self.weights_sha256 != INCEPTION_SHA256:
            warn(f"Inception weights {self.weights_path} have sha256 {self.weights_sha256[:16]}..., not that of "
                 f"{INCEPTION_FILE} ({INCEPTION_SHA256[:16]}...): these are not the reference weights, so FID, sFID, "
                 "IS and KID from them are not comparable with published numbers")
        # torch-fidelity 0.4.0's text_to_dtype maps 'float64' to torch.float32 (helpers.py), so its module stays
        # float32 whatever internal dtype is asked for: cast it ourselves.
        self.net = net.to(device=self.device, dtype=self.dtype).eval()

    def weights_info(self) -> dict:
        return {"source": self.weights_source, "path": str(self.weights_path), "sha256": self.weights_sha256}

    def implementation(self) -> dict:
        return {**super().implementation(), "torch-fidelity": _version("torch-fidelity"),
                "module": "torch_fidelity.feature_extractor_inceptionv3.FeatureExtractorInceptionV3"}

    def _forward(self, x: torch.Tensor, layers: list[str]) -> dict[str, torch.Tensor]:
        net, n, out = self.net, x.shape[0], {}
        want = set(layers) | ({"pool3"} if _NEEDS_POOL3 & set(layers) else set())
        x = (x - 128) / 128                                      # (N, 3, 299, 299), as the TF graph does
        for modules, layer in _STAGES:
            for name in modules:
                x = getattr(net, name)(x)
            if layer == "spatial":
                if "spatial" in want:
                    # channels 0..191 of Mixed_6d are its branch1x1 (TF mixed_6/conv); ADM keeps [..., :7] of NHWC
                    out["spatial"] = x[:, :7].permute(0, 2, 3, 1).reshape(n, -1)   # (N, 17*17*7), (h, w, c) order
            elif layer == "pool3":
                out["pool3"] = torch.flatten(net.AvgPool(x), 1)                   # (N, 2048)
            elif layer in want:
                out[layer] = F.adaptive_avg_pool2d(x, 1).flatten(1)               # (N, C), as torch-fidelity
            if want <= out.keys():
                break
        if {"logits_unbiased", "logits"} & want:
            unbiased = out["pool3"].mm(net.fc.weight.T)          # (N, 1008), no bias (IS convention)
            out["logits_unbiased"] = unbiased
            out["logits"] = unbiased + net.fc.bias.unsqueeze(0)
        return out
