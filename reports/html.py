"""Render stored results as self-contained HTML (figures inlined as data URIs, no server).

Only reads `results.json` (through `bench.schema`, which checks its schema version and field types) and
the figure files inside its run directory; never recomputes a metric. A figure whose path leads outside the
run directory (absolute, through `..`, or through a symlink: checked after `Path.resolve()`) is never read:
it is left out of the report with a one-line `warning:` on stderr (the report still renders, as it does
when a figure file is missing). Imports nothing of the harness but `bench.schema` and `bench.errors`, and
nothing of `dlc`, so rendering never imports torch.
- `render_run(run_dir)`         → run_dir/report.html (its summary: one table per kind of measure, `summary_tables`)
- `render_index(run_dirs, out)` → one page linking several runs (a suite) with a comparison table.
"""
from __future__ import annotations

import base64
import math
import os
import sys
from pathlib import Path
from typing import Any, Mapping

import jinja2
import yaml

from bench.errors import UserError
from bench.schema import (HISTORY_COLUMNS, METRIC_COLUMNS, REPORT_HTML, Results, atomic_write_bytes, label_columns,
                          read_results)

METHOD_LABELS = ("variant", "method", "conditioning", "representation")

_env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(Path(__file__).parent / "templates")),
                          autoescape=jinja2.select_autoescape(["html", "j2"]), trim_blocks=True,
                          lstrip_blocks=True)

TIER_BADGES = {
    "smoke": "smoke test — numbers are not for reporting",
    "laptop": "laptop scale — not comparable with published (paper-scale) numbers",
}


class ReportError(UserError):
    """A report could not be rendered (kept for callers that catch it; every UserError is one line in the CLI)."""


#################################################################################
#                                 Formatting                                    #
#################################################################################

def fmt(x: Any, digits: int = 4) -> str:
    if x is None:
        return "–"
    if isinstance(x, bool):
        return str(x).lower()
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        if not math.isfinite(x):
            return "nan"
        if x == 0:
            return "0"
        a = abs(x)
        if a >= 1e5 or a < 1e-3:
            return f"{x:.{digits - 1}e}"
        return f"{x:.{digits}g}"
    return str(x)


def fmt_ci(row: Mapping) -> str:
    v, lo, hi = row.get("value"), row.get("ci_low"), row.get("ci_high")
    if v is None:
        return "–"
    if lo is None or hi is None or (lo == v and hi == v):
        return fmt(v)
    half_lo, half_hi = v - lo, hi - v
    if abs(half_lo - half_hi) <= 1e-9 * max(1.0, abs(v)) + 0.02 * max(half_lo, half_hi):
        return f"{fmt(v)} ± {fmt((hi - lo) / 2, 2)}"
    return f"{fmt(v)} [{fmt(lo, 3)}, {fmt(hi, 3)}]"


def arrow(hib: Any) -> str:
    return "↑" if hib is True else "↓" if hib is False else ""


def data_uri(path: Path) -> str | None:
    if not path.is_file():
        return None
    mime = {".png": "image/png", ".svg": "image/svg+xml", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}.get(
        path.suffix.lower(), "application/octet-stream")
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode()


#################################################################################
#                                  Tables                                       #
#################################################################################

# Labels that say what a measure is of or how it was taken (which factor, against what, with which features):
# they join the metric name in a column header instead of keying a row, so FD (with its features) and
# object_frac (without) share the variant's row.
QUALIFIER_LABELS = ("factor", "against", "chance", "features", "layer", "resize")

# Kinds of measure, one summary section each, in this order: (id, heading, test on a seed-aggregated row). A row
# is of the first kind (in MATCH_ORDER) whose test it passes; a row that passes none is of "other measures".
MEASURE_KINDS = (
    ("samples", "Sample metrics", lambda r: any(c in r for c in (*METHOD_LABELS, "features", "layer"))),
    ("probes", "Probes: representation × factor", lambda r: "representation" in r and "factor" in r),
    ("codes", "Code statistics", lambda r: r["metric"].startswith("code")),
    ("training", "Training", lambda r: r["metric"].startswith("train_")),
    ("other", "Other measures", lambda r: True),
)
MATCH_ORDER = ("probes", "codes", "training", "samples", "other")

# Metric-name prefixes without a better direction whatever their rows say: Vendi's diversity is best when
# closest to the data's own, not highest. No arrow, never "best".
NO_DIRECTION = ("vendi",)


