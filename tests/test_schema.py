"""The results schema (bench.schema), its torch-free file helpers (dlc.io) and aggregation over seeds."""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import math
import random
from collections import OrderedDict
from pathlib import Path

import pytest

from bench import schema
from bench.aggregate import aggregate_over_seeds, t_interval
from bench.errors import UserError
from bench.schema import (METRIC_COLUMNS, RESULTS_CSV, RESULTS_JSON, SCHEMA_VERSION, Results, clean_json,
                          label_columns, metric_row, read_results, rows_to_csv, write_results)
from dlc.io import atomic_write, atomic_write_bytes, bytes_sha256, file_sha256

DATA = Path(__file__).parent / "data"


def _record(**over) -> Results:
    rows = [metric_row("fd", 3.5, higher_is_better=False, n=100, variant="dlc", **{"prior.eta": 0.01}, seed=0),
            metric_row("fd", float("nan"), higher_is_better=False, n=100, variant="dlc", **{"prior.eta": 0.1}, seed=0),
            metric_row("coverage", 0.75, ci_low=0.7, ci_high=0.8, higher_is_better=True, variant="none",
                       **{"prior.eta": 0.01})]
    kw = dict(run_id="r1", experiment="eta-sweep", experiment_version="1", description="d", preset="smoke",
              config={"prior": {"eta": [0.01, 0.1]}, "path": Path("/x")}, config_hash="abc", code_version="def",
              git={"commit": "0" * 40, "dirty": False}, environment={"python": "3.11"}, seeds=[0],
              started_at="t0", finished_at="t1", timings={"total": 1.25}, stages=[{"stage": "s", "cached": False}],
              cache={"hits": 0, "misses": 1}, metrics=rows, figures=[{"name": "f", "path": "figures/f.png"}],
              notes=["n"], display={"metric_order": ["fd"]},
              sweep={"axes": ["prior.eta"], "points": [{"prior.eta": 0.01}, {"prior.eta": 0.1}]})
    kw.update(over)
    return Results(**kw)


def _listing(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir())


#################################################################################
#                                 The record                                    #
#################################################################################

def test_fields_are_the_agreed_interface():
    names = [f.name for f in dataclasses.fields(Results)]
    assert names == ["run_id", "experiment", "experiment_version", "description", "preset", "config", "config_hash",
                     "code_version", "git", "environment", "seeds", "started_at", "finished_at", "timings", "stages",
                     "cache", "metrics", "figures", "artifacts", "notes", "display", "sweep", "schema_version"]
    assert SCHEMA_VERSION == 2
    required = {k: v for k, v in dataclasses.asdict(_record()).items()
                if k not in ("figures", "artifacts", "notes", "display", "sweep", "schema_version")}
    r = Results(**required)
    assert (r.figures, r.artifacts, r.notes, r.display, r.sweep, r.schema_version) == ([], [], [], {}, None, 2)
    assert r.figures is not Results(**required).figures                         # default_factory, not shared
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.preset = "laptop"


def test_to_dict_is_json_safe_and_round_trips(tmp_path):
    r = _record()
    d = r.to_dict()
    assert list(d)[0] == "schema_version" and d["schema_version"] == SCHEMA_VERSION
    assert d["metrics"][1]["value"] is None                       # NaN → null
    assert d["config"]["path"] == "/x"                            # Path → str
    json.dumps(d, allow_nan=False)
    back = Results.from_dict(json.loads(json.dumps(d)))
    assert back.to_dict() == d
    write_results(tmp_path, r)
    got = read_results(tmp_path)
    assert isinstance(got, Results) and got == back
    assert got.sweep == {"axes": ["prior.eta"], "points": [{"prior.eta": 0.01}, {"prior.eta": 0.1}]}
    assert json.loads((tmp_path / RESULTS_JSON).read_text()) == d


