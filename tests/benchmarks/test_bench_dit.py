"""DiT training-step throughput against the reference implementation (facebookresearch/DiT), side by side.

The reference is imported from a checkout named by the environment variable DIT_REF_DIR (its `models.py`
needs `timm`); without them the benchmark is skipped. Nothing of the reference is part of this project.

Both sides run the same training step at the same config on the same data: DiT forward, ε-MSE + VLB loss with
learned σ, backward, AdamW (lr 1e-4, wd 0), EMA update. Before timing, the reference model is loaded with our
weights and must give the same outputs and losses (so the two compute the same thing). Target: ≥ 1.0×.

    DIT_REF_DIR=/path/to/DiT PYTHONPATH=/path/with/timm \\
        .venv/bin/python -m pytest -m benchmark -p no:xdist tests/benchmarks/test_bench_dit.py -s
"""
from __future__ import annotations

import copy
import importlib
import os
import sys
import time
from collections import OrderedDict
from pathlib import Path

import pytest
import torch

from dlc.dit import build_dit, create_diffusion, train_dit

pytestmark = pytest.mark.benchmark


def _reference():
    ref_dir = os.environ.get("DIT_REF_DIR")
    if not ref_dir or not (Path(ref_dir) / "models.py").exists():
        pytest.skip("set DIT_REF_DIR to a facebookresearch/DiT checkout to run the reference side by side")
    try:
        import timm  # noqa: F401  (the reference's models.py imports it)
    except ImportError:
        pytest.skip("the reference DiT needs timm (put it on PYTHONPATH; it is not a project dependency)")
    sys.path.insert(0, ref_dir)
    try:
        models = importlib.import_module("models")
        diffusion = importlib.import_module("diffusion")
    finally:
        sys.path.remove(ref_dir)
    if not str(Path(models.__file__).resolve()).startswith(str(Path(ref_dir).resolve())):
        pytest.skip(f"a different module named 'models' was imported ({models.__file__})")
    return models, diffusion


def _best_of(fn, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


CONFIGS = {  # name: (our preset, reference kwargs, batch size, steps per round)
    "tiny-pixels-32": ("DiT-tiny/4", dict(input_size=32, in_channels=3, patch_size=4, hidden_size=64, depth=2,
                                          num_heads=2, num_classes=10), 64, 30),
    "S4-latents-32": ("DiT-S/4", dict(input_size=32, in_channels=4, patch_size=4, hidden_size=384, depth=12,
                                      num_heads=6, num_classes=10), 16, 6),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_training_throughput_vs_reference_dit(benchmark, name):
    ref_models, ref_diffusion = _reference()
    preset, kw, batch, steps = CONFIGS[name]
    torch.manual_seed(0)
    ours = build_dit(preset, input_size=kw["input_size"], in_channels=kw["in_channels"], num_classes=kw["num_classes"])
    ref = ref_models.DiT(**kw)
    ref.load_state_dict(ours.state_dict())
    C, S = kw["in_channels"], kw["input_size"]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch * 4, C, S, S, generator=g)
    y = torch.randint(0, kw["num_classes"], (batch * 4,), generator=g)
    ours_diff, ref_diff = create_diffusion(), ref_diffusion.create_diffusion(timestep_respacing="")

    # Same computation: equal outputs and losses (t > 0; at t = 0 we use the exact normal CDF, DiT a tanh fit).
    with torch.no_grad():
        for p in ours.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g) * 0.02)
    ref.load_state_dict(ours.state_dict())
    ours.eval(), ref.eval()
    xb, yb, t = x[:4], y[:4], torch.tensor([1, 10, 500, 999])
    noise = torch.randn(xb.shape, generator=g)
    with torch.no_grad():
        torch.testing.assert_close(ours(xb, t, yb), ref(xb, t, yb), rtol=1e-4, atol=1e-4)
        a = ours_diff.training_losses(lambda xt, tt: ours(xt, tt, yb), xb, t, noise)["loss"]
        b = ref_diff.training_losses(ref, xb, t, dict(y=yb), noise=noise)["loss"]
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    ours.train(), ref.train()

    def reference_steps():  # the loop of DiT's train.py
        ema = copy.deepcopy(ref).requires_grad_(False)
        opt = torch.optim.AdamW(ref.parameters(), lr=1e-4, weight_decay=0)
        for i in range(steps):
            idx = torch.randint(0, len(x), (batch,))
            t = torch.randint(0, ref_diff.num_timesteps, (batch,))
            loss = ref_diff.training_losses(ref, x[idx], t, dict(y=y[idx]))["loss"].mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():
                ema_params, params = OrderedDict(ema.named_parameters()), OrderedDict(ref.named_parameters())
                for k, p in params.items():
                    ema_params[k].mul_(0.9999).add_(p.data, alpha=1 - 0.9999)

    def our_steps():
        train_dit(ours, ours_diff, x, y, steps=steps, batch_size=batch, lr=1e-4, weight_decay=0.0, seed=0,
                  device="cpu", log_every=10 ** 9)

    reference_steps()  # warm-up both
    our_steps()
    ref_time = _best_of(reference_steps, rounds=3)
    benchmark.pedantic(our_steps, rounds=3, iterations=1)
    ref_time = min(ref_time, _best_of(reference_steps, rounds=2))  # interleaved, in case the machine got busier
    ours_sps = steps * batch / benchmark.stats["min"]
    ref_sps = steps * batch / ref_time
    ratio = ours_sps / ref_sps
    benchmark.extra_info.update(samples_per_s=ours_sps, reference_samples_per_s=ref_sps, ratio=ratio)
    print(f"\nDiT training {name} (batch {batch}): ours {ours_sps:,.1f} samples/s, reference DiT "
          f"{ref_sps:,.1f} samples/s → {ratio:.2f}×")
    assert ratio >= 1.0
