"""Fréchet distance and FD∞ against scipy sqrtm, clean-fid, torch-fidelity and closed forms."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.linalg

from bench.errors import UserError
from bench.metrics import fd, fd_infinity, feature_statistics, frechet_distance, trace_sqrt_product
from bench.metrics.frechet import fd_infinity_fit


def _relu_features(rng, n, d, shift=0.0):
    """Post-ReLU-like correlated features, as Inception pool3 (full rank when n > d)."""
    mix = np.eye(d) + 0.1 * rng.normal(size=(d, d))
    return np.maximum(rng.normal(size=(n, d)) + shift, 0.0) @ mix


def _fd_sqrtm(mu1, s1, mu2, s2):
    """The ADM / pytorch-fid route: scipy sqrtm of the (non-symmetric) product, real part."""
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean).real)


@pytest.fixture(scope="module")
def full_rank():
    rng = np.random.default_rng(0)
    a = _relu_features(rng, 600, 64)
    b = _relu_features(rng, 500, 64, shift=0.2)
    return a, b


def test_statistics_equal_numpy_mean_and_cov(full_rank):
    a, _ = full_rank
    mu, sigma = feature_statistics(a.astype(np.float32))
    assert mu.dtype == np.float64 and sigma.dtype == np.float64
    a64 = a.astype(np.float32).astype(np.float64)
    np.testing.assert_allclose(mu, a64.mean(0), rtol=1e-12)
    np.testing.assert_allclose(sigma, np.cov(a64, rowvar=False), rtol=1e-10, atol=1e-13)


def test_equals_scipy_sqrtm_full_rank(full_rank):
    a, b = full_rank
    s1, s2 = feature_statistics(a), feature_statistics(b)
    ours = frechet_distance(*s1, *s2)
    ref = _fd_sqrtm(*s1, *s2)
    assert ours == pytest.approx(ref, rel=1e-10)
    assert ours > 0.1


def test_equals_clean_fid_and_torch_fidelity(full_rank):
    from cleanfid.fid import frechet_distance as cleanfid_fd
    import torch
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

    a, b = full_rank
    ours = fd(real=a, fake=b)
    assert ours == pytest.approx(float(cleanfid_fd(*feature_statistics(a), *feature_statistics(b))), rel=1e-10)
    st = [fid_features_to_statistics(torch.from_numpy(x)) for x in (a, b)]
    tf = fid_statistics_to_metric(st[0], st[1], verbose=False)["frechet_inception_distance"]
    assert ours == pytest.approx(tf, rel=1e-10)


def test_closed_form_diagonal_gaussians():
    rng = np.random.default_rng(1)
    d = 50
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    a, b = rng.uniform(0.1, 3, d), rng.uniform(0.1, 3, d)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-12)


def test_closed_form_commuting_rotated_covariances():
    """Σ1 = Q diag(a) Qᵀ, Σ2 = Q diag(b) Qᵀ commute: tr √(Σ1Σ2) = Σ √(ab)."""
    rng = np.random.default_rng(2)
    d = 40
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    a, b = rng.uniform(0.01, 5, d), rng.uniform(0.01, 5, d)
    s1, s2 = (q * a) @ q.T, (q * b) @ q.T
    assert trace_sqrt_product(s1, s2) == pytest.approx(np.sum(np.sqrt(a * b)), rel=1e-11)
    mu = rng.normal(size=d)
    assert frechet_distance(mu, s1, mu, s2) == pytest.approx(np.sum((np.sqrt(a) - np.sqrt(b)) ** 2), rel=1e-9)


def test_identical_statistics_give_zero(full_rank):
    a, _ = full_rank
    mu, sigma = feature_statistics(a)
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-9 * np.trace(sigma))
    assert frechet_distance(mu, sigma, mu, sigma) >= 0.0


def test_rank_deficient_is_finite_warns_and_matches_sqrtm_real_part():
    rng = np.random.default_rng(3)
    a = _relu_features(rng, 60, 128)  # n < d: rank <= 59
    b = _relu_features(rng, 50, 128, shift=0.3)
    with pytest.warns(RuntimeWarning) as record:
        ours = fd(real=a, fake=b)
    messages = [str(w.message) for w in record]
    assert any("real: 60 samples for 128-d" in m for m in messages), messages   # one warning per side
    assert any("fake: 50 samples for 128-d" in m for m in messages), messages
    assert np.isfinite(ours)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = _fd_sqrtm(*feature_statistics(a), *feature_statistics(b))
    assert ours == pytest.approx(ref, rel=1e-6)
    # the pitfall our clipping avoids: the product has eigenvalues with tiny negative real parts
    s1, s2 = feature_statistics(a)[1], feature_statistics(b)[1]
    assert (np.linalg.eigvals(s1 @ s2).real < 0).any()


def test_precomputed_stats_tuple_and_npz(full_rank, tmp_path):
    a, b = full_rank
    mu, sigma = feature_statistics(a)
    np.savez(tmp_path / "ref.npz", mu=mu, sigma=sigma, mu_s=mu[:3], sigma_s=sigma[:3, :3])
    raw = fd(real=a, fake=b)
    assert fd(real=(mu, sigma), fake=b) == raw
    with np.load(tmp_path / "ref.npz") as ref:
        assert fd(real=ref, fake=b) == raw


def test_torch_tensor_input(full_rank):
    import torch

    a, b = full_rank
    assert fd(real=torch.from_numpy(a), fake=torch.from_numpy(b)) == pytest.approx(fd(real=a, fake=b), rel=1e-14)


def test_keyword_only():
    x = np.zeros((5, 2))
    with pytest.raises(TypeError):
        fd(x, x)  # noqa: real= / fake= must be named


@pytest.mark.parametrize("bad, match", [
    (np.array([[1.0, np.nan], [0.0, 1.0], [2.0, 2.0]]), "NaN/inf"),
    (np.array([[1.0, np.inf], [0.0, 1.0], [2.0, 2.0]]), "NaN/inf"),
    (np.ones((1, 2)), "1 samples; this metric needs at least 2"),
    (np.ones(5), "must be 2-D"),
])
def test_bad_features(bad, match):
    ok = np.random.default_rng(0).normal(size=(10, 2))
    with pytest.raises(UserError, match=match):
        fd(real=ok, fake=bad)


def test_mismatched_dims_and_stats_shapes():
    rng = np.random.default_rng(0)
    with pytest.raises(UserError, match="real has d=3, fake has d=4"):
        fd(real=rng.normal(size=(10, 3)), fake=rng.normal(size=(10, 4)))
    with pytest.raises(UserError, match="covariance must be"):
        frechet_distance(np.zeros(3), np.eye(2), np.zeros(3), np.eye(3))
    with pytest.raises(UserError, match="d=3 vs d=2"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(2), np.eye(2))
    with pytest.raises(UserError, match="NaN/inf"):
        frechet_distance(np.zeros(2), np.array([[1, np.nan], [0, 1]]), np.zeros(2), np.eye(2))


# ---------------------------------------------------------------------------------------------------------
# FD∞
# ---------------------------------------------------------------------------------------------------------


def test_fd_infinity_fit_recovers_intercept_of_synthetic_curve():
    ns = np.linspace(500, 5000, 15).astype(int)
    a, b = 3.25, 1234.5
    noise = np.random.default_rng(0).normal(scale=1e-3, size=ns.size)
    fit_a, fit_b = fd_infinity_fit(ns, a + b / ns + noise)
    assert fit_a == pytest.approx(a, abs=5e-3)
    assert fit_b == pytest.approx(b, rel=1e-2)
    assert fd_infinity_fit(ns, a + b / ns) == pytest.approx((a, b), rel=1e-10)


def test_fd_infinity_removes_the_finite_sample_bias():
    """Fake ~ the real Gaussian exactly: FD_N > 0 only through the 1/N bias, so FD∞ ≈ 0 ≪ FD_N."""
    rng = np.random.default_rng(4)
    d, n = 8, 3000
    mu, sigma = np.zeros(d), np.eye(d)
    fake = rng.normal(size=(n, d))
    fd_n = fd(real=(mu, sigma), fake=fake)
    fd_inf, curve = fd_infinity(real=(mu, sigma), fake=fake, seed=0, return_curve=True)
    assert len(curve["n"]) == 15 and curve["n"][0] == n // 10 and curve["n"][-1] == n
    assert curve["slope"] > 0  # FD_N decreases with N
    assert abs(fd_inf) < 0.25 * fd_n
    assert fd_infinity(real=(mu, sigma), fake=fake, seed=0) == fd_inf  # seeded


def test_fd_infinity_too_few_samples():
    with pytest.raises(UserError, match="at least 4"):
        fd_infinity(real=np.ones((5, 2)), fake=np.ones((3, 2)))