def direction(metric: str, higher_is_better: Any) -> bool | None:
    """The direction a report may claim for `metric`: its row's, except for NO_DIRECTION metrics."""
    return None if metric.startswith(NO_DIRECTION) else higher_is_better


def _hinted(pref: list, value: Any) -> int:
    """The value's place in a preferred order (a display hint); after every hinted value when it has none."""
    return pref.index(value) if value in pref else len(pref)


def _order_key(column: str, value: Any, label_order: Mapping[str, list]) -> tuple:
    """Preferred value orders (display hints) first, then numbers, then text."""
    pref = label_order.get(column)
    if pref and value in pref:
        return (0, pref.index(value), "")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (1, value, "")
    return (2, 0, "" if value is None else str(value))


def _sort_rows(rows: list[Mapping], labels: list[str], label_order: Mapping[str, list]) -> list[Mapping]:
    """Sort by the label columns, the method column last so methods sit next to each other."""
    method = next((c for c in METHOD_LABELS if c in labels), None)
    order = [c for c in labels if c != method] + ([method] if method else [])
    return sorted(rows, key=lambda r: tuple(_order_key(c, r.get(c), label_order) for c in order))


def _column(r: Mapping) -> tuple:
    """A row's summary column: its metric and qualifiers, ((qualifier, value), ...)."""
    return r["metric"], tuple((q, r[q]) for q in QUALIFIER_LABELS if r.get(q) is not None)


def summary_table(rows: list[Mapping], display: Mapping | None = None) -> dict:
    """Pivot the seed-aggregated rows: one line per combination of row labels, one column per metric and its
    qualifiers (QUALIFIER_LABELS); display hints order the columns (metric_order) and the lines (label_order)."""
    display = display or {}
    label_order = display.get("label_order") or {}
    agg = [r for r in rows if r.get("seed") is None]
    labels = label_columns(agg, exclude=("seed", *QUALIFIER_LABELS))
    labels = [c for c in labels if any(r.get(c) is not None for r in agg)]      # no label column without a value
    columns: list[tuple] = []                  # (metric, ((qualifier, value), ...)), in order of first appearance
    hib: dict[tuple, Any] = {}
    for r in agg:
        col = _column(r)
        if col not in hib:
            columns.append(col)
            hib[col] = direction(r["metric"], r.get("higher_is_better"))
    pref = list(display.get("metric_order") or [])
    metrics = list(dict.fromkeys(m for m, _ in columns))
    position = {c: i for i, c in enumerate(columns)}        # a metric's qualifiers: hinted order, else as emitted
    columns.sort(key=lambda c: (_hinted(pref, c[0]), metrics.index(c[0]),
                                tuple(_hinted(label_order.get(q) or [], v) for q, v in c[1]), position[c]))
    lines: dict[tuple, dict] = {}
    for r in _sort_rows(agg, labels, label_order):
        key = tuple(r.get(c) for c in labels)
        line = lines.setdefault(key, {"labels": [fmt(r.get(c)) if r.get(c) is not None else "" for c in labels],
                                      "cells": {}, "key": key})
        line["cells"][_column(r)] = r
    best = _best_cells(list(lines.values()), labels, columns, hib)
    out_lines = []
    for line in lines.values():
        cells = []
        for col in columns:
            r = line["cells"].get(col)
            cells.append({"text": fmt_ci(r) if r else "", "n": r.get("n") if r else None,
                          "best": (line["key"], col) in best})
        out_lines.append({"labels": line["labels"], "cells": cells})
    return {"labels": labels, "lines": out_lines,
            "metrics": [{"name": m, "arrow": arrow(hib[(m, q)]), "undirected": m.startswith(NO_DIRECTION),
                         "qualifiers": " · ".join(f"{k}={fmt(v)}" for k, v in q)} for m, q in columns]}


