"""Statistics of sets of discrete codes: per-position marginal total variation, exact copies."""
from __future__ import annotations

import numpy as np
import torch


def code_tv(a: torch.Tensor, b: torch.Tensor, V: int) -> float:
    """Mean over positions of the total variation between the token marginals of two code sets (N, L)."""
    pa = torch.nn.functional.one_hot(a.long(), V).double().mean(0)     # (L, V)
    pb = torch.nn.functional.one_hot(b.long(), V).double().mean(0)
    return float(0.5 * (pa - pb).abs().sum(-1).mean())


def copy_fraction(samples: torch.Tensor, train: torch.Tensor) -> float:
    """Fraction of sampled codes equal to some training code at every position."""
    seen = {tuple(r) for r in train.tolist()}
    return float(np.mean([tuple(r) in seen for r in samples.tolist()]))


def probe_rows(train, test, factors, vocab_size: int, n_train: int, seed: int, n_jobs: int | None = None) -> list[dict]:
    """Linear probes of each factor from the one-hot DLC and from the continuous embedding, as metric rows.

    train / test: code artifacts (`.tokens` (N, L), `.embedding` (N, d), `.factors`); the first n_train train
    codes fit the probe (85 % fit, 15 % choose C), the test codes score it. The 2·F probes run in parallel
    processes (n_jobs, default: the CPU count up to 4); each is the same deterministic fit as alone.
    """
    import os

    from joblib import Parallel, delayed

    from .metrics import linear_probe
    from .schema import metric_row

    m = min(n_train, len(train.tokens))
    split = {"train": np.arange(int(m * 0.85)), "val": np.arange(int(m * 0.85), m),
             "test": np.arange(m, m + len(test.tokens))}
    jobs = []
    for factor in [f for f in factors if f in train.factors]:
        y = torch.cat([train.factors[factor][:m], test.factors[factor]]).numpy()
        for rep, x, vocab in (("dlc", torch.cat([train.tokens[:m], test.tokens]), vocab_size),
                              ("embedding", torch.cat([train.embedding[:m], test.embedding]), None)):
            jobs.append(((rep, factor), (x.numpy(), y), {"vocab_size": vocab, "split": split, "seed": seed}))
    n_jobs = n_jobs or min(4, os.cpu_count() or 1)
    results = Parallel(n_jobs=n_jobs)(delayed(linear_probe)(*a, **kw) for _, a, kw in jobs)
    return [metric_row("probe_top1", r.top1, higher_is_better=True, seed=seed, representation=rep, factor=factor,
                       n=r.n_test) for ((rep, factor), _, _), r in zip(jobs, results)]
