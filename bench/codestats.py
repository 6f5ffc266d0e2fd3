"""Statistics of sets of discrete codes: per-position marginal total variation, exact copies."""
from __future__ import annotations

import numpy as np
import torch


def code_tv(a: torch.Tensor, b: torch.Tensor, V: int) -> float:
    """Mean over positions of the total variation between the token marginals of two code sets (N, L)."""
    pa = torch.nn.functional.one_hot(torch.as_tensor(a).long(), V).double().mean(0)     # (L, V)
    pb = torch.nn.functional.one_hot(torch.as_tensor(b).long(), V).double().mean(0)
    return float(0.5 * (pa - pb).abs().sum(-1).mean())


def code_rows(samples: torch.Tensor, train: torch.Tensor, test: torch.Tensor, V: int, seed: int,
              n_resamples: int = 200) -> list[dict]:
    """The rows of sampled codes (N, L) against the held-out codes: `code_tv` (variant 'dlc', with a recentred
    percentile-bootstrap interval over the sampled codes, the held-out codes fixed), the same for the first N
    train codes (variant 'real-train': the floor at this N), and `code_copy_frac` with its Wilson interval."""
    from .metrics.factors import wilson_interval
    from .metrics.stats import bootstrap_ci
    from .schema import metric_row

    n = len(samples)
    rows = []
    for variant, codes in (("dlc", samples), ("real-train", train[:n])):
        ci = bootstrap_ci(lambda a: code_tv(a, test, V), codes.numpy(), n_resamples=n_resamples, seed=seed,
                          recentre=True, bounds=(0.0, 1.0))
        rows.append(metric_row("code_tv", ci.value, higher_is_better=False, ci_low=ci.low, ci_high=ci.high, n=n,
                               seed=seed, variant=variant))
    frac = copy_fraction(samples, train)
    low, high = wilson_interval(round(frac * n), n)
    rows.append(metric_row("code_copy_frac", frac, higher_is_better=None, ci_low=low, ci_high=high, n=n, seed=seed,
                           variant="dlc"))
    return rows


def copy_fraction(samples: torch.Tensor, train: torch.Tensor) -> float:
    """Fraction of sampled codes equal to some training code at every position."""
    seen = {tuple(r) for r in train.tolist()}
    return float(np.mean([tuple(r) in seen for r in samples.tolist()]))


def probe_rows(train, test, factors, vocab_size: int, n_train: int, seed: int, n_jobs: int | None = None,
               extra: dict | None = None, include: tuple[str, ...] = ("dlc", "embedding")) -> list[dict]:
    """Linear probes of each factor from the one-hot DLC and from the continuous embedding, as metric rows (the
    held-out accuracy with its Wilson interval). `extra` adds continuous representations {name: (train (N, D),
    test (M, D))} aligned with the codes (e.g. RCG vectors); `include` picks which of dlc / embedding to probe.

    train / test: code artifacts (`.tokens` (N, L), `.embedding` (N, d), `.factors`); the first n_train train
    codes fit the probe (85 % fit, 15 % choose C), the test codes score it. The 2·F probes run in parallel
    processes (n_jobs, default: the CPU count up to 4); each is the same deterministic fit as alone.
    """
    import os

    from joblib import Parallel, delayed

    from .metrics import linear_probe
    from .metrics.factors import wilson_interval
    from .schema import metric_row

    m = min(n_train, len(train.tokens))
    split = {"train": np.arange(int(m * 0.85)), "val": np.arange(int(m * 0.85), m),
             "test": np.arange(m, m + len(test.tokens))}
    jobs = []
    for factor in [f for f in factors if f in train.factors]:
        y = torch.cat([train.factors[factor][:m], test.factors[factor]]).numpy()
        reps = [("dlc", torch.cat([train.tokens[:m], test.tokens]), vocab_size),
                ("embedding", torch.cat([train.embedding[:m], test.embedding]), None)]
        reps = [r for r in reps if r[0] in include] + [(name, torch.cat([tr[:m], te]).float(), None)
                                                        for name, (tr, te) in (extra or {}).items()]
        for rep, x, vocab in reps:
            jobs.append(((rep, factor), (x.numpy(), y), {"vocab_size": vocab, "split": split, "seed": seed}))
    n_jobs = n_jobs or min(4, os.cpu_count() or 1)
    results = Parallel(n_jobs=n_jobs)(delayed(linear_probe)(*a, **kw) for _, a, kw in jobs)
    rows = []
    for ((rep, factor), _, _), r in zip(jobs, results):     # held-out accuracy with its Wilson interval
        low, high = wilson_interval(round(r.top1 * r.n_test), r.n_test)
        rows.append(metric_row("probe_top1", r.top1, higher_is_better=True, ci_low=low, ci_high=high, seed=seed,
                               representation=rep, factor=factor, n=r.n_test))
    return rows
