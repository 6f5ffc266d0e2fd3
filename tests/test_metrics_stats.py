"""Bootstrap confidence intervals: coverage in simulation, seeding, recorded n, metric_ci."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

from bench.errors import UserError
from bench.metrics import bootstrap_ci, feature_statistics, metric_ci


def test_percentile_ci_covers_the_true_mean_in_simulation():
    rng = np.random.default_rng(0)
    hits, sims = 0, 150
    for s in range(sims):
        x = rng.exponential(scale=2.0, size=80)  # true mean 2.0, skewed
        ci = bootstrap_ci(np.mean, x, n_resamples=400, confidence=0.9, seed=s)
        hits += ci.low <= 2.0 <= ci.high
    assert 0.80 <= hits / sims <= 0.97  # nominal 0.90 (percentile bootstrap undercovers slightly at n=80)


def test_close_to_scipy_percentile_bootstrap():
    x = np.random.default_rng(1).normal(loc=3.0, size=200)
    ours = bootstrap_ci(np.mean, x, n_resamples=4000, seed=0)
    ref = scipy.stats.bootstrap((x,), np.mean, n_resamples=4000, method="percentile", confidence_level=0.95,
                                rng=np.random.default_rng(0)).confidence_interval
    width = ref.high - ref.low
    assert ours.low == pytest.approx(ref.low, abs=0.05 * width)
    assert ours.high == pytest.approx(ref.high, abs=0.05 * width)
    assert ours.value == pytest.approx(x.mean(), rel=1e-15)


def test_seeded_records_n_and_supports_two_samples_and_pairing():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=50), rng.normal(loc=1.0, size=70)
    diff = lambda u, v: float(v.mean() - u.mean())  # noqa: E731
    ci = bootstrap_ci(diff, a, b, n_resamples=200, seed=3)
    assert ci == bootstrap_ci(diff, a, b, n_resamples=200, seed=3)
    assert ci != bootstrap_ci(diff, a, b, n_resamples=200, seed=4)
    assert ci.n == (50, 70) and ci.n_resamples == 200 and ci.method == "percentile" and ci.seed == 3
    assert ci.to_dict()["n"] == [50, 70]
    assert ci.low < ci.value < ci.high
    with pytest.raises(UserError, match="equal sizes"):
        bootstrap_ci(diff, a, b, paired=True)
    x = rng.normal(size=60)
    paired = bootstrap_ci(lambda u, v: float((v - u).mean()), x, x + 0.5, paired=True, n_resamples=100)
    assert paired.low == pytest.approx(0.5) and paired.high == pytest.approx(0.5)  # paired: the offset is exact


def test_metric_ci_resamples_fake_and_keeps_real_fixed():
    rng = np.random.default_rng(4)
    real = rng.normal(size=(300, 4))
    fake = rng.normal(size=(300, 4)) + 0.5
    ci = metric_ci("fd", real=feature_statistics(real), fake=fake, n_resamples=50, seed=0)
    assert ci.n == (300,)
    assert ci.low < ci.value < ci.high and ci.low > 0.5  # true FD = 4 · 0.5² = 1.0
    both = metric_ci("fd", real=real, fake=fake, resample=("real", "fake"), n_resamples=50, seed=0)
    assert both.n == (300, 300)
    with pytest.raises(UserError, match="cannot resample"):
        metric_ci("fd", real=real, fake=fake, resample=("labels",))
    with pytest.raises(UserError, match="missing"):
        metric_ci("kid", fake=fake)


def test_bad_arguments():
    x = np.arange(10.0)
    with pytest.raises(UserError, match="confidence"):
        bootstrap_ci(np.mean, x, confidence=95)
    with pytest.raises(UserError, match=">= 2 samples"):
        bootstrap_ci(np.mean, x[:1])
    with pytest.raises(UserError, match="at least one"):
        bootstrap_ci(np.mean)


@pytest.mark.parametrize("n, d", [(30, 50), (80, 12)])
def test_fast_fd_bootstrap_equals_the_generic_one(n, d):
    """fd_bootstrap_ci (n × n eigen route when n ≤ d) draws the same resamples as metric_ci('fd') and gives the
    same interval, for rank-deficient (n < d) and full-rank fake sets, raw or precomputed real statistics."""
    from bench.metrics.frechet import fd_bootstrap_ci

    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=(200, d)), rng.normal(0.3, 1.2, size=(n, d))
    for ref in (real, feature_statistics(real)):
        slow = metric_ci("fd", real=ref, fake=fake, n_resamples=40, seed=3)
        fast = fd_bootstrap_ci(real=ref, fake=fake, n_resamples=40, seed=3)
        assert fast.value == slow.value
        assert fast.low == pytest.approx(slow.low, rel=1e-7) and fast.high == pytest.approx(slow.high, rel=1e-7)


def test_fd_interval_sits_on_the_estimate_and_covers_its_expectation():
    """A known answer for the Fréchet interval: the estimator's expectation at this n (the mean FD over 300 fresh
    fake sets). Duplicates in with-replacement resamples bias FD upwards, so at small n/d the plain percentile
    interval misses its own estimate and that expectation; recentred on the estimate (fd_bootstrap_ci, metric_ci)
    it covers both."""
    from bench.metrics.frechet import fd, fd_bootstrap_ci

    rng = np.random.default_rng(0)
    d, n, trials = 16, 100, 30
    real = feature_statistics(rng.standard_normal((2000, d)))
    fresh = lambda: rng.standard_normal((n, d)) * 1.2 + 0.1
    expect = float(np.mean([fd(real=real, fake=fresh()) for _ in range(300)]))
    hits = plain_hits = holds_value = 0
    for t in range(trials):
        f = fresh()
        ci = fd_bootstrap_ci(real=real, fake=f, n_resamples=60, seed=t)
        plain = bootstrap_ci(lambda x: fd(real=real, fake=x), f, n_resamples=60, seed=t)
        hits += ci.low <= expect <= ci.high
        plain_hits += plain.low <= expect <= plain.high
        holds_value += ci.low <= ci.value <= ci.high
        assert ci.method == "percentile, recentred"
    assert holds_value == trials
    assert hits / trials >= 0.85, hits
    assert plain_hits / trials <= 0.3, plain_hits


def test_paired_fd_difference_known_answers():
    """fd_difference_ci: the point value is the difference of the two FDs; a set against itself differs by exactly
    0 under pairing (every resample draws the same rows from both); a shifted copy is significantly worse, and
    pairing makes that interval narrower than independent resampling of the same two sets."""
    from bench.metrics.frechet import fd, fd_difference_ci

    rng = np.random.default_rng(1)
    real = feature_statistics(rng.standard_normal((1500, 8)))
    a = rng.standard_normal((200, 8))
    same = fd_difference_ci(real=real, fake_a=a, fake_b=a.copy(), n_resamples=40)
    assert same.value == 0.0 and same.low == 0.0 and same.high == 0.0 and same.method == "paired bootstrap"
    b = a + 0.15
    paired = fd_difference_ci(real=real, fake_a=a, fake_b=b, n_resamples=200, seed=2)
    assert paired.value == pytest.approx(fd(real=real, fake=b) - fd(real=real, fake=a), rel=1e-9)
    assert 0 < paired.low <= paired.value <= paired.high
    indep = fd_difference_ci(real=real, fake_a=a, fake_b=b[:-1], n_resamples=200, seed=2)
    assert indep.method == "bootstrap" and indep.high - indep.low > 1.5 * (paired.high - paired.low)
