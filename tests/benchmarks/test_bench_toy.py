"""Toy-study benchmarks (run with `make bench`): each timed against a reference in the same process.

- KDE-KL on 20k × 20k points: ours vs scipy.stats.gaussian_kde (target ≥ 6× faster, equal to 1e-8).
- Training throughput at batch 2048: our improved-DDPM step (hybrid loss, learned variance) vs a bare
  ε-prediction DDPM step on the same MLP (target: the extra VLB machinery costs < 2×).
"""
from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from torch import nn

from toy import data as tdata, diffusion as tdiff, kde

pytestmark = pytest.mark.benchmark


def _best_of(fn, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def test_kde_kl_20k_vs_scipy(benchmark):
    from scipy.stats import gaussian_kde

    rng = np.random.default_rng(0)
    n = 900
    fit, _ = tdata.sample_mixture(20_000, n, rng)
    ev, _ = tdata.sample_mixture(20_000, n, rng)
    logp = tdata.log_density(ev, n)
    ref_time = _best_of(lambda: gaussian_kde(fit.T).logpdf(ev.T), rounds=1)
    ours = benchmark.pedantic(lambda: kde.kl_forward(logp, ev, fit), rounds=3, iterations=1)
    ref = float(np.mean(logp - gaussian_kde(fit.T).logpdf(ev.T)))
    assert ours == pytest.approx(ref, abs=1e-8)
    speedup = ref_time / benchmark.stats["min"]
    benchmark.extra_info.update(scipy_s=ref_time, speedup=speedup)
    print(f"\nKDE-KL 20k×20k: scipy {ref_time:.2f} s, ours {benchmark.stats['min']:.2f} s → {speedup:.1f}×")
    assert speedup >= 6.0


def test_training_throughput_batch_2048(benchmark):
    torch.manual_seed(0)
    batch, steps = 2048, 30
    x = torch.randn(50_000, 2)
    sch = tdiff.Schedule.cosine()

    ours = tdiff.DiffusionMLP(tdiff.MLPConfig(hidden=256))
    ref = nn.Sequential(nn.Linear(2 + 64, 256), nn.SiLU(), nn.Linear(256, 256), nn.SiLU(), nn.Linear(256, 256),
                        nn.SiLU(), nn.Linear(256, 2))
    ab = torch.as_tensor(sch.alpha_bar, dtype=torch.float32)
    opt_ref = torch.optim.AdamW(ref.parameters(), lr=1e-3)

    def reference_steps():  # plain DDPM: ε-MSE only, fixed variance
        for _ in range(steps):
            idx = torch.randint(0, len(x), (batch,))
            t = torch.randint(0, 1000, (batch,))
            eps = torch.randn(batch, 2)
            a = ab[t].unsqueeze(1)
            xt = a.sqrt() * x[idx] + (1 - a).sqrt() * eps
            loss = ((ref(torch.cat([xt, tdiff.timestep_embedding(t, 64)], 1)) - eps) ** 2).mean()
            opt_ref.zero_grad()
            loss.backward()
            opt_ref.step()

    ref_time = _best_of(reference_steps, rounds=3)
    benchmark.pedantic(lambda: tdiff.train(ours, x, None, steps=steps, batch_size=batch, lr=1e-3, seed=0, sch=sch),
                       rounds=3, iterations=1)
    ours_sps = steps * batch / benchmark.stats["min"]
    ref_sps = steps * batch / ref_time
    benchmark.extra_info.update(samples_per_s=ours_sps, reference_samples_per_s=ref_sps, ratio=ours_sps / ref_sps)
    print(f"\ntraining @2048: ours {ours_sps:,.0f} samples/s, bare DDPM step {ref_sps:,.0f} samples/s "
          f"({ours_sps / ref_sps:.2f}×)")
    assert ours_sps / ref_sps >= 0.5