def test_dict_style_access_for_old_callers():
    r = _record()
    assert r["experiment"] == "eta-sweep" and r.get("preset") == "smoke" and r.get("nope", 7) == 7
    assert "sweep" in r and "nope" not in r
    assert dict(r).keys() == r.to_dict().keys()
    with pytest.raises(KeyError):
        r["nope"]


@pytest.mark.parametrize("version", [0, 3, None, "2"])
def test_wrong_or_missing_schema_version_is_a_user_error_with_hint(tmp_path, version):
    write_results(tmp_path, _record())
    data = json.loads((tmp_path / RESULTS_JSON).read_text())
    if version is None:
        del data["schema_version"]
    else:
        data["schema_version"] = version
    (tmp_path / RESULTS_JSON).write_text(json.dumps(data))
    with pytest.raises(UserError) as e:
        read_results(tmp_path)
    assert "schema version" in str(e.value) and str(SCHEMA_VERSION) in e.value.message
    assert e.value.hint and "re-run" in e.value.hint


def test_a_schema_1_record_is_read_as_schema_2():
    """The results.json commit c6dd1f4 wrote (schema 1: no `sweep`) reads as a schema-2 record with sweep None."""
    old = json.loads((Path(__file__).parent / "data" / "dlc_pipeline_smoke_c6dd1f4.json").read_text())
    assert old["schema_version"] == 1 and "sweep" not in old
    r = Results.from_dict(old)
    assert (r.schema_version, r.sweep, r.experiment, len(r.metrics)) == (2, None, "dlc-pipeline", len(old["metrics"]))
    assert r.metrics == old["metrics"] and r.config == old["config"]


def test_missing_keys_and_wrong_types_are_user_errors():
    d = _record().to_dict()
    for key in ("run_id", "metrics", "config"):
        with pytest.raises(UserError, match=key) as e:
            Results.from_dict({k: v for k, v in d.items() if k != key})
        assert e.value.hint
    for key, bad in (("metrics", {"a": 1}), ("config", [1]), ("run_id", 5), ("seeds", ["0"]), ("preset", 3),
                     ("notes", [1]), ("metrics", [{"value": 1.0}]), ("sweep", {"axes": "prior.eta", "points": []}),
                     ("sweep", {"axes": ["a"], "points": [{"b": 1}]})):
        with pytest.raises(UserError, match=key.split(".")[0]):
            Results.from_dict({**d, key: bad})
    with pytest.raises(UserError, match="not a results record"):
        Results.from_dict([1, 2])
    # an integer experiment version (bench/cli_metrics.py writes one) is read as its string
    assert Results.from_dict({**d, "experiment_version": 1}).experiment_version == "1"
    # keys outside the schema are ignored when reading
    assert Results.from_dict({**d, "features": {"x": 1}}) == Results.from_dict(d)


def test_read_results_absent_or_not_json(tmp_path):
    with pytest.raises(UserError, match="holds no results.json") as e:
        read_results(tmp_path / "nothing")
    assert "dlc-bench run" in e.value.hint
    (tmp_path / RESULTS_JSON).write_text('{"schema_version": 2, "run_id": ')
    with pytest.raises(UserError, match="not valid JSON"):
        read_results(tmp_path)


def test_write_results_accepts_a_mapping_and_keeps_extra_keys(tmp_path):
    d = _record().to_dict()
    del d["schema_version"]
    write_results(tmp_path, {**d, "inputs": {"n_fake": 60}})
    stored = json.loads((tmp_path / RESULTS_JSON).read_text())
    assert stored["schema_version"] == SCHEMA_VERSION and stored["inputs"] == {"n_fake": 60}
    assert read_results(tmp_path) == Results.from_dict({**d, "schema_version": SCHEMA_VERSION})
    with pytest.raises(UserError, match="schema version 0"):
        write_results(tmp_path / "old", {**d, "schema_version": 0})
    assert not (tmp_path / "old").exists()


#################################################################################
#                               Atomic writing                                  #
#################################################################################

