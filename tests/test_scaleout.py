"""Scale-out: the same code under `torchrun` (2 gloo processes on CPU) trains with DDP and samples exactly
what one process samples, because every sample's randomness derives from its global index."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

SCRIPT = textwrap.dedent('''
    import os, sys, torch
    torch.set_num_threads(1)
    from dlc import dist as ddist
    from dlc.dit import build_dit, create_diffusion, sample_dit, train_dit
    from dlc.sedd import SEDD_MODELS, SEDDTrainConfig, build_sedd, sample_sedd, train_sedd

    out = sys.argv[1]
    info = ddist.setup("cpu")
    L, V, N = 4, 5, 6
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, V, (64, L), generator=g)
    images = torch.rand(64, 3, 8, 8, generator=g) * 2 - 1

    # DDP training: a few steps; every rank must end with the same weights
    torch.manual_seed(0)
    dit = build_dit("DiT-tiny/4", input_size=8, in_channels=3, cond="dlc", dlc_length=L, dlc_vocab=V)
    res = train_dit(dit, create_diffusion(), images, tokens, steps=3, batch_size=8, lr=1e-3, device="cpu")
    sedd_model, sedd_ema = train_sedd(tokens, SEDD_MODELS["tiny"](vocab_size=V, seq_len=L, hidden=32, n_blocks=1,
                                                                  n_heads=2),
                                      SEDDTrainConfig(steps=3, batch_size=8, warmup=1), device="cpu")
    flat = torch.cat([p.detach().flatten() for p in list(res.model.parameters()) + list(sedd_model.parameters())])

    # sampling: fixed weights (seeded, identical in every process), this rank's contiguous block of indices
    torch.manual_seed(1)
    dit = build_dit("DiT-tiny/4", input_size=8, in_channels=3, cond="dlc", dlc_length=L, dlc_vocab=V)
    sedd = build_sedd(SEDD_MODELS["tiny"](vocab_size=V, seq_len=L, hidden=32, n_blocks=1, n_heads=2))
    per = -(-N // info.world_size)
    lo, hi = min(N, info.rank * per), min(N, (info.rank + 1) * per)
    codes = sample_sedd(sedd, hi - lo, sampler="corrector", steps=6, seed=3, start_index=lo, batch_size=2,
                        device="cpu")
    x = sample_dit(dit, create_diffusion(), codes, steps=5, seed=4, indices=range(lo, hi), batch_size=2,
                   device="cpu")
    idx = torch.arange(lo, hi)
    codes, x = ddist.gather_indexed(codes, idx, N), ddist.gather_indexed(x, idx, N)
    params = [torch.empty_like(flat) for _ in range(info.world_size)]
    if info.world_size > 1:
        torch.distributed.all_gather(params, flat)
    else:
        params = [flat]
    if info.is_main:
        torch.save({"codes": codes, "x": x, "params": params, "world": info.world_size}, out)
    ddist.cleanup()
''')


def _run(tmp_path, nproc: int):
    script = tmp_path / "scaleout.py"
    script.write_text(SCRIPT)
    out = tmp_path / f"out{nproc}.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.getcwd()}
    env.pop("WORLD_SIZE", None)
    cmd = [sys.executable, str(script), str(out)] if nproc == 1 else \
        [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", str(script),
         str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return torch.load(out, weights_only=True)


def test_two_processes_sample_what_one_process_samples(tmp_path):
    one, two = _run(tmp_path, 1), _run(tmp_path, 2)
    assert two["world"] == 2 and one["world"] == 1
    assert torch.equal(one["codes"], two["codes"])                     # discrete: exactly the same tokens
    assert ((one["codes"] >= 0) & (one["codes"] < 5)).all()
    torch.testing.assert_close(one["x"], two["x"], rtol=1e-4, atol=1e-4)   # batch composition differs per rank
    # DDP kept the two replicas identical through training
    assert torch.equal(two["params"][0], two["params"][1])
    assert torch.isfinite(two["params"][0]).all()
