"""Inception Score (ADM and torch-fidelity conventions) and KID against torch-fidelity and closed forms."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.special
import torch

from bench.errors import UserError
from bench.metrics import inception_score_adm, inception_score_fidelity, kid
from bench.metrics.kid import mmd2_unbiased, polynomial_kernel


def _logits(n, c=1008, seed=0, scale=4.0):
    return np.random.default_rng(seed).normal(scale=scale, size=(n, c)).astype(np.float32)


def _adm_reference(logits, split_size=5000):
    """The loop of guided-diffusion evaluator.compute_inception_score on float64 softmax outputs."""
    preds = scipy.special.softmax(logits.astype(np.float64), axis=1)
    scores = []
    for i in range(0, len(preds), split_size):
        part = preds[i:i + split_size]
        kl = part * (np.log(part) - np.log(np.expand_dims(np.mean(part, 0), 0)))
        scores.append(np.exp(np.mean(np.sum(kl, 1))))
    return float(np.mean(scores))


# ---------------------------------------------------------------------------------------------------------
# Inception Score
# ---------------------------------------------------------------------------------------------------------


def test_is_fidelity_equals_torch_fidelity():
    from torch_fidelity.metric_isc import isc_features_to_metric

    x = _logits(500, seed=1)
    ref = isc_features_to_metric(torch.from_numpy(x), splits=10, shuffle=True, rng_seed=2020)
    ours = inception_score_fidelity(x)
    assert ours["mean"] == pytest.approx(ref["inception_score_mean"], rel=1e-10)
    assert ours["std"] == pytest.approx(ref["inception_score_std"], rel=1e-8)
    ref_ns = isc_features_to_metric(torch.from_numpy(x), splits=5, shuffle=False)
    ns = inception_score_fidelity(x, splits=5, shuffle=False)
    assert ns["mean"] == pytest.approx(ref_ns["inception_score_mean"], rel=1e-10)


def test_is_adm_equals_evaluator_loop_with_partial_last_split():
    x = _logits(12_000, c=1008, seed=2, scale=2.0)  # splits of 5000, 5000, 2000
    assert inception_score_adm(x) == pytest.approx(_adm_reference(x), rel=1e-10)
    assert inception_score_adm(x) != pytest.approx(inception_score_adm(x[:10_000]), rel=1e-6)


def test_is_closed_forms():
    c, n = 10, 1000
    confident = np.full((n, c), -50.0)
    confident[np.arange(n), np.arange(n) % c] = 50.0  # one-hot predictions, uniform over classes
    with pytest.warns(UserWarning):
        assert inception_score_adm(confident, split_size=500) == pytest.approx(c, rel=1e-9)
    assert inception_score_fidelity(confident, shuffle=False)["mean"] == pytest.approx(c, rel=1e-9)
    same = np.tile(np.random.default_rng(0).normal(size=(1, c)), (n, 1))  # identical predictions: IS = 1
    assert inception_score_fidelity(same)["mean"] == pytest.approx(1.0, abs=1e-12)


def test_is_adm_warnings():
    with pytest.warns(UserWarning, match="1008-class"):
        inception_score_adm(_logits(10, c=1000), split_size=5)
    with pytest.warns(RuntimeWarning, match="one split of 50"):
        inception_score_adm(_logits(50))


def test_is_bad_input():
    with pytest.raises(UserError, match="NaN/inf"):
        inception_score_fidelity(np.full((20, 5), np.nan))
    with pytest.raises(UserError, match="at least 10"):
        inception_score_fidelity(_logits(9, c=5))
    with pytest.raises(UserError, match=">= 2 classes"):
        inception_score_adm(np.zeros((10, 1)))


# ---------------------------------------------------------------------------------------------------------
# KID
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kid_feats():
    rng = np.random.default_rng(5)
    real = np.maximum(rng.normal(size=(300, 32)), 0)
    fake = np.maximum(rng.normal(size=(250, 32)) + 0.2, 0)
    return real, fake


def test_kid_equals_torch_fidelity(kid_feats):
    from torch_fidelity.metric_kid import kid_features_to_metric

    real, fake = kid_feats
    ref = kid_features_to_metric(torch.from_numpy(fake), torch.from_numpy(real), kid_subsets=20,
                                 kid_subset_size=100, rng_seed=7, verbose=False)
    ours = kid(real=real, fake=fake, subsets=20, subset_size=100, seed=7)
    assert ours["mean"] == pytest.approx(ref["kernel_inception_distance_mean"], rel=1e-10)
    assert ours["std"] == pytest.approx(ref["kernel_inception_distance_std"], rel=1e-8)


def test_mmd2_and_kernel_equal_torch_fidelity(kid_feats):
    from torch_fidelity.metric_kid import kernel_poly, mmd2

    real, fake = kid_feats
    x, y = fake[:80], real[:80]
    np.testing.assert_allclose(polynomial_kernel(x, y), kernel_poly(x, y), rtol=1e-13)
    kxx, kyy, kxy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    assert mmd2_unbiased(kxx, kxy, kyy) == pytest.approx(mmd2(kxx, kxy, kyy), rel=1e-12)


def test_kid_is_unbiased_for_equal_distributions(kid_feats):
    """Independent sets from one distribution: the unbiased MMD² averages to 0 over independent trials."""
    rng = np.random.default_rng(11)
    vals = np.array([kid(real=rng.normal(size=(40, 8)), fake=rng.normal(size=(40, 8)), subsets=1,
                         subset_size=40)["mean"] for _ in range(300)])
    assert abs(vals.mean()) < 4 * vals.std() / np.sqrt(vals.size)
    assert (vals < 0).mean() > 0.2  # unbiased estimates go negative; a biased (V-statistic) one would not
    real, fake = kid_feats
    shifted = kid(real=real, fake=fake, subsets=20, subset_size=100, seed=0)
    assert shifted["mean"] > 10 * abs(vals.mean()) and shifted["mean"] > 5 * shifted["std"] / np.sqrt(20)


def test_kid_identical_set_closed_form(kid_feats):
    """Subsets = the whole identical set: MMD²_u = 2·mean_offdiag(K) − 2·mean(K)."""
    real, _ = kid_feats
    full = kid(real=real[:50], fake=real[:50], subsets=1, subset_size=50)
    k = polynomial_kernel(real[:50], real[:50])
    assert full["mean"] == pytest.approx(2 * (k.sum() - np.trace(k)) / (50 * 49) - 2 * k.mean(), rel=1e-12)


def test_kid_seeded_and_small_sets_warn(kid_feats):
    real, fake = kid_feats
    a = kid(real=real, fake=fake, subsets=5, subset_size=50, seed=3)
    assert a == kid(real=real, fake=fake, subsets=5, subset_size=50, seed=3)
    assert a != kid(real=real, fake=fake, subsets=5, subset_size=50, seed=4)
    with pytest.warns(RuntimeWarning, match="250 fake and 300 real samples.*using subsets of 250"):
        out = kid(real=real, fake=fake, subsets=2)
    assert out["subset_size"] == 250


def test_kid_bad_input(kid_feats):
    real, fake = kid_feats
    with pytest.raises(UserError, match="real has d=32, fake has d=31"):
        kid(real=real, fake=fake[:, :31])
    with pytest.raises(TypeError):
        kid(real, fake)  # noqa: keyword-only
