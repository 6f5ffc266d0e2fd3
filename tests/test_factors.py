"""Conditioning-fidelity metrics: render read-out of shapes, the factor classifier, Wilson agreement, pixel MSE.

References are independent: scipy's cdist for the nearest search, scipy's binomtest / a hand value
for the Wilson interval, plain numpy for the MSEs, and the shapes generator's own labels for the read-out.
"""
from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

from bench.errors import UserError
from bench.metrics.factors import (JOINT, FactorClassifier, FactorReadout, ShapesRenderReader, _nearest,
                                   agreement_rows, factor_agreement, nearest_real_mse, paired_mse, wilson_interval)
from bench.schema import METRIC_COLUMNS, rows_to_csv
from dlc.data import BACKGROUNDS, COLOURS, load_dataset


@pytest.fixture(scope="module")
def reader():
    return ShapesRenderReader(image_size=32, n_positions=3)


@pytest.fixture(scope="module")
def real():
    return load_dataset("shapes", n=300, seed=1, image_size=32)


def _unit(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float64) / 127.5 - 1.0


# ---------------------------------------------------------------------------------------------------------
# Render read-out
# ---------------------------------------------------------------------------------------------------------


def test_renders_are_all_combinations_and_distinct(reader):
    assert reader.renders.shape == (3888, 3 * 32 * 32) and reader.renders.dtype == np.uint8
    assert len({tuple(c) for c in reader.combinations}) == 3888
    assert reader.ambiguous == ()
    assert reader.chance == {"shape": 1 / 6, "colour": 1 / 6, "size": 1 / 3, "x": 1 / 3, "y": 1 / 3,
                             "background": 1 / 4}
    assert "shape" in ShapesRenderReader(image_size=16).ambiguous  # at 16 px some combinations render alike


def test_real_images_are_read_back_exactly(reader, real):
    out = reader.read(real.images)
    assert set(out.factors) == set(real.factors)
    np.testing.assert_array_equal(out.distance, np.zeros(300))  # shapes images are exact renders
    agree = factor_agreement(out, real.factors)
    for f in real.factors:
        np.testing.assert_array_equal(out.factors[f], real.factors[f].numpy())
        assert agree[f].value == 1.0 and agree[f].n == 300
    assert agree[JOINT].value == 1.0
    assert agree[JOINT].chance == pytest.approx(1 / 3888)
    # ADM layout (N, H, W, 3) numpy reads the same
    nhwc = reader.read(real.images.permute(0, 2, 3, 1).numpy())
    for f in real.factors:
        np.testing.assert_array_equal(nhwc.factors[f], out.factors[f])


def test_recoloured_foreground_changes_only_colour_of_those_images(reader, real):
    imgs = real.images.numpy().copy()                                     # (N, 3, H, W)
    col, bg = real.factors["colour"].numpy(), real.factors["background"].numpy()
    palette, backs = np.array(list(COLOURS.values())), np.array(list(BACKGROUNDS.values()))
    tampered = np.arange(0, 300, 7)
    new_col = (col + 1 + np.arange(300) % 5) % 6                            # always another palette colour
    for i in tampered:
        fg = (imgs[i] != backs[bg[i]][:, None, None]).any(0)                 # (H, W) shape pixels
        assert fg.any()
        imgs[i][:, fg] = palette[new_col[i]][:, None]
    out = reader.read(imgs)
    changed = np.flatnonzero(out.factors["colour"] != col)
    np.testing.assert_array_equal(changed, tampered)
    np.testing.assert_array_equal(out.factors["colour"][tampered], new_col[tampered])
    for f in ("shape", "size", "x", "y", "background"):
        np.testing.assert_array_equal(out.factors[f], real.factors[f].numpy())
    np.testing.assert_array_equal(out.distance, np.zeros(300))             # still an exact render
    agree = factor_agreement(out, real.factors)
    assert agree["colour"].value == pytest.approx(1 - tampered.size / 300)
    assert agree["shape"].value == 1.0


def test_changed_background_changes_only_background(reader, real):
    imgs = real.images.numpy().copy()
    bg = real.factors["background"].numpy()
    backs = np.array(list(BACKGROUNDS.values()))
    tampered = np.array([3, 50, 51, 299])
    for i in tampered:
        m = (imgs[i] == backs[bg[i]][:, None, None]).all(0)
        imgs[i][:, m] = backs[(bg[i] + 2) % 4][:, None]
    out = reader.read(torch.from_numpy(imgs))
    np.testing.assert_array_equal(np.flatnonzero(out.factors["background"] != bg), tampered)
    np.testing.assert_array_equal(out.factors["background"][tampered], (bg[tampered] + 2) % 4)
    np.testing.assert_array_equal(out.factors["colour"], real.factors["colour"].numpy())