def summary_tables(rows: list[Mapping], display: Mapping | None = None) -> list[dict]:
    """The seed-aggregated rows as one section per kind of measure (MEASURE_KINDS), each a summary_table per set
    of row labels its rows carry: no line with an empty label, every row in exactly one cell."""
    display = display or {}
    pref = list(display.get("metric_order") or [])
    tests = {kind: test for kind, _, test in MEASURE_KINDS}
    groups: dict[str, dict[frozenset, list[Mapping]]] = {}
    for r in rows:
        if r.get("seed") is not None:
            continue
        kind = next(k for k in MATCH_ORDER if tests[k](r))
        labels = frozenset(k for k, v in r.items() if k not in (*METRIC_COLUMNS, "seed", *QUALIFIER_LABELS)
                           and v is not None)
        groups.setdefault(kind, {}).setdefault(labels, []).append(r)
    rank = lambda part: min(_hinted(pref, r["metric"]) for r in part)
    sections = []
    for kind, title, _ in MEASURE_KINDS:
        if kind in groups:
            tables = [summary_table(part, display) for part in sorted(groups[kind].values(), key=rank)]
            for i, t in enumerate(tables):
                t["id"] = f"summary-{kind}" + (f"-{i + 1}" if i else "")
            sections.append({"id": kind, "title": title, "tables": tables})
    return sections


REFERENCE_METHODS = ("real-train", "real", "data", "floor")     # floors and data rows: compared against, never best


def _has_interval(r: Mapping) -> bool:
    lo, hi = r.get("ci_low"), r.get("ci_high")
    return lo is not None and hi is not None and math.isfinite(lo) and math.isfinite(hi) and hi > lo


def _best_cells(lines: list[dict], labels: list[str], columns: list[tuple], hib: Mapping) -> set:
    """Bold the best method per column among lines that share every other label — only where the claim holds:
    the metric has a direction, the rows are methods (not a floor or data row), every compared row has a 95 %
    interval, and the best row's interval is clear of every other's (no bold inside overlapping intervals)."""
    method = next((c for c in METHOD_LABELS if c in labels), None)
    if method is None:
        return set()
    mi = labels.index(method)
    best: set = set()
    groups: dict[tuple, list[dict]] = {}
    for line in lines:
        if line["key"][mi] not in REFERENCE_METHODS:
            groups.setdefault(tuple(v for i, v in enumerate(line["key"]) if i != mi), []).append(line)
    for grp in groups.values():
        for col in columns:
            if hib.get(col) is None:
                continue
            rows = [(line["cells"][col], line["key"]) for line in grp if col in line["cells"]
                    and line["cells"][col]["value"] is not None and math.isfinite(line["cells"][col]["value"])]
            if len(rows) < 2 or not all(_has_interval(r) for r, _ in rows):
                continue
            rows.sort(key=lambda t: t[0]["value"], reverse=bool(hib[col]))
            (top, key), others = rows[0], [r for r, _ in rows[1:]]
            clear = (top["ci_low"] > max(r["ci_high"] for r in others) if hib[col]
                     else top["ci_high"] < min(r["ci_low"] for r in others))
            if clear:
                best.add((key, col))
    return best


def per_seed_table(rows: list[Mapping]) -> dict:
    seeded = [r for r in rows if r.get("seed") is not None]
    labels = label_columns(seeded)
    return {"columns": ["metric", *labels, "value", "n"],
            "rows": [[r["metric"], *[fmt(r.get(c)) for c in labels], fmt(r.get("value")), fmt(r.get("n"))]
                     for r in seeded]}


#################################################################################
#                                  Rendering                                    #
#################################################################################

def sweep_table(sweep: Mapping | None) -> dict | None:
    """The sweep section of a run report: its axes (dotted config keys) and one line per point."""
    if not sweep:
        return None
    axes = list(sweep.get("axes") or [])
    points = list(sweep.get("points") or [])
    return {"axes": axes, "points": [[fmt(p.get(a)) for a in axes] for p in points]}


def _commit(git: Mapping) -> str:
    return (git.get("commit") or "unknown")[:12] + (" (dirty)" if git.get("dirty") else "")


def _figure_src(run_dir: Path, fig: Mapping) -> str | None:
    """The figure as a data URI (its relative path when the file is missing); None, with a warning on stderr
    and nothing read, when its path resolves (symlinks followed) outside the run directory."""
    try:
        path = (run_dir / fig["path"]).resolve()
        inside = path.is_relative_to(run_dir.resolve())
    except (OSError, ValueError):       # a NUL byte, a symlink loop
        inside = False
    if not inside:
        print(f"warning: figure {fig['name']!r} at {fig['path']!r} lies outside the run directory {run_dir}; "
              "left out of the report", file=sys.stderr)
        return None
    return data_uri(path) or fig["path"]


