"""SEDD sampler benchmark (run with `make bench`): per-step cost of the DLC remasking corrector against the
analytic (Tweedie τ-leaping) sampler it extends, on the same model, same batch and same seed.

Model: the `tiny` SEDD preset (hidden 64, 2 blocks) at the DLC-like shape L = 128, V = 256, batch 16, 16 steps.
The corrector runs with t0 = 0, t1 = 1, so it remasks at *every* step (the worst case; the DLC default window
(0.3, 0.55) covers a quarter of the steps). Rounds are interleaved (analytic in pedantic's untimed set-up, timed
by hand, then the corrector), one thread, best of 8. Target (issue #4): the corrector adds ≤ 10 % per step.
"""
from __future__ import annotations

import time

import pytest
import torch

from dlc.sedd import build_sedd, sample_sedd

pytestmark = pytest.mark.benchmark

STEPS, BATCH = 16, 16


def test_corrector_step_cost_vs_analytic(benchmark):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        model = build_sedd("tiny", vocab_size=256, seq_len=128).eval()
        kw = dict(n=BATCH, steps=STEPS, eta=0.02, t0=0.0, t1=1.0, denoise=False, seed=0, device="cpu",
                  batch_size=BATCH)
        sample_sedd(model, sampler="corrector", **{**kw, "steps": 2})                 # warm-up
        analytic_times = []

        def setup():
            t0 = time.perf_counter()
            sample_sedd(model, sampler="analytic", **kw)
            analytic_times.append(time.perf_counter() - t0)

        out = benchmark.pedantic(lambda: sample_sedd(model, sampler="corrector", **kw), setup=setup, rounds=8,
                                 iterations=1)
    finally:
        torch.set_num_threads(threads)
    assert out.shape == (BATCH, 128)
    analytic_step = min(analytic_times) / STEPS
    corrector_step = benchmark.stats["min"] / STEPS
    ratio = corrector_step / analytic_step
    benchmark.extra_info.update(analytic_ms_per_step=1e3 * analytic_step, corrector_ms_per_step=1e3 * corrector_step,
                                ratio=ratio)
    print(f"\nSEDD tiny L=128 V=256 batch {BATCH}: analytic {1e3 * analytic_step:.1f} ms/step, "
          f"corrector {1e3 * corrector_step:.1f} ms/step → ×{ratio:.3f}")
    assert ratio <= 1.10
