"""Metric benchmarks (run with `make bench`): each timed against its reference in the same process.

- FD trace term tr √(Σ1Σ2), 2048-d covariances of 10k samples: our symmetric eigen route vs scipy `sqrtm`
  (ADM, clean-fid, pytorch-fid); target ≥ 3× faster, equal to 1e-10 relative.
- Vendi score of 5k × 2048 features: ours (float64, d × d dual) vs vendi-score `score_X` (n × n); target ≥ 5×.
- FD bootstrap, 1000 × 1280 (EfficientNet-Lite0 size, the laptop pipeline's): `fd_bootstrap_ci` (n × n Gram
  route) vs the generic `metric_ci("fd")` with the same resamples; target ≥ 4×, the same interval to 1e-7.
"""
from __future__ import annotations

import time
import warnings

import numpy as np
import pytest
import scipy.linalg

from bench.metrics import feature_statistics, trace_sqrt_product, vendi_score

pytestmark = pytest.mark.benchmark


def _best_of(fn, rounds: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(rounds):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def _pool3_like(rng, n, d, shift=0.0):
    """Post-ReLU correlated float32 features, like Inception pool3."""
    mix = (np.eye(d) + 0.05 * rng.standard_normal((d, d))).astype(np.float32)
    return np.maximum(rng.standard_normal((n, d), dtype=np.float32) + shift, 0) @ mix


def test_fd_trace_term_2048d_vs_scipy_sqrtm(benchmark):
    rng = np.random.default_rng(0)
    _, s1 = feature_statistics(_pool3_like(rng, 10_000, 2048))
    _, s2 = feature_statistics(_pool3_like(rng, 10_000, 2048, shift=0.1))

    def reference():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(np.trace(scipy.linalg.sqrtm(s1 @ s2)).real)

    ref_time, ref = _best_of(reference, rounds=1)  # ~36 s on the 2-core anchor machine
    ours = benchmark.pedantic(lambda: trace_sqrt_product(s1, s2), rounds=3, iterations=1)
    assert ours == pytest.approx(ref, rel=1e-10)
    speedup = ref_time / benchmark.stats["min"]
    benchmark.extra_info.update(sqrtm_s=ref_time, speedup=speedup)
    print(f"\nFD trace 2048-d: scipy sqrtm {ref_time:.2f} s, ours {benchmark.stats['min']:.2f} s → {speedup:.1f}×")
    assert speedup >= 3.0


def test_vendi_5k_x_2048_vs_vendi_score_X(benchmark):
    from vendi_score import vendi

    x = _pool3_like(np.random.default_rng(1), 5000, 2048)

    def reference():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return vendi.score_X(x)

    ref_time, ref = _best_of(reference, rounds=1)
    ours = benchmark.pedantic(lambda: vendi_score(x), rounds=3, iterations=1)
    assert ours == pytest.approx(vendi.score_dual(x.astype(np.float64)), rel=1e-10)
    assert ours == pytest.approx(ref, rel=1e-3)  # score_X runs in float32 on float32 input
    speedup = ref_time / benchmark.stats["min"]
    benchmark.extra_info.update(score_X_s=ref_time, speedup=speedup)
    print(f"\nVendi 5k×2048: score_X {ref_time:.2f} s, ours {benchmark.stats['min']:.2f} s → {speedup:.1f}×")
    assert speedup >= 5.0


def test_fd_bootstrap_1000x1280_vs_generic_metric_ci(benchmark):
    from bench.metrics import metric_ci
    from bench.metrics.frechet import fd_bootstrap_ci

    rng = np.random.default_rng(0)
    real, fake = _pool3_like(rng, 1000, 1280), _pool3_like(rng, 1000, 1280, shift=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)            # n < d: rank-deficient by design
        ref_time, ref = _best_of(lambda: metric_ci("fd", real=real, fake=fake, n_resamples=40, seed=0), rounds=1)
        ours = benchmark.pedantic(lambda: fd_bootstrap_ci(real=real, fake=fake, n_resamples=40, seed=0),
                                  rounds=3, iterations=1)
    assert (ours.low, ours.high) == (pytest.approx(ref.low, rel=1e-7), pytest.approx(ref.high, rel=1e-7))
    speedup = ref_time / benchmark.stats["min"]
    benchmark.extra_info.update(metric_ci_s=ref_time, speedup=speedup)
    print(f"\nFD bootstrap 1000×1280, 40 resamples: metric_ci {ref_time:.2f} s, ours {benchmark.stats['min']:.2f} s "
          f"→ {speedup:.1f}×")
    assert speedup >= 4.0
