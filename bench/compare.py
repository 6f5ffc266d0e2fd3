"""Comparing runs: per metric, the difference B − A with a 95 % interval and a verdict; gates for CI.

    cmp = compare_runs(a, b)                   # two Results of one experiment
    cmp["config_diff"]                         # [(dotted key, value in A, value in B)]
    cmp["differences"]                         # one dict per metric row present in either run
    failed = gate(cmp, parse_fail_if(["fd_effnet:+2%"]))

Rows are matched by metric and labels (the seed aside). The interval of a difference is
    'welch'      Welch's t-interval over seeds, when both runs have ≥ 2 per-seed values of the row;
    'paired bootstrap'  for a Fréchet distance whose features both runs stored (the feature cache of `metrics`,
                 the stage cache of an experiment) against the same reference: FD_B − FD_A over one index draw
                 per resample shared by both sample sets (`bench.metrics.frechet.fd_difference_ci`; 'bootstrap'
                 when the sets differ in size); used only when the stored features reproduce both runs' values;
    'intervals'  from the two runs' own 95 % intervals (e.g. bootstrap over samples), taken as independent
                 normal intervals: se = (high − low) / 3.92, interval Δ ± 1.96·√(se_A² + se_B²);
    None         a single value on each side: no interval.
Verdict: 'identical' (equal values, and equal per-seed values), 'better' / 'worse' when the interval excludes 0
(the direction from the row's higher_is_better), 'changed' when it does for a metric without a direction,
'no significant change' when it covers 0, 'no interval' without one, 'only in A' / 'only in B'.

A gate `METRIC:TOL` fails when the metric's verdict is 'worse' and |Δ| exceeds the tolerance: '+2%' relative to
|A|, '+0.5' absolute, '' (just the metric) any significant worsening. Torch-free.
"""
from __future__ import annotations

import math
import re
from typing import Any, Callable, Iterable, Mapping

from .config import dotted_items
from .errors import UserError
from .registry import did_you_mean
from .schema import METRIC_COLUMNS

__all__ = ["compare_runs", "parse_fail_if", "gate", "config_diff", "format_comparison", "stored_features"]

_Z = 1.959963984540054


def _key(r: Mapping) -> tuple:
    return r["metric"], tuple(sorted((k, str(v)) for k, v in r.items() if k not in METRIC_COLUMNS and k != "seed"))


def _rows(res: Any) -> tuple[dict, dict]:
    """({key: aggregated row}, {key: [per-seed rows]}) of a run. With one seed the per-seed row stands for the
    aggregate (it carries the run's own interval, e.g. a bootstrap over samples; a one-seed aggregate has none)."""
    agg, seeds = {}, {}
    for r in res.metrics:
        if r.get("value") is None:
            continue
        if r.get("seed") is None:
            agg[_key(r)] = r
        else:
            seeds.setdefault(_key(r), []).append(r)
    for key, rows in seeds.items():
        if len(rows) == 1:
            agg[key] = rows[0]
    return agg, {k: sorted(float(r["value"]) for r in v) for k, v in seeds.items()}


def config_diff(a: Mapping, b: Mapping) -> list[tuple[str, Any, Any]]:
    """(dotted key, value in a, value in b) for every setting that differs."""
    fa, fb = dict(dotted_items(a)), dict(dotted_items(b))
    return [(k, fa.get(k), fb.get(k)) for k in sorted(set(fa) | set(fb)) if fa.get(k) != fb.get(k)]


def _interval(ra: Mapping, rb: Mapping, sa: list[float], sb: list[float]) -> tuple[tuple[float, float] | None, str | None]:
    if len(sa) >= 2 and len(sb) >= 2:
        from scipy import stats

        if max(sa) == min(sa) and max(sb) == min(sb):          # no spread on either side: the difference is exact
            d = sb[0] - sa[0]
            return (d, d), "welch"
        ci = stats.ttest_ind(sb, sa, equal_var=False).confidence_interval(0.95)
        return (float(ci.low), float(ci.high)), "welch"
    if all(r.get("ci_low") is not None and r.get("ci_high") is not None for r in (ra, rb)):
        se = [(float(r["ci_high"]) - float(r["ci_low"])) / (2 * _Z) for r in (ra, rb)]
        if se[0] > 0 or se[1] > 0:
            d, half = float(rb["value"]) - float(ra["value"]), _Z * math.hypot(*se)
            return (d - half, d + half), "intervals"
    return None, None


def _verdict(delta: float, ci: tuple[float, float] | None, better_up: bool | None, same: bool) -> str:
    if same:
        return "identical"
    if ci is None:
        return "no interval"
    if ci[0] <= 0 <= ci[1]:
        return "no significant change"
    if better_up is None:
        return "changed"
    return "better" if (delta > 0) == better_up else "worse"