def test_noise_images_agree_at_chance(reader, real):
    rng = np.random.default_rng(3)
    noise = rng.integers(0, 256, size=(300, 3, 32, 32), dtype=np.uint8)
    out = reader.read(noise)
    agree = factor_agreement(out, real.factors)
    for f, a in agree.items():
        if f != JOINT:
            assert abs(a.value - a.chance) < 0.12, (f, a)
    assert agree[JOINT].value < 0.02
    assert out.distance.min() > 0.1                                          # far from every render


def test_read_1000_images_is_fast_on_one_core(reader):
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(4)
    idx = rng.integers(0, 3888, size=1000)
    imgs = reader.renders[idx].reshape(1000, 3, 32, 32)
    with threadpool_limits(limits=1):
        t = time.perf_counter()
        out = reader.read(imgs)
        elapsed = time.perf_counter() - t
    assert elapsed < 5.0
    for i, f in enumerate(reader.factor_names):
        np.testing.assert_array_equal(out.factors[f], reader.combinations[idx, i])


# ---------------------------------------------------------------------------------------------------------
# Nearest search and pixel distances
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk", [1, 7, 16, 1000])
def test_chunked_nearest_equals_brute_force_cdist(chunk):
    rng = np.random.default_rng(chunk)
    q = rng.integers(0, 256, size=(37, 48), dtype=np.uint8)
    r = rng.integers(0, 256, size=(53, 48), dtype=np.uint8)
    r[11] = q[5]                                                             # an exact copy
    full = cdist(_unit(q), _unit(r), "sqeuclidean") / 48                     # (37, 53) MSE
    idx, mse = _nearest(q, r, chunk)
    np.testing.assert_array_equal(idx, full.argmin(1))
    np.testing.assert_allclose(mse, full.min(1), rtol=1e-6, atol=1e-9)
    assert idx[5] == 11 and mse[5] == 0.0
    nchw = lambda a: a.reshape(-1, 3, 2, 8)                                 # (N, 3, H, W), unambiguous layout
    np.testing.assert_allclose(nearest_real_mse(nchw(q), nchw(r), chunk=chunk), full.min(1), rtol=1e-6, atol=1e-9)


def test_paired_mse_against_numpy():
    rng = np.random.default_rng(5)
    a = rng.integers(0, 256, size=(6, 3, 8, 8), dtype=np.uint8)
    b = rng.integers(0, 256, size=(6, 3, 8, 8), dtype=np.uint8)
    ref = ((_unit(a) - _unit(b)) ** 2).mean(axis=(1, 2, 3))
    np.testing.assert_allclose(paired_mse(a, b), ref, rtol=1e-6)
    np.testing.assert_allclose(paired_mse(torch.from_numpy(a), b.transpose(0, 2, 3, 1)), ref, rtol=1e-6)
    np.testing.assert_array_equal(paired_mse(a, a), np.zeros(6))
    black, white = np.zeros((1, 3, 8, 8), np.uint8), np.full((1, 3, 8, 8), 255, np.uint8)
    assert paired_mse(black, white)[0] == pytest.approx(4.0)                 # (-1 − 1)² in [-1, 1] units


# ---------------------------------------------------------------------------------------------------------
# Wilson interval, agreement, rows
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("k,n", [(0, 10), (8, 10), (10, 10), (1, 3), (467, 500)])
def test_wilson_matches_scipy_binomtest(k, n):
    from scipy.stats import binomtest

    ref = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert wilson_interval(k, n) == pytest.approx((ref.low, ref.high), abs=1e-12)
    ref90 = binomtest(k, n).proportion_ci(confidence_level=0.9, method="wilson")
    assert wilson_interval(k, n, 0.9) == pytest.approx((ref90.low, ref90.high), abs=1e-12)


def test_wilson_hand_value():
    # 8 of 10, z = 1.959964: centre (0.8 + z²/20)/(1 + z²/10) = 0.71675, half-width 0.22658
    assert wilson_interval(8, 10) == pytest.approx((0.490162, 0.943318), abs=1e-6)
    z = 1.959963984540054
    assert wilson_interval(0, 25)[1] == pytest.approx(z * z / (25 + z * z), rel=1e-12)  # k = 0: upper z²/(n + z²)


def test_agreement_counts_and_rows():
    read = FactorReadout(factors={"a": np.array([0, 1, 2, 0]), "b": np.array([1, 1, 0, 0])},
                         chance={"a": 1 / 3, "b": 0.5})
    agree = factor_agreement(read, {"a": np.array([0, 1, 1, 0]), "b": torch.tensor([1, 0, 0, 0])})
    assert agree["a"].value == 0.75 and agree["b"].value == 0.75 and agree[JOINT].value == 0.5
    assert (agree["a"].ci_low, agree["a"].ci_high) == wilson_interval(3, 4)
    assert agree[JOINT].chance == pytest.approx(1 / 6)
    assert factor_agreement(read, {"a": np.array([0, 1, 1, 0])}, chance={"a": 0.9})["a"].chance == 0.9
    assert set(factor_agreement(read, {"a": np.array([0, 1, 1, 0])})) == {"a"}   # no joint for one factor
    rows = agreement_rows(agree, variant="dlc", seed=0)
    assert [r["factor"] for r in rows] == ["a", "b", JOINT]
    r = rows[0]
    assert list(r)[:len(METRIC_COLUMNS)] == list(METRIC_COLUMNS)
    assert r == {"metric": "factor_agreement", "value": 0.75, "ci_low": agree["a"].ci_low,
                 "ci_high": agree["a"].ci_high, "n": 4, "higher_is_better": True, "factor": "a", "chance": 1 / 3,
                 "variant": "dlc", "seed": 0}
    header = "metric,value,ci_low,ci_high,n,higher_is_better,factor,chance,variant,seed"
    assert rows_to_csv(rows).splitlines()[0] == header


