"""Aggregation of per-seed metric rows into mean ± confidence interval across seeds."""
from __future__ import annotations

import math
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from .schema import METRIC_COLUMNS, label_columns, metric_row


def t_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean and the two-sided Student-t confidence interval of the mean; (m, m, m) for one value."""
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    if x.size == 0:
        return (math.nan, math.nan, math.nan)
    m = float(x.mean())
    if x.size == 1:
        return (m, m, m)
    half = float(stats.t.ppf(0.5 + confidence / 2, df=x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return (m, m - half, m + half)


def aggregate_over_seeds(rows: Iterable[Mapping], confidence: float = 0.95) -> list[dict]:
    """For every group of rows that differ only in `seed`, one row without `seed`: mean ± t-interval, n = #seeds.

    Groups come out in the order of their first row. Groups that already have an aggregate row (a row
    without a seed label) are left alone. A group of one seed keeps that row's own interval and n (e.g. a
    bootstrap over the samples): a t-interval of one value is no interval. NaN/None values are left out of the mean and interval but
    counted in n. Labels are compared by repr, so 1 and 1.0, a None label and a missing one, differ.
    """
    rows = list(rows)
    if not rows:
        return []
    labels = label_columns(rows, exclude=("seed",))
    # one column per label: repr of the value, None (a missing label) where the row lacks it
    keys = pd.DataFrame({"metric": [r["metric"] for r in rows],
                         **{f"label:{c}": [repr(r[c]) if c in r else None for r in rows] for c in labels}})
    table = pd.DataFrame({"group": keys.groupby(list(keys.columns), sort=False, dropna=False).ngroup(),
                          "seeded": [r.get("seed") is not None for r in rows],
                          "value": [r["value"] for r in rows]})
    per_group = table.groupby("group", sort=True)
    complete = per_group["seeded"].all()              # no aggregate row already
    out = []
    for g, grp in per_group:
        if not complete[g]:
            continue
        first = rows[grp.index[0]]
        mean, lo, hi = t_interval(list(grp["value"]), confidence)
        n = len(grp)
        if n == 1 and first.get("ci_low") is not None and first.get("ci_high") is not None:
            lo, hi, n = first["ci_low"], first["ci_high"], first.get("n")    # one seed: the row's own interval
        extra = {k: v for k, v in first.items() if k not in METRIC_COLUMNS and k != "seed"}
        out.append(metric_row(first["metric"], mean, ci_low=lo, ci_high=hi, n=n,
                              higher_is_better=first.get("higher_is_better"), **extra))
    return out
