"""`bench.evaluate`: the one evaluation path. Rows equal the registry computed directly (bit for bit), names and
directions come from the registry, precomputed features and images give the same numbers, errors are ValueErrors."""
from __future__ import annotations

import numpy as np
import pytest

from bench.evaluate import evaluate, resolve_metrics, run_evaluation
from bench.features import build_extractor
from bench.metrics import METRICS, compute_metrics, metric_ci

from .test_features_helpers import smooth_images

pytestmark = pytest.mark.filterwarnings("ignore:.*covariance is rank-deficient:RuntimeWarning")

PIPELINE = ["fd", "precision", "recall", "density", "coverage", "vendi"]


@pytest.fixture(scope="module")
def feats():
    rng = np.random.default_rng(0)
    return rng.normal(size=(80, 16)).astype(np.float32), (rng.normal(size=(70, 16)) + 0.3).astype(np.float32)


def test_precomputed_features_bit_identical_to_compute_metrics(feats):
    real_f, fake_f = feats
    ext = build_extractor("pixels")
    layer = ext.default_layer
    labels = {"variant": "dlc", "seed": 3, "features": "pixels"}
    rows = evaluate(real={layer: real_f}, fake={layer: fake_f}, extractor=ext, metrics=PIPELINE, bootstrap=0, seed=3,
                    labels=labels)
    ref = compute_metrics(PIPELINE, real=real_f, fake=fake_f)
    assert [r["metric"] for r in rows] == [ext.metric_label(), *PIPELINE[1:]]
    for r, key in zip(rows, PIPELINE):
        assert r["value"] == ref[key]                                          # bit-identical
        assert r["higher_is_better"] is METRICS.get(key).higher_is_better
        assert r["n"] == 70 and r["ci_low"] is None and r["ci_high"] is None
        assert {k: r[k] for k in labels} == labels
    assert list(rows[0]) == ["metric", "value", "ci_low", "ci_high", "n", "higher_is_better", *labels]


def test_bootstrap_ci_on_fd_as_metric_ci(feats):
    real_f, fake_f = feats
    ext = build_extractor("pixels")
    rows = evaluate(real={"pixels": real_f}, fake={"pixels": fake_f}, extractor=ext, metrics=["fd", "vendi"],
                    bootstrap=20, seed=5)
    c = metric_ci("fd", real=real_f, fake=fake_f, n_resamples=20, seed=5)
    assert rows[0]["ci_low"] == pytest.approx(c.low, rel=1e-7) and rows[0]["ci_high"] == pytest.approx(c.high, rel=1e-7)
    assert rows[0]["value"] == c.value       # the fast exact bootstrap (fd_bootstrap_ci) draws the same resamples
    assert rows[1]["ci_low"] is None


def test_images_and_their_features_give_the_same_rows():
    ext = build_extractor("pixels")
    real, fake = smooth_images(30, 8, seed=1), smooth_images(30, 8, seed=2, shift=20)
    names = ["fid", "kid", "pr", "vendi"]
    from_images = run_evaluation(real, fake, extractor=ext, metrics=names)
    from_feats = evaluate(ext.extract(real), ext.extract(fake), extractor=ext, metrics=names)
    assert from_images.rows == from_feats
    assert [r["metric"] for r in from_feats] == ["fd_pixels", "kid", "kid_std", "precision", "recall", "vendi"]
    assert from_images.layers == ["pixels"] * 6 and from_images.keys[0] == "fd"
    assert from_images.inputs["n_real"] == 30 and from_images.inputs["fake_content_sha256"]


def test_names_resolve_through_the_registry():
    assert [s.key for s in resolve_metrics(["pr", "dc", "fid", "fd"])] == ["precision", "recall", "density",
                                                                           "coverage", "fd"]
    assert [s.key for s in resolve_metrics(["is"])] == ["is_adm", "is_fidelity", "is_fidelity_std"]
    with pytest.raises(ValueError, match="Did you mean 'kid'"):
        resolve_metrics(["kdi"])
    with pytest.raises(ValueError, match="linear probes need labels"):
        resolve_metrics(["probe_top1"])


def test_errors_are_value_errors(feats):
    real_f, fake_f = feats
    ext = build_extractor("pixels")
    with pytest.raises(ValueError, match="'precision' needs at least 4 samples, fake has 3"):
        evaluate({"pixels": real_f}, {"pixels": fake_f[:3]}, extractor=ext, metrics=["pr"])
    with pytest.raises(ValueError, match="lack layer 'pixels'"):
        evaluate({"pool3": real_f}, {"pixels": fake_f}, extractor=ext, metrics=["fd"])
    with pytest.raises(ValueError, match="needs the layer 'spatial'"):
        evaluate({"pixels": real_f}, {"pixels": fake_f}, extractor=ext, metrics=["sfid"])
    with pytest.raises(ValueError, match="need real images or features"):
        evaluate(None, {"pixels": fake_f}, extractor=ext, metrics=["fd"])
    rows = evaluate(None, {"pixels": fake_f}, extractor=ext, metrics=["vendi"])   # fake-only: no real side needed
    assert rows[0]["metric"] == "vendi"