def test_failed_write_leaves_no_partial_file(tmp_path):
    bad = _record(environment={"device": object()})            # not JSON-serialisable
    with pytest.raises(TypeError):
        write_results(tmp_path / "new", bad)
    assert not (tmp_path / "new").exists() or _listing(tmp_path / "new") == []
    # an earlier complete run is left exactly as it was
    write_results(tmp_path, _record())
    before = {n: (tmp_path / n).read_bytes() for n in (RESULTS_JSON, RESULTS_CSV)}
    with pytest.raises(TypeError):
        write_results(tmp_path, bad)
    assert {n: (tmp_path / n).read_bytes() for n in (RESULTS_JSON, RESULTS_CSV)} == before
    assert _listing(tmp_path) == [RESULTS_CSV, RESULTS_JSON]   # no temporaries left behind


def test_json_is_written_last_and_a_crash_before_it_leaves_no_results_json(tmp_path, monkeypatch):
    order = []
    real = schema.atomic_write_bytes

    def failing(path, data):
        order.append(Path(path).name)
        if Path(path).name == RESULTS_JSON:
            raise OSError("disk full")
        real(path, data)

    monkeypatch.setattr(schema, "atomic_write_bytes", failing)
    with pytest.raises(OSError):
        write_results(tmp_path, _record())
    assert order == [RESULTS_CSV, RESULTS_JSON]
    assert _listing(tmp_path) == [RESULTS_CSV]                   # the run is not marked complete


def test_atomic_write_keeps_old_content_on_error_and_cleans_up(tmp_path):
    p = tmp_path / "sub" / "f.txt"
    atomic_write_bytes(p, b"old")
    with pytest.raises(RuntimeError):
        with atomic_write(p, "w") as f:
            f.write("half of the new")
            raise RuntimeError("crash")
    assert p.read_bytes() == b"old" and _listing(p.parent) == ["f.txt"]
    with atomic_write(p, "w") as f:
        f.write("new")
    assert p.read_text() == "new" and _listing(p.parent) == ["f.txt"]


def test_sha256_helpers(tmp_path):
    data = random.Random(0).randbytes(3 * (1 << 20) + 17)   # spans several blocks
    p = tmp_path / "blob"
    p.write_bytes(data)
    assert file_sha256(p) == hashlib.sha256(data).hexdigest() == bytes_sha256(data)
    assert file_sha256(str(p)) == file_sha256(p)
    assert bytes_sha256(b"") == hashlib.sha256(b"").hexdigest()


def test_dlc_common_reexports_the_io_helpers():
    import dlc.common
    import dlc.io

    assert dlc.common.atomic_write is dlc.io.atomic_write
    assert dlc.common.atomic_write_bytes is dlc.io.atomic_write_bytes


def test_bench_results_reexports_the_schema():
    import bench.results as old

    for name in ("SCHEMA_VERSION", "METRIC_COLUMNS", "RESULTS_JSON", "RESULTS_CSV", "REPORT_HTML", "metric_row",
                 "label_columns", "rows_to_csv", "write_results", "read_results", "Results", "clean_json"):
        assert getattr(old, name) is getattr(schema, name)
    assert old._clean is clean_json


#################################################################################
#                                 Metric rows                                   #
#################################################################################

def test_metric_row_and_label_columns():
    r = metric_row("fd", 1, higher_is_better=False, n=3.0, variant="dlc", seed=2)
    assert r == {"metric": "fd", "value": 1.0, "ci_low": None, "ci_high": None, "n": 3, "higher_is_better": False,
                 "variant": "dlc", "seed": 2}
    assert list(r)[:6] == list(METRIC_COLUMNS)
    with pytest.raises(ValueError):
        metric_row("", 1.0, higher_is_better=None)
    rows = [{"metric": "a", "value": 1, "b": 1}, {"metric": "a", "value": 1, "seed": 0, "c": 2, "b": 3}]
    assert label_columns(rows) == ["b", "seed", "c"]
    assert label_columns(rows, exclude=("seed",)) == ["b", "c"]
    assert clean_json({1: (float("inf"), Path("p"))}) == {"1": [None, "p"]}


