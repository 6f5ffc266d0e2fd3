"""bench.codestats: code statistics with known answers, and the parallel probes equal to the probes run alone."""
from __future__ import annotations

import numpy as np
import pytest
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


def test_code_rows_give_intervals_that_hold_their_values():
    """Codes drawn from the held-out marginals: the TV interval holds the estimate and reaches down towards the
    finite-sample floor; the copy fraction's Wilson interval is the binomial one (scipy)."""
    from scipy.stats import binomtest

    from bench.codestats import code_rows

    g = torch.Generator().manual_seed(0)
    test = torch.randint(0, 4, (400, 6), generator=g)
    train = torch.randint(0, 4, (1000, 6), generator=g)
    samples = torch.cat([train[:30], torch.randint(0, 4, (170, 6), generator=g)])    # 30 copies of training codes
    rows = {(r["metric"], r["variant"]): r for r in code_rows(samples, train, test, 4, seed=0, n_resamples=100)}
    tv = rows[("code_tv", "dlc")]
    assert tv["value"] == pytest.approx(code_tv(samples, test, 4))
    assert 0.0 <= tv["ci_low"] <= tv["value"] <= tv["ci_high"] <= 1.0 and tv["ci_high"] > tv["ci_low"]
    assert rows[("code_tv", "real-train")]["value"] == pytest.approx(code_tv(train[:200], test, 4))
    cp = rows[("code_copy_frac", "dlc")]
    k = round(cp["value"] * 200)
    assert k >= 30 and cp["value"] == copy_fraction(samples, train)
    ref = binomtest(k, 200).proportion_ci(0.95, method="wilson")
    assert (cp["ci_low"], cp["ci_high"]) == pytest.approx((ref.low, ref.high))
