"""The results schema, torch-free: the one place where results are defined, written and read.

    results.json   one `Results` record (the source of truth; written last: it marks a complete run)
    results.csv    one row per metric value: metric, value, ci_low, ci_high, n, higher_is_better, labels...

A metric row is a flat dict of the METRIC_COLUMNS followed by the label columns that identify it
(variant, n_modes, seed, ...). Rows aggregated over seeds have no `seed`. A run that swept config keys
records `sweep = {"axes": [dotted keys], "points": [{axis: value, ...}, ...]}`, and each of its metric
rows carries every axis as a label column named by the dotted key (e.g. "prior.eta").

Imports only the standard library, `dlc.io` and `bench.errors`, so `reports` (which imports only
this module) never pulls in torch.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from dlc.io import atomic_write_bytes

from .errors import UserError

__all__ = [
    "SCHEMA_VERSION", "METRIC_COLUMNS", "HISTORY_COLUMNS", "RESULTS_JSON", "RESULTS_CSV", "REPORT_HTML",
    "metric_row", "label_columns", "rows_to_csv", "clean_json",
    "Results", "write_results", "read_results", "atomic_write_bytes",
]

SCHEMA_VERSION = 2          # 1 → 2: the record gained `sweep`
# how a record of each older version becomes the next one (read_results / from_dict apply them in turn)
_UPGRADES = {1: lambda d: {**d, "sweep": None, "schema_version": 2}}    # a v1 run was never a sweep
METRIC_COLUMNS = ("metric", "value", "ci_low", "ci_high", "n", "higher_is_better")
# the columns of a run-store history row (bench.store.RunStore.history); its other keys are the row's labels
HISTORY_COLUMNS = ("finished_at", "git_commit", "git_dirty", "config_hash", "run_id", "value", "ci_low", "ci_high",
                   "n", "seed")
RESULTS_JSON = "results.json"
RESULTS_CSV = "results.csv"
REPORT_HTML = "report.html"

_NOT_OURS = "it was not written by dlc-bench, or the file was edited by hand"


#################################################################################
#                                  Metric rows                                  #
#################################################################################

def metric_row(metric: str, value: float, *, higher_is_better: bool | None, ci_low: float | None = None,
               ci_high: float | None = None, n: int | None = None, **labels: Any) -> dict:
    """One metric row: the METRIC_COLUMNS, then `labels` in the order given."""
    if not isinstance(metric, str) or not metric:
        raise ValueError("metric name must be a non-empty string")
    for k in labels:
        if k in METRIC_COLUMNS:
            raise ValueError(f"label {k!r} clashes with a metric column")
    row = {"metric": metric, "value": _num(value), "ci_low": _num(ci_low), "ci_high": _num(ci_high),
           "n": None if n is None else int(n), "higher_is_better": higher_is_better}
    row.update(labels)
    return row


def _num(x: Any) -> float | None:
    if x is None:
        return None
    return float(x)  # NaN/inf are kept here; JSON writes them as null (see clean_json)


def label_columns(rows: Iterable[Mapping], exclude: Iterable[str] = ()) -> list[str]:
    """The label columns of `rows` (every key that is not a METRIC_COLUMN), in order of first appearance."""
    exclude = tuple(exclude)
    cols: list[str] = []
    for r in rows:
        for k in r:
            if k not in METRIC_COLUMNS and k not in exclude and k not in cols:
                cols.append(k)
    return cols


def rows_to_csv(rows: Iterable[Mapping]) -> str:
    """CSV text: header METRIC_COLUMNS + label columns, one line per row, None as an empty cell."""
    rows = list(rows)
    cols = [*METRIC_COLUMNS, *label_columns(rows)]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({c: ("" if r.get(c) is None else r.get(c)) for c in cols})
    return buf.getvalue()


def clean_json(o: Any) -> Any:
    """JSON-safe copy: NaN/inf → None, tuples → lists, Paths → str, mapping keys → str."""
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, Mapping):
        return {str(k): clean_json(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [clean_json(v) for v in o]
    if isinstance(o, Path):
        return str(o)
    return o


#################################################################################
#                                 The record                                    #
#################################################################################

@dataclass(frozen=True)
class Results:
    """One run: what ran (experiment, config, code, environment), how (stages, cache hits), what it measured.

    Frozen (fields can't be rebound); the lists and dicts inside stay ordinary containers. For callers
    written against the old plain dict, `r["metrics"]`, `r.get("preset")`, `"sweep" in r` and `dict(r)`
    work too, with the keys of `to_dict()`.
    """
    run_id: str
    experiment: str
    experiment_version: str
    description: str
    preset: str | None
    config: dict
    config_hash: str
    code_version: str
    git: dict
    environment: dict
    seeds: list[int]
    started_at: str
    finished_at: str
    timings: dict
    stages: list[dict]
    cache: dict
    metrics: list[dict]
    figures: list[dict] = field(default_factory=list)
    artifacts: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    display: dict = field(default_factory=dict)
    sweep: dict | None = None
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict:
        """The JSON-safe dict written to results.json (schema_version first)."""
        d: dict[str, Any] = {"schema_version": self.schema_version}
        d.update((name, getattr(self, name)) for name in _FIELDS if name != "schema_version")
        return clean_json(d)

    @classmethod
    def from_dict(cls, d: Mapping, source: str = "results") -> "Results":
        """Check and convert a results dict (e.g. parsed results.json). Keys outside the schema are ignored.

        Raises UserError (with a hint) on a wrong or missing schema_version, missing required keys, or a
        field of the wrong type: a main field, a metric row's columns or labels, a figure entry, the timings,
        git commit, stage seconds or display hints (everything a report reads, so rendering never crashes).
        """
        if not isinstance(d, Mapping):
            raise UserError(f"{source} is not a results record (a JSON object), got {type(d).__name__}",
                            hint=_NOT_OURS)
        version = d.get("schema_version")
        while version in _UPGRADES and version != SCHEMA_VERSION:      # an older record: bring it up to date
            d = _UPGRADES[version](d)
            version = d["schema_version"]
        if version != SCHEMA_VERSION:
            found = "no schema_version" if version is None else f"schema version {version!r}"
            raise UserError(f"{source} has {found}; this dlc-bench reads schema versions "
                            f"{', '.join(map(str, sorted(_UPGRADES)))} and {SCHEMA_VERSION}",
                            hint="re-run the experiment with this dlc-bench (cached stages are reused), or read "
                                 "it with the dlc-bench version that wrote it")
        missing = [name for name in _REQUIRED if name not in d]
        if missing:
            raise UserError(f"{source} lacks the key{'s' if len(missing) > 1 else ''} {', '.join(missing)}",
                            hint=_NOT_OURS)
        values = {name: d[name] for name in _FIELDS if name in d}
        if isinstance(values["experiment_version"], int) and not isinstance(values["experiment_version"], bool):
            values["experiment_version"] = str(values["experiment_version"])
        problems = _type_problems(values)
        if problems:
            raise UserError(f"{source} has fields of the wrong type: {'; '.join(problems)}", hint=_NOT_OURS)
        for name in _DICT_FIELDS:
            if values.get(name) is not None:
                values[name] = dict(values[name])
        for name in _LIST_FIELDS:
            if name in values:
                values[name] = [dict(v) if isinstance(v, Mapping) else v for v in values[name]]
        if values.get("sweep") is not None:
            values["sweep"] = {"axes": list(values["sweep"]["axes"]),
                               "points": [dict(p) for p in values["sweep"]["points"]]}
        return cls(**values)

    # dict-style access, for callers written against the plain results dict (transition)
    def __getitem__(self, key: str) -> Any:
        if key not in _FIELD_SET:
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key) if key in _FIELD_SET else default

    def __contains__(self, key: object) -> bool:
        return key in _FIELD_SET

    def keys(self) -> Iterator[str]:
        return iter(("schema_version", *(n for n in _FIELDS if n != "schema_version")))


_FIELDS = tuple(f.name for f in dataclasses.fields(Results))
_FIELD_SET = frozenset(_FIELDS)
_REQUIRED = tuple(f.name for f in dataclasses.fields(Results)
                  if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
_STR_FIELDS = ("run_id", "experiment", "experiment_version", "description", "config_hash", "code_version",
               "started_at", "finished_at")
_DICT_FIELDS = ("config", "git", "environment", "timings", "cache", "display")
_LIST_FIELDS = ("seeds", "stages", "metrics", "figures", "artifacts", "notes")


def _is_num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _row_problem(r: Mapping) -> str | None:
    """What is wrong with one metric row (the columns' types; label values must be JSON scalars), or None."""
    if not isinstance(r.get("metric"), str) or not r["metric"] or "value" not in r:
        return "should have a string 'metric' and a 'value'"
    for k in ("value", "ci_low", "ci_high"):
        if r.get(k) is not None and not _is_num(r[k]):
            return f"{k} should be a number or null, got {type(r[k]).__name__}"
    for k in ("n", "seed"):
        if r.get(k) is not None and not (isinstance(r[k], int) and not isinstance(r[k], bool)):
            return f"{k} should be an integer or null, got {type(r[k]).__name__}"
    if r.get("higher_is_better") is not None and not isinstance(r["higher_is_better"], bool):
        return f"higher_is_better should be true, false or null, got {type(r['higher_is_better']).__name__}"
    label = next((k for k, x in r.items() if k not in METRIC_COLUMNS
                  and x is not None and not isinstance(x, (str, int, float))), None)
    if label is not None:
        return f"label {label!r} should be a string, number, boolean or null, got {type(r[label]).__name__}"
    return None


def _figure_problem(f: Mapping) -> str | None:
    if not isinstance(f.get("name"), str) or not isinstance(f.get("path"), str) or not f["path"]:
        return "should have a string 'name' and a non-empty string 'path'"
    if f.get("caption") is not None and not isinstance(f["caption"], str):
        return f"caption should be a string or null, got {type(f['caption']).__name__}"
    return None


def _part_problems(v: Mapping[str, Any]) -> list[str]:
    """The parts a report reads beside the metric rows: timings, the commit, stage seconds, display hints."""
    out: list[str] = []
    t, git, stages, d = v["timings"], v["git"], v["stages"], v.get("display")
    if isinstance(t, Mapping) and ("total" not in t or not all(_is_num(x) for x in t.values())):
        out.append("timings should map names to seconds (numbers), with a 'total'")
    if isinstance(git, Mapping) and git.get("commit") is not None and not isinstance(git["commit"], str):
        out.append("git.commit should be a string or null")
    if isinstance(stages, (list, tuple)) and any(isinstance(s, Mapping) and s.get("seconds") is not None
                                                 and not _is_num(s["seconds"]) for s in stages):
        out.append("the seconds of a stage should be a number")
    if isinstance(d, Mapping):
        order, labels = d.get("metric_order"), d.get("label_order")
        if order is not None and not (isinstance(order, list) and all(isinstance(m, str) for m in order)):
            out.append("display.metric_order should be a list of metric names")
        if labels is not None and not (isinstance(labels, Mapping)
                                       and all(isinstance(x, list) for x in labels.values())):
            out.append("display.label_order should map label columns to lists of values")
    return out


def _type_problems(v: Mapping[str, Any]) -> list[str]:
    out: list[str] = []

    def bad(name: str, want: str) -> None:
        out.append(f"{name} should be {want}, got {type(v[name]).__name__}")

    for name in _STR_FIELDS:
        if not isinstance(v[name], str):
            bad(name, "a string")
    if v["preset"] is not None and not isinstance(v["preset"], str):
        bad("preset", "a string or null")
    for name in _DICT_FIELDS:
        if name in v and not isinstance(v[name], Mapping):
            bad(name, "an object")
    for name in _LIST_FIELDS:
        if name in v and not isinstance(v[name], (list, tuple)):
            bad(name, "a list")
    if isinstance(v["seeds"], (list, tuple)) and not all(
            isinstance(s, int) and not isinstance(s, bool) for s in v["seeds"]):
        out.append("seeds should be a list of integers")
    for name in ("stages", "metrics", "figures", "artifacts"):
        if isinstance(v.get(name), (list, tuple)) and not all(isinstance(x, Mapping) for x in v[name]):
            out.append(f"{name} should be a list of objects")
    if isinstance(v.get("notes"), (list, tuple)) and not all(isinstance(x, str) for x in v["notes"]):
        out.append("notes should be a list of strings")
    for name, check in (("metrics", _row_problem), ("figures", _figure_problem)):
        if isinstance(v.get(name), (list, tuple)):
            found = next(((i, p) for i, x in enumerate(v[name]) if isinstance(x, Mapping) and (p := check(x))), None)
            if found:
                out.append(f"{name}[{found[0]}] {found[1]}")
    out += _part_problems(v)
    if not isinstance(v.get("schema_version", SCHEMA_VERSION), int):
        bad("schema_version", "an integer")
    sweep = v.get("sweep")
    if sweep is not None:
        if not isinstance(sweep, Mapping) or not isinstance(sweep.get("axes"), (list, tuple)) \
                or not isinstance(sweep.get("points"), (list, tuple)):
            out.append("sweep should be null or an object with lists 'axes' and 'points'")
        elif not all(isinstance(a, str) and a for a in sweep["axes"]):
            out.append("sweep.axes should be dotted config keys (strings)")
        elif not all(isinstance(p, Mapping) and set(p) == set(sweep["axes"]) for p in sweep["points"]):
            out.append("every sweep point should be an object with exactly the sweep axes as keys")
    return out


#################################################################################
#                                Write and read                                 #
#################################################################################

def write_results(out_dir: str | Path, results: Results | Mapping) -> None:
    """Write results.csv, then results.json (last: its presence marks a complete run), each atomically.

    A plain mapping is accepted during the transition to `Results`: it is checked with
    `Results.from_dict` (schema_version defaults to SCHEMA_VERSION), and keys outside the schema are
    still written to results.json (readers ignore them).
    """
    extra: dict[str, Any] = {}
    if not isinstance(results, Results):
        if not isinstance(results, Mapping):
            raise TypeError(f"write_results needs a Results or a mapping, got {type(results).__name__}")
        d = {"schema_version": SCHEMA_VERSION, **results}
        extra = {k: v for k, v in d.items() if k not in _FIELD_SET}
        results = Results.from_dict(d, source="results to write")
    data = results.to_dict()
    data.update(clean_json(extra))
    text = json.dumps(data, indent=2, allow_nan=False).encode()   # serialise before touching any file
    out_dir = Path(out_dir)
    atomic_write_bytes(out_dir / RESULTS_CSV, rows_to_csv(data["metrics"]).encode())
    atomic_write_bytes(out_dir / RESULTS_JSON, text)


def read_results(run_dir: str | Path) -> Results:
    """The `Results` stored in run_dir/results.json; UserError when absent, not JSON or not this schema."""
    path = Path(run_dir) / RESULTS_JSON
    if not path.is_file():
        raise UserError(f"{run_dir} holds no {RESULTS_JSON}",
                        hint="pass a directory written by `dlc-bench run`, `suite` or `metrics`")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path} is not valid JSON: {e}",
                        hint="the run was interrupted or the file was edited; re-run the experiment") from None
    return Results.from_dict(data, source=str(path))