def stored_features(cache_dir: Any = None) -> Callable[[Any, Mapping], tuple[str, Any, Any] | None]:
    """A loader of the features behind a run's Fréchet row: (res, row) → (the reference's identity, the reference
    (features, or (mu, sigma) of a reference file), the row's generated-set features), or None where they are not
    stored. `metrics` runs: the feature cache, keyed by the inputs' content hashes and the extractor description
    the run recorded (the reference file itself when it is unchanged). Experiment runs: the 'features' stage
    records of the real test set and of the row's variant (and seed). Reading only; numpy arrays."""
    from .cache import StageCache, StageKey, default_cache_dir, load_tree

    root = default_cache_dir() if cache_dir is None else cache_dir
    stages = StageCache(root)

    def stage_value(rec: Mapping | None):
        ok, value = stages.load(StageKey(rec["stage"], rec["key_hash"], {}), load_tree) if rec else (False, None)
        return value if ok else None

    def from_metrics_run(res: Any, row: Mapping, rec: Mapping):
        from .features.cache import FeatureCache, cache_key

        cache, desc, inputs, layer = FeatureCache(root), rec["extractor"], rec["inputs"], row.get("layer")
        feats = {side: cache.load_features(cache_key(inputs[f"{side}_content_sha256"], desc, layer)[0])
                 if inputs.get(f"{side}_content_sha256") else None for side in ("real", "fake")}
        real = feats["real"]
        if real is None and (inputs.get("real") or {}).get("kind") == "reference statistics":
            from .refstats import load_ref_stats

            path = (res.config or {}).get("real_path")
            try:
                ref = load_ref_stats(path) if path else None
            except (OSError, ValueError):
                ref = None
            if ref is not None and (ref.meta.get("file") or {}).get("sha256") == inputs["real_content_sha256"] \
                    and ref.meta.get("layer") == layer:
                real = (ref.mu, ref.sigma)
        ident = f"{inputs.get('real_content_sha256')}/{layer}/{desc.get('extractor')}"
        return None if real is None or feats["fake"] is None else (ident, real, feats["fake"])

    def load(res: Any, row: Mapping):
        recs = [s for s in res.stages or [] if s.get("stage") == "features"]
        own = next((s for s in recs if "extractor" in s and "inputs" in s), None)
        if own is not None:
            return from_metrics_run(res, row, own)
        variant, seed = row.get("variant"), row.get("seed")
        named = [s for s in recs if s.get("key_hash") and s.get("desc", "").endswith(
                 (f"features: {variant} seed={seed}",) + ((f"features: {variant}",) if len(res.seeds or []) <= 1
                                                          else ()))]
        real_rec = next((s for s in recs if s.get("key_hash") and s.get("desc", "").endswith("features: real test")),
                        None)
        if variant is None or not named or real_rec is None or len({s["key_hash"] for s in named}) != 1:
            return None
        real, fake = stage_value(real_rec), stage_value(named[0])
        return None if real is None or fake is None else (real_rec["key_hash"], real, fake)

    return load


def _paired_fd(ra: Mapping, rb: Mapping, a: Any, b: Any, features: Callable) -> tuple | None:
    """(interval, method) of FD_B − FD_A by a bootstrap over both runs' stored features, when they are stored,
    share their reference and reproduce both rows' values; else None."""
    import numpy as np

    from .metrics.frechet import fd, fd_difference_ci

    if not any(t in ra["metric"] for t in ("fd", "fid")) or ra["metric"].endswith("_gap"):
        return None
    sides = [features(res, r) for res, r in ((a, ra), (b, rb))]
    if None in sides or sides[0][0] != sides[1][0]:
        return None
    real = sides[0][1]
    fakes = [np.asarray(s[2], dtype=np.float64) for s in sides]
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if not all(math.isclose(fd(real=real, fake=f), float(r["value"]), rel_tol=1e-5, abs_tol=1e-9)
                   for f, r in zip(fakes, (ra, rb))):
            return None            # not these features' Fréchet distance (another layer, a changed cache entry)
        ci = fd_difference_ci(real=real, fake_a=fakes[0], fake_b=fakes[1], n_resamples=200, seed=0)
    return (ci.low, ci.high), ci.method