def _context(results: Results, run_dir: Path) -> dict:
    rows = list(results.metrics)
    figures = []
    for f in results.figures:
        src = _figure_src(run_dir, f)
        if src is not None:
            figures.append({**f, "src": src})
    return {
        "r": results,
        "title": f"{results.experiment} · {results.preset or 'custom'}",
        "badge": TIER_BADGES.get(results.preset or ""),
        "summary": summary_tables(rows, results.display),
        "sweep": sweep_table(results.sweep),
        "per_seed": per_seed_table(rows),
        "figures": figures,
        "commit": _commit(results.git),
        "env": results.environment,
        "timings": [(k, fmt(float(v), 3)) for k, v in results.timings.items()],
        "stages": results.stages,
        "config_yaml": yaml.safe_dump(results.config, sort_keys=False),
        "notes": results.notes,
        "artifacts": results.artifacts,
    }


def render_run(run_dir: str | os.PathLike) -> Path:
    """Render run_dir/results.json to run_dir/report.html (UserError if it is missing, not JSON or not this
    schema). Reads no file outside run_dir: a figure path leading outside is skipped with a `warning:`."""
    run_dir = Path(run_dir)
    results = read_results(run_dir)
    page = _env.get_template("run.html.j2").render(**_context(results, run_dir))
    out = run_dir / REPORT_HTML
    atomic_write_bytes(out, page.encode())
    return out


def comparison_table(all_results: list[tuple[str, Results]]) -> dict:
    """Seed-aggregated metric rows side by side across runs, with Δ against the first run."""
    keys: list[tuple] = []
    values: dict[tuple, dict[int, Mapping]] = {}
    for i, (_, res) in enumerate(all_results):
        for r in res.metrics:
            if r.get("seed") is not None:
                continue
            labels = tuple((k, r[k]) for k in r if k not in METRIC_COLUMNS)
            key = (r["metric"], labels)
            if key not in values:
                keys.append(key)
                values[key] = {}
            values[key][i] = r
    lines = []
    for key in keys:
        per = values[key]
        first = per.get(0)
        cells = []
        for i in range(len(all_results)):
            r = per.get(i)
            delta = ""
            if r is not None and first is not None and i > 0 and r.get("value") is not None \
                    and first.get("value") is not None:
                delta = f"{r['value'] - first['value']:+.4g}"
            cells.append({"text": fmt_ci(r) if r else "", "delta": delta})
        any_row = next(iter(per.values()))
        lines.append({"metric": key[0], "arrow": arrow(direction(key[0], any_row.get("higher_is_better"))),
                      "labels": ", ".join(f"{k}={fmt(v)}" for k, v in key[1]), "cells": cells})
    return {"lines": lines}


def _verdict_rows(cmp: Mapping) -> dict:
    """A comparison record (plain data, as `bench.compare.compare_runs` makes it) as table cells."""
    rows = []
    for d in cmp["differences"]:
        ci = d.get("ci")
        hib = direction(d["metric"], d.get("higher_is_better"))    # a Vendi change is no better nor worse
        verdict = "changed" if hib is None and d["verdict"] in ("better", "worse") else d["verdict"]
        delta = "" if d.get("delta") is None else f"{d['delta']:+.4g}" + (f" [{ci[0]:+.4g}, {ci[1]:+.4g}]" if ci else "")
        rows.append({"metric": d["metric"], "arrow": arrow(hib),
                     "labels": ", ".join(f"{k}={v}" for k, v in d["labels"].items()),
                     "a": fmt_ci(d["a"]) if d.get("a") else "", "b": fmt_ci(d["b"]) if d.get("b") else "",
                     "delta": delta, "verdict": verdict + (f" ({d['method']})" if d.get("method") and verdict != "identical" else ""),
                     "css": {"worse": "worse", "better": "better"}.get(verdict, "same")})
    return {"a": cmp["a"], "b": cmp["b"], "config_diff": cmp["config_diff"], "identical": cmp["identical"],
            "rows": rows}


