"""Aggregation of per-seed metric rows into mean ± confidence interval across seeds."""
from __future__ import annotations

import math
from collections import OrderedDict
from typing import Iterable, Mapping, Sequence

import numpy as np
from scipy import stats

from .results import METRIC_COLUMNS, metric_row


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

    Groups that already have an aggregate row (a row without a seed label) are left alone.
    """
    rows = list(rows)
    existing = {_key(r) for r in rows if r.get("seed") is None}
    groups: "OrderedDict[tuple, list[Mapping]]" = OrderedDict()
    for r in rows:
        if r.get("seed") is None:
            continue
        groups.setdefault(_key(r), []).append(r)
    out = []
    for key, grp in groups.items():
        if key in existing:
            continue
        mean, lo, hi = t_interval([g["value"] for g in grp], confidence)
        labels = {k: v for k, v in grp[0].items() if k not in METRIC_COLUMNS and k != "seed"}
        out.append(metric_row(grp[0]["metric"], mean, ci_low=lo, ci_high=hi, n=len(grp),
                              higher_is_better=grp[0].get("higher_is_better"), **labels))
    return out


def _key(r: Mapping) -> tuple:
    labels = tuple(sorted((k, repr(v)) for k, v in r.items() if k not in METRIC_COLUMNS and k != "seed"))
    return (r["metric"], labels)