def compare_runs(a: Any, b: Any, features: Callable | None = None) -> dict:
    """The comparison of run `b` against run `a` (Results of one experiment); see the module docstring.
    features: a `stored_features` loader (None: no paired bootstrap)."""
    agg_a, seeds_a = _rows(a)
    agg_b, seeds_b = _rows(b)
    diffs = []
    for key in list(agg_a) + [k for k in agg_b if k not in agg_a]:
        ra, rb = agg_a.get(key), agg_b.get(key)
        d: dict[str, Any] = {"metric": key[0], "labels": dict(key[1]),
                             "higher_is_better": (ra or rb).get("higher_is_better"), "a": ra, "b": rb}
        if ra is None or rb is None:
            d.update(delta=None, ci=None, method=None, verdict="only in B" if ra is None else "only in A")
        else:
            sa, sb = seeds_a.get(key, []), seeds_b.get(key, [])
            delta = float(rb["value"]) - float(ra["value"])
            paired = (_paired_fd(ra, rb, a, b, features) if features is not None and len(sa) <= 1 and len(sb) <= 1
                      and delta != 0 else None)
            ci, method = paired or _interval(ra, rb, sa, sb)
            same = delta == 0 and sa == sb
            d.update(delta=delta, ci=ci, method=method, verdict=_verdict(delta, ci, d["higher_is_better"], same))
        diffs.append(d)
    return {"experiment": a.experiment, "a": a.run_id, "b": b.run_id, "commits": (a.git.get("commit"),
            b.git.get("commit")), "config_diff": config_diff(a.config, b.config), "differences": diffs,
            "identical": all(d["verdict"] == "identical" for d in diffs)}


_GATE = re.compile(r"^(?P<metric>[^:]+?)(?::\s*\+?(?P<tol>\d+(?:\.\d+)?(?:e-?\d+)?)(?P<pct>%)?)?$")


def parse_fail_if(specs: Iterable[str]) -> list[tuple[str, float, bool]]:
    """[(metric, tolerance, relative)] from 'fd_effnet:+2%', 'precision:+0.01', 'recall'."""
    out = []
    for spec in specs:
        m = _GATE.match(spec.strip())
        if not m:
            raise UserError(f"--fail-if {spec!r} is not METRIC, METRIC:+TOL or METRIC:+TOL%",
                            hint="e.g. --fail-if 'fd_effnet:+2%' or --fail-if 'precision:+0.01'")
        out.append((m["metric"].strip(), float(m["tol"] or 0.0), bool(m["pct"])))
    return out


def gate(cmp: Mapping, gates: list[tuple[str, float, bool]]) -> list[str]:
    """Sentences for every gated metric row that got significantly worse beyond its tolerance (empty: pass).
    A gate naming a metric neither run has is an input error (did-you-mean)."""
    names = sorted({d["metric"] for d in cmp["differences"]})
    failed = []
    for metric, tol, rel in gates:
        if metric not in names:
            raise UserError(f"--fail-if names metric {metric!r}, which neither run has.{did_you_mean(metric, names)}",
                            hint=f"metrics of these runs: {', '.join(names)}")
        for d in cmp["differences"]:
            if d["metric"] != metric or d["verdict"] != "worse":
                continue
            limit = tol * abs(float(d["a"]["value"])) / 100 if rel else tol
            if abs(d["delta"]) > limit:
                failed.append(f"{metric}{_labels(d)} got worse by {d['delta']:+.4g} (95 % interval "
                              f"[{d['ci'][0]:+.4g}, {d['ci'][1]:+.4g}]), beyond the tolerance "
                              f"{tol:g}{'%' if rel else ''}")
    return failed


def _labels(d: Mapping) -> str:
    return f" [{', '.join(f'{k}={v}' for k, v in d['labels'].items())}]" if d["labels"] else ""


def _num(x: Any) -> str:
    return "-" if x is None else f"{float(x):.4g}"


def format_comparison(cmp: Mapping) -> list[str]:
    """The comparison as text lines: header, config diff, one line per metric row."""
    lines = [f"{cmp['experiment']}: A = {cmp['a']} (commit {(cmp['commits'][0] or '?')[:8]}), "
             f"B = {cmp['b']} (commit {(cmp['commits'][1] or '?')[:8]})"]
    if cmp["config_diff"]:
        lines.append("config differences: " + "; ".join(f"{k}: {va!r} → {vb!r}" for k, va, vb in cmp["config_diff"]))
    else:
        lines.append("config: identical")
    if cmp["identical"]:
        lines.append("every number is identical")
    for d in cmp["differences"]:
        arrow = {True: " ↑", False: " ↓"}.get(d["higher_is_better"], "")
        ci = f" [{d['ci'][0]:+.4g}, {d['ci'][1]:+.4g}]" if d["ci"] else ""
        delta = f"Δ {d['delta']:+.4g}{ci}" if d["delta"] is not None else ""
        lines.append(f"{d['metric']}{arrow}{_labels(d)}: {_num((d['a'] or {}).get('value'))} → "
                     f"{_num((d['b'] or {}).get('value'))}  {delta}  {d['verdict']}"
                     + (f" ({d['method']})" if d["method"] and d["verdict"] != "identical" else ""))
    return lines