def test_csv_columns_rows_and_empty_cells(tmp_path):
    write_results(tmp_path, _record())
    with open(tmp_path / RESULTS_CSV, newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        body = list(reader)
    assert header == [*METRIC_COLUMNS, "variant", "prior.eta", "seed"]   # sweep axes are dotted label columns
    assert len(body) == 3
    assert body[0] == ["fd", "3.5", "", "", "100", "False", "dlc", "0.01", "0"]
    assert body[1][1] == ""                                               # NaN is written as null, an empty cell
    assert body[2] == ["coverage", "0.75", "0.7", "0.8", "", "True", "none", "0.01", ""]
    assert rows_to_csv([]) == ",".join(METRIC_COLUMNS) + "\n"


#################################################################################
#                     Aggregation over seeds (pandas groupby)                   #
#################################################################################

def _reference_aggregate(rows, confidence=0.95):
    """The hand-written grouping that bench/aggregate.py used before pandas (commit c6dd1f4), verbatim."""
    def key(r):
        labels = tuple(sorted((k, repr(v)) for k, v in r.items() if k not in METRIC_COLUMNS and k != "seed"))
        return (r["metric"], labels)

    rows = list(rows)
    existing = {key(r) for r in rows if r.get("seed") is None}
    groups: OrderedDict = OrderedDict()
    for r in rows:
        if r.get("seed") is None:
            continue
        groups.setdefault(key(r), []).append(r)
    out = []
    for k, grp in groups.items():
        if k in existing:
            continue
        mean, lo, hi = t_interval([g["value"] for g in grp], confidence)
        labels = {kk: v for kk, v in grp[0].items() if kk not in METRIC_COLUMNS and kk != "seed"}
        out.append(metric_row(grp[0]["metric"], mean, ci_low=lo, ci_high=hi, n=len(grp),
                              higher_is_better=grp[0].get("higher_is_better"), **labels))
    return out


def _identical(a: list[dict], b: list[dict]) -> bool:
    def norm(v):
        return ("nan",) if isinstance(v, float) and math.isnan(v) else (type(v).__name__, v)
    return [[(k, norm(v)) for k, v in r.items()] for r in a] == [[(k, norm(v)) for k, v in r.items()] for r in b]


def _toy_rows(rng: random.Random, n_seeds: int) -> list[dict]:
    rows = []
    for seed in range(n_seeds):
        for n_modes in (9, 121):
            for variant in ("unconditional", "oracle", None):
                for metric, hib in (("kl_excess", False), ("coverage", True)):
                    v = rng.gauss(0.5, 0.2)
                    if rng.random() < 0.15:
                        v = float("nan")
                    if rng.random() < 0.05:
                        v = None
                    labels = {"variant": variant, "n_modes": n_modes, "seed": seed}
                    if metric == "coverage" and n_modes == 121:
                        labels["prior.eta"] = rng.choice([0.01, 0.1])   # a sweep-like label, varying per row
                    rows.append(metric_row(metric, 0.0, higher_is_better=hib, n=100, **labels) | {"value": v})
    rows.append(metric_row("kl_floor", 0.1, higher_is_better=None, n=1, n_modes=9, seed=0))
    rows.append(metric_row("kl_floor", 0.2, higher_is_better=None, n=1, n_modes=9.0, seed=1))       # 9.0 ≠ 9
    rows.append(metric_row("kl_floor", 0.3, higher_is_better=None, n=1, seed=1))                    # label missing
    rows.append(metric_row("kl_floor", 0.4, higher_is_better=None, n=1, n_modes=None, seed=1))      # None label
    rows.append(metric_row("kl_floor", 0.5, higher_is_better=None, n=1, n_modes=[1, 2], seed=1))    # unhashable
    rows.append(metric_row("kl_excess", 0.25, higher_is_better=False, n=3, variant="oracle", n_modes=9))  # aggregate
    rows.append(metric_row("kl_excess", 0.3, higher_is_better=False, n=1, variant="oracle", n_modes=9, seed=None))
    rng.shuffle(rows)
    return rows


def test_pandas_aggregation_equals_the_hand_written_one():
    cases = []
    for name in ("dlc_pipeline_smoke_c6dd1f4.json", "dlc_pipeline_laptop_c6dd1f4.json"):
        rows = json.loads((DATA / name).read_text())["metrics"]
        cases += [rows, [r for r in rows if r.get("seed") is not None]]
        # several seeds of the stored pipeline rows, shifted per seed
        seeded = [r for r in rows if r.get("seed") is not None]
        cases.append([{**r, "seed": s, "value": None if r["value"] is None else r["value"] + s / 7}
                      for s in range(4) for r in seeded])
    rng = random.Random(1234)
    cases += [_toy_rows(rng, n) for n in (1, 2, 3, 5, 5, 8)]
    cases += [[], [metric_row("a", 1.0, higher_is_better=True, seed=0)],
              [metric_row("a", float("nan"), higher_is_better=True, seed=s) for s in range(3)]]
    for rows in cases:
        for conf in (0.95, 0.9):
            got, want = aggregate_over_seeds(rows, conf), _reference_aggregate(rows, conf)
            assert _identical(got, want), (len(rows), conf)
    assert sum(len(_reference_aggregate(c)) for c in cases) > 200


def test_aggregate_t_interval_values():
    from scipy import stats

    rows = [metric_row("a", v, higher_is_better=True, variant="x", seed=s) for s, v in enumerate([1.0, 2.0, 4.0])]
    rows.append(metric_row("a", float("nan"), higher_is_better=True, variant="x", seed=3))
    (agg,) = aggregate_over_seeds(rows)
    half = stats.t.ppf(0.975, 2) * stats.tstd([1.0, 2.0, 4.0]) / 3 ** 0.5
    assert agg["value"] == pytest.approx(7 / 3) and agg["ci_high"] - agg["value"] == pytest.approx(half)
    assert agg["n"] == 4 and "seed" not in agg and agg["variant"] == "x"


def test_csv_is_parseable_for_aggregated_rows():
    rows = _toy_rows(random.Random(0), 3)
    text = rows_to_csv(rows + aggregate_over_seeds(rows))
    parsed = list(csv.DictReader(io.StringIO(text)))
    assert len(parsed) == len(rows) + len(aggregate_over_seeds(rows))


def test_a_one_seed_group_keeps_its_own_interval():
    """A t-interval of one value is no interval: one seed's bootstrap interval (and its n) carries over."""
    rows = [metric_row("fd", 10.0, ci_low=9.0, ci_high=12.0, n=500, higher_is_better=False, variant="dlc", seed=0),
            metric_row("recall", 0.3, n=500, higher_is_better=True, variant="dlc", seed=0),
            *(metric_row("fd", v, ci_low=v - 1, ci_high=v + 1, n=500, higher_is_better=False, variant="x", seed=s)
              for s, v in enumerate([10.0, 12.0]))]
    agg = {(r["metric"], r["variant"]): r for r in aggregate_over_seeds(rows)}
    assert (agg["fd", "dlc"]["ci_low"], agg["fd", "dlc"]["ci_high"], agg["fd", "dlc"]["n"]) == (9.0, 12.0, 500)
    assert agg["recall", "dlc"]["ci_low"] == agg["recall", "dlc"]["ci_high"] == 0.3         # nothing to carry
    m, lo, hi = t_interval([10.0, 12.0])
    assert (agg["fd", "x"]["ci_low"], agg["fd", "x"]["n"]) == (pytest.approx(lo), 2)      # seeds: the t-interval
