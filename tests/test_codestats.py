"""bench.codestats: code statistics with known answers, and the parallel probes equal to the probes run alone."""
from __future__ import annotations

import numpy as np
import torch

from bench.codestats import code_tv, copy_fraction, probe_rows
from bench.metrics import linear_probe
from dlc.encoder.export import DLCArtifact


def _artifact(n: int, seed: int) -> DLCArtifact:
    g = torch.Generator().manual_seed(seed)
    f = {"a": torch.randint(0, 3, (n,), generator=g), "b": torch.randint(0, 2, (n,), generator=g)}
    tokens = torch.randint(0, 4, (n, 3), generator=g)
    tokens[:, 0] = f["a"]                                   # position 0 carries factor a exactly
    emb = torch.randn(n, 5, generator=g)
    emb[:, 0] += 3 * f["b"]                                 # the embedding carries factor b
    return DLCArtifact(tokens=tokens, V=4, embedding=emb, factors=f)


def test_code_tv_and_copies_closed_forms():
    a = torch.zeros(4, 2, dtype=torch.long)
    b = torch.ones(4, 2, dtype=torch.long)
    assert code_tv(a, b, 3) == 1.0 and code_tv(a, a, 3) == 0.0
    assert copy_fraction(torch.tensor([[0, 0], [1, 2]]), a) == 0.5


def test_parallel_probes_equal_the_probes_run_alone():
    tr, te = _artifact(300, 0), _artifact(80, 1)
    rows = probe_rows(tr, te, ["a", "b", "missing"], 4, n_train=200, seed=3, n_jobs=2)
    by = {(r["representation"], r["factor"]): r["value"] for r in rows}
    assert set(by) == {(rep, f) for rep in ("dlc", "embedding") for f in ("a", "b")}
    split = {"train": np.arange(170), "val": np.arange(170, 200), "test": np.arange(200, 280)}
    y = torch.cat([tr.factors["a"][:200], te.factors["a"]]).numpy()
    alone = linear_probe(torch.cat([tr.tokens[:200], te.tokens]).numpy(), y, vocab_size=4, split=split, seed=3)
    assert by[("dlc", "a")] == alone.top1 == 1.0            # the known answer: position 0 is factor a
    assert by[("embedding", "b")] > 0.9