def render_index(run_dirs: list[str | os.PathLike], out: str | os.PathLike, title: str = "dlc-bench runs",
                 render_each: bool = True, verdicts: list[Mapping] | None = None) -> Path:
    """One page linking several runs (relative links), with their headline numbers side by side; `verdicts`:
    comparison records of later runs against the first (`dlc-bench compare`), one table each."""
    out = Path(out)
    entries, all_results = [], []
    for d in run_dirs:
        d = Path(d)
        res = read_results(d)
        if render_each:
            render_run(d)
        rel = os.path.relpath(d / REPORT_HTML, out.parent)
        entries.append({"experiment": res.experiment, "preset": res.preset, "link": rel, "run_id": res.run_id,
                        "wall": fmt(float(res.timings.get("total", 0)), 3), "commit": _commit(res.git),
                        "n_metrics": len(res.metrics), "description": res.description})
        all_results.append((str(d), res))
    compare = comparison_table(all_results) if len({r.experiment for _, r in all_results}) == 1 \
        and len(all_results) > 1 else None
    page = _env.get_template("index.html.j2").render(title=title, entries=entries, compare=compare,
                                                     run_names=[e["run_id"] for e in entries],
                                                     verdicts=[_verdict_rows(c) for c in verdicts or []])
    atomic_write_bytes(out, page.encode())
    return out


_COLOURS = ("#1f6feb", "#d97706", "#059669", "#7c3aed", "#dc2626", "#0891b2", "#65a30d", "#db2777")


def render_history(rows: list[Mapping], out: str | os.PathLike, experiment: str, metric: str) -> Path:
    """A page plotting one metric across recorded runs (`dlc-bench history ... --out`): one series per label
    combination, 95 % bands, rings where a value's interval clears the previous one's; a table of the points."""
    width, height, pad = 760, 340, 56
    series: dict[str, list[Mapping]] = {}
    for r in rows:
        name = " ".join(f"{k}={r[k]}" for k in sorted(r) if k not in HISTORY_COLUMNS)
        series.setdefault(name, []).append(r)
    runs = list(dict.fromkeys(r["run_id"] for r in rows))
    x_of = {run: pad + (width - 2 * pad) * (i + 0.5) / len(runs) for i, run in enumerate(runs)}
    ys = [v for r in rows for v in (r["value"], r.get("ci_low"), r.get("ci_high")) if v is not None and math.isfinite(v)]
    lo, hi = (min(ys), max(ys)) if ys else (0.0, 1.0)
    lo, hi = (lo - 0.5, hi + 0.5) if hi == lo else (lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo))
    y = lambda v: height - pad - (height - 2 * pad) * (v - lo) / (hi - lo)
    out_series = []
    for i, (name, pts) in enumerate(series.items()):
        points, prev = [], None
        for r in pts:
            if r["value"] is None or not math.isfinite(r["value"]):
                continue
            changed = prev is not None and _has_interval(r) and _has_interval(prev) and (
                r["ci_low"] > prev["ci_high"] or r["ci_high"] < prev["ci_low"])
            commit = (r.get("git_commit") or "-")[:8] + ("*" if r.get("git_dirty") else "")
            points.append({"x": round(x_of[r["run_id"]], 1), "y": round(y(r["value"]), 1), "changed": changed,
                           "text": fmt_ci(r), "commit": commit, "finished": r.get("finished_at") or "",
                           "tip": f"{commit} {r.get('finished_at') or ''}: {fmt_ci(r)}"})
            prev = r
        band = [r for r in pts if _has_interval(r)]
        poly = ([f"{x_of[r['run_id']]:.1f},{y(r['ci_high']):.1f}" for r in band]
                + [f"{x_of[r['run_id']]:.1f},{y(r['ci_low']):.1f}" for r in reversed(band)])
        out_series.append({"name": name, "colour": _COLOURS[i % len(_COLOURS)], "points": points,
                           "line": " ".join(f"{p['x']},{p['y']}" for p in points),
                           "band": " ".join(poly) if len(band) > 1 else ""})
    yticks = [{"y": round(y(lo + (hi - lo) * k / 4), 1), "text": fmt(lo + (hi - lo) * k / 4, 3)} for k in range(5)]
    commits = {r["run_id"]: (r.get("git_commit") or "-")[:7] for r in rows}
    xticks = [{"x": round(x_of[run], 1), "text": commits[run]} for run in runs]
    page = _env.get_template("history.html.j2").render(
        title=f"{experiment} · {metric} across runs", width=width, height=height, pad=pad, series=out_series,
        yticks=yticks, xticks=xticks, n_points=sum(len(s["points"]) for s in out_series), n_runs=len(runs))
    out = Path(out)
    atomic_write_bytes(out, page.encode())
    return out


__all__ = ["render_run", "render_index", "render_history", "summary_table", "summary_tables", "sweep_table",
           "comparison_table", "direction", "fmt", "fmt_ci", "ReportError"]
