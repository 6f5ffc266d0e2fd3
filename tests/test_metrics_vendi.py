"""Vendi score against vendi-score's score_dual / score_K and closed forms."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from bench.errors import UserError
from bench.metrics import vendi_score


def _vendi_lib():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from vendi_score import vendi
    return vendi


def _score_K(vendi, k, q):
    with warnings.catch_warnings():  # score_K touches scipy.sparse.csr (deprecated on scipy 1.17)
        warnings.simplefilter("ignore", DeprecationWarning)
        return vendi.score_K(k, q=q)


@pytest.fixture(scope="module")
def x_tall():
    return np.abs(np.random.default_rng(0).normal(size=(300, 40)))  # n > d: dual path


@pytest.fixture(scope="module")
def x_wide():
    return np.random.default_rng(1).normal(size=(50, 120))  # n < d: n × n path


@pytest.mark.parametrize("q", [1, 2, "inf", 0.5])
def test_equals_score_dual_and_score_K(x_tall, x_wide, q):
    vendi = _vendi_lib()
    wn = x_wide / np.linalg.norm(x_wide, axis=1, keepdims=True)
    assert vendi_score(x_wide, q=q) == pytest.approx(_score_K(vendi, wn @ wn.T, q), rel=1e-9)
    assert vendi_score(x_tall, q=q) == pytest.approx(vendi.score_dual(x_tall, q=q), rel=1e-9)
    if q != 0.5:  # rank-deficient n × n K: for q < 1 the rounding-level eigenvalues upstream keeps (p > 0) matter
        tn = x_tall / np.linalg.norm(x_tall, axis=1, keepdims=True)
        assert vendi_score(x_tall, q=q) == pytest.approx(_score_K(vendi, tn @ tn.T, q), rel=1e-9)


def test_order_q_is_applied_unlike_upstream_score_X(x_tall):
    """Upstream score_X(X, q) calls score_K(K, q=1): its q=2 equals its q=1. Ours does not."""
    vendi = _vendi_lib()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        upstream_q2 = vendi.score_X(x_tall, q=2)
        upstream_q1 = vendi.score_X(x_tall, q=1)
    assert upstream_q2 == pytest.approx(upstream_q1, rel=1e-12)  # the upstream bug
    assert vendi_score(x_tall, q=1) == pytest.approx(upstream_q1, rel=1e-9)
    assert vendi_score(x_tall, q=2) < vendi_score(x_tall, q=1) * 0.99  # q applied: VS_q decreases in q
    assert vendi_score(x_tall, q="inf") < vendi_score(x_tall, q=2)


@pytest.mark.parametrize("q", [1, 2, "inf", float("inf")])
def test_closed_forms(q):
    rng = np.random.default_rng(2)
    v = rng.normal(size=(1, 30))
    assert vendi_score(np.repeat(v, 200, axis=0), q=q) == pytest.approx(1.0, rel=1e-9)  # identical points
    assert vendi_score(np.repeat(v, 10, axis=0) * rng.uniform(0.5, 2, (10, 1)), q=q) == pytest.approx(1.0, rel=1e-9)
    ortho, _ = np.linalg.qr(rng.normal(size=(30, 30)))
    assert vendi_score(ortho[:, :20].T, q=q) == pytest.approx(20.0, rel=1e-9)  # n < d: n × n path
    assert vendi_score(np.vstack([ortho, ortho]), q=q) == pytest.approx(30.0, rel=1e-9)  # n > d: dual path


def test_float32_input_is_computed_in_float64(x_tall):
    vendi = _vendi_lib()
    x32 = x_tall.astype(np.float32)
    assert vendi_score(x32) == pytest.approx(vendi.score_dual(x32.astype(np.float64)), rel=1e-11)


def test_bad_input(x_tall):
    x = x_tall.copy()
    x[5] = 0.0
    with pytest.raises(UserError, match="all-zero rows"):
        vendi_score(x)
    with pytest.raises(UserError, match="q must be >= 0"):
        vendi_score(x_tall, q=-1)
    with pytest.raises(UserError, match="not a number"):
        vendi_score(x_tall, q="two")
    with pytest.raises(UserError, match="unit L2 norm"):
        vendi_score(x_tall, normalize=False)
    with pytest.raises(UserError, match="NaN/inf"):
        vendi_score(np.full((3, 2), np.inf))