# ---------------------------------------------------------------------------------------------------------
# Factor classifier
# ---------------------------------------------------------------------------------------------------------


def _separable(n: int, seed: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    fa, fb = rng.integers(0, 3, n), rng.integers(0, 4, n)
    x = np.concatenate([np.eye(3)[fa] * 4, np.eye(4)[fb] * 4], 1) + rng.normal(scale=0.3, size=(n, 7))
    return x, {"a": fa, "b": fb}


def test_classifier_on_separable_features_reaches_ceiling_one():
    x, y = _separable(300, 0)
    clf = FactorClassifier().fit(x, y, val_fraction=0.2, seed=0)
    assert clf.ceiling["a"] >= 0.98 and clf.ceiling["b"] >= 0.98
    train = np.random.default_rng(0).permutation(300)[60:]          # the split fit draws (seed 0, 60 held out)
    assert clf.chance["a"] == pytest.approx(np.bincount(y["a"][train]).max() / 240)
    x2, y2 = _separable(200, 1)
    out = clf.read(x2)
    assert out.distance is None and out.ceiling == clf.ceiling
    agree = factor_agreement(out, y2)
    assert agree["a"].value >= 0.97 and agree["b"].value >= 0.97
    assert agree["a"].ceiling == clf.ceiling["a"]
    assert "ceiling" in agreement_rows(agree)[0]


def test_classifier_on_random_features_is_at_chance():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(400, 5)), {"a": rng.integers(0, 3, 400)}
    clf = FactorClassifier().fit(x, y, val_fraction=0.3, seed=1)
    assert abs(clf.ceiling["a"] - clf.chance["a"]) < 0.15
    assert 0.3 < clf.chance["a"] < 0.42                                      # majority rate of 3 uniform values


# ---------------------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------------------


def test_bad_input(reader, real):
    imgs = real.images[:4]
    with pytest.raises(UserError, match="4-D"):
        reader.read(imgs[0])                                                 # one image, 3-D
    with pytest.raises(UserError, match="uint8"):
        reader.read(imgs.float() / 255)
    with pytest.raises(UserError, match="uint8"):
        paired_mse(imgs.numpy().astype(np.float32) * 2, imgs)
    with pytest.raises(UserError, match="renders are"):
        reader.read(torch.zeros(2, 3, 16, 16, dtype=torch.uint8))
    with pytest.raises(UserError, match="empty"):
        reader.read(torch.zeros(0, 3, 32, 32, dtype=torch.uint8))
    out = reader.read(imgs)
    with pytest.raises(UserError, match="3 labels for 4 images"):
        factor_agreement(out, {"colour": np.zeros(3, dtype=int)})
    with pytest.raises(UserError, match=r"unknown factor 'color'.*Did you mean 'colour'"):
        factor_agreement(out, {"color": np.zeros(4, dtype=int)})
    with pytest.raises(UserError, match="integer labels"):
        factor_agreement(out, {"colour": np.zeros(4)})
    with pytest.raises(UserError, match="paired images differ"):
        paired_mse(imgs, real.images[:5])
    with pytest.raises(UserError, match="fake images are"):
        nearest_real_mse(imgs, torch.zeros(2, 3, 16, 16, dtype=torch.uint8))
    with pytest.raises(UserError, match="chunk"):
        nearest_real_mse(imgs, imgs, chunk=0)
    with pytest.raises(UserError, match="set by agreement_rows"):
        agreement_rows(factor_agreement(out, {"shape": real.factors["shape"][:4]}), factor="x")
    clf = FactorClassifier()
    with pytest.raises(UserError, match="before fit"):
        clf.read(np.zeros((2, 3)))
    x, y = _separable(40, 0)
    with pytest.raises(UserError, match="39 labels for 40"):
        clf.fit(x, {"a": y["a"][:39]})
    with pytest.raises(UserError, match="1 value"):
        clf.fit(x, {"a": np.zeros(40, dtype=int)})
    clf.fit(x, y)
    with pytest.raises(UserError, match="5 dimensions"):
        clf.read(np.zeros((2, 5)))
    with pytest.raises(UserError):
        wilson_interval(5, 4)
    assert not math.isnan(clf.ceiling["a"])
