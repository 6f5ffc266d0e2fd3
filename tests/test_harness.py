"""The harness end to end: run outputs and schema, stage cache, run store, CLI bad inputs, kill + resume."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench.cache import Stage
from bench.errors import UserError
from bench.experiment import EXPERIMENTS, experiment
from bench.run import execute
from bench.store import RunStore

ROOT = Path(__file__).resolve().parents[1]
CALLS: list[str] = []


@dataclass(frozen=True)
class CountCfg:
    size: int = 3
    scale: float = 2.0


MAKE = Stage("make", code=("tests.test_harness",))
SUM = Stage("sum", code=("tests.test_harness",))


def _count_experiment(ctx):
    cfg = ctx.config
    for seed in ctx.seeds:
        k_make = ctx.key(MAKE, {"size": cfg.size}, seed=seed)
        data = ctx.stage(MAKE, k_make, lambda: (CALLS.append(f"make{seed}"), [seed + i for i in range(cfg.size)])[1])
        total = ctx.stage(SUM, ctx.key(SUM, {"scale": cfg.scale}, upstream=[k_make], seed=seed),
                          lambda: (CALLS.append(f"sum{seed}"), cfg.scale * sum(data))[1])
        ctx.add_metric("total", total, higher_is_better=True, n=cfg.size, method="count", seed=seed)
    ctx.note("unit-test experiment")


@pytest.fixture
def count_exp():
    name = "unit-count"
    EXPERIMENTS.unregister(name)
    experiment(name, description="counts", config=CountCfg)(_count_experiment)
    yield EXPERIMENTS.get(name)
    EXPERIMENTS.unregister(name)


def test_execute_writes_schema_csv_report_and_store(count_exp, tmp_path):
    CALLS.clear()
    store = RunStore(tmp_path / "store.sqlite")
    res = execute(count_exp, CountCfg(), preset="smoke", seeds=(0, 1), out_dir=tmp_path / "out",
                  cache_dir=tmp_path / "cache", store=store, quiet=True)
    out = tmp_path / "out"
    data = json.loads((out / "results.json").read_text())
    for k in ("experiment", "preset", "config", "config_hash", "git", "environment", "seeds", "timings", "metrics"):
        assert k in data
    assert set(data["git"]) >= {"commit", "dirty"}
    assert set(data["environment"]) >= {"python", "torch", "device", "dtype", "threads"}
    assert data["seeds"] == [0, 1] and data["timings"]["total"] >= 0 and "make" in data["timings"]
    # seed rows + one aggregate row (mean and t-interval over seeds)
    rows = data["metrics"]
    per_seed = {r["seed"]: r["value"] for r in rows if r.get("seed") is not None}
    assert per_seed == {0: 2.0 * (0 + 1 + 2), 1: 2.0 * (1 + 2 + 3)}
    agg = [r for r in rows if r.get("seed") is None]
    assert len(agg) == 1 and agg[0]["value"] == pytest.approx(9.0) and agg[0]["n"] == 2
    from scipy import stats
    half = stats.t.ppf(0.975, 1) * stats.tstd([6.0, 12.0]) / 2 ** 0.5
    assert agg[0]["ci_high"] - agg[0]["value"] == pytest.approx(half)
    with open(out / "results.csv") as f:
        header = next(csv.reader(f))
    assert header[:6] == ["metric", "value", "ci_low", "ci_high", "n", "higher_is_better"]
    assert "method" in header and "seed" in header
    html = (out / "report.html").read_text()
    assert "unit-test experiment" in html and "results.csv" in html and 'id="summary"' in html
    # run store
    runs = store.runs(experiment="unit-count")
    assert len(runs) == 1 and runs[0]["config_hash"] == res["config_hash"]
    assert {m["seed"] for m in store.metrics(runs[0]["run_id"])} == {0, 1, None}
    assert store.history("unit-count", "total")[0]["value"] in (6.0, 12.0, 9.0)


def test_stage_cache_reuses_and_misses_on_change(count_exp, tmp_path):
    CALLS.clear()
    kw = dict(preset=None, seeds=(0,), cache_dir=tmp_path / "cache", quiet=True, render=False)
    execute(count_exp, CountCfg(), out_dir=tmp_path / "a", **kw)
    assert CALLS == ["make0", "sum0"]
    r = execute(count_exp, CountCfg(), out_dir=tmp_path / "b", **kw)
    assert CALLS == ["make0", "sum0"] and r["cache"] == {"hits": 2, "misses": 0}
    r = execute(count_exp, CountCfg(scale=3.0), out_dir=tmp_path / "c", **kw)  # only the dependent stage reruns
    assert CALLS[2:] == ["sum0"] and r["cache"] == {"hits": 1, "misses": 1}
    assert r["metrics"][0]["value"] == 9.0


def test_half_written_stage_is_never_read(count_exp, tmp_path):
    """A stage directory without its completion marker (a crash mid-write) is recomputed."""
    CALLS.clear()
    kw = dict(preset=None, seeds=(0,), cache_dir=tmp_path / "cache", quiet=True, render=False)
    execute(count_exp, CountCfg(), out_dir=tmp_path / "a", **kw)
    for marker in (tmp_path / "cache").rglob("stage.json"):
        marker.unlink()
    (next((tmp_path / "cache").rglob("tree.json"))).write_bytes(b"garbage")
    r = execute(count_exp, CountCfg(), out_dir=tmp_path / "b", **kw)
    assert r["cache"]["misses"] == 2 and r["metrics"][0]["value"] == 6.0


def _cli(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, cwd=cwd or ROOT, timeout=300)


@pytest.fixture
def cli_env(tmp_path):
    return {"DLC_BENCH_STORE": str(tmp_path / "store.sqlite"), "DLC_BENCH_CACHE": str(tmp_path / "cache"),
            "PYTHONPATH": str(ROOT)}


@pytest.mark.parametrize("args,fragment", [
    (["run", "toy-mixtur", "--preset", "smoke"], "unknown experiment 'toy-mixtur'. Did you mean 'toy-mixture'"),
    (["run", "toy-mixture", "--preset", "smok"], "no preset 'smok'. Did you mean 'smoke'"),
    (["run", "toy-mixture", "--preset", "smoke", "--set", "n_mode=9"], "Did you mean 'n_modes'"),
    (["run", "toy-mixture", "--preset", "smoke", "--set", "hidden=big"], "'hidden': expected an integer"),
    (["run", "toy-mixture", "--preset", "smoke", "--set", "n_modes=10"], "perfect square"),
    (["run", "toy-mixture", "--preset", "smoke", "--set", "variants=oracle,cgan"], "variants='cgan' is not a valid choice"),
    (["run", "toy-mixture", "--preset", "smoke", "--seeds", "x"], "cannot parse --seeds"),
    (["suite", "laptpo"], "no experiment has a 'laptpo' preset"),
    (["report", "/nonexistent/run"], "holds no results.json"),
])
def test_cli_bad_input_one_line_exit_2_nothing_written(args, fragment, tmp_path, cli_env, monkeypatch, capsys):
    from bench.cli import main

    for k, v in cli_env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    code = main([*args, "--out", str(out)] if args[0] in ("run", "suite") else args)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], err
    assert not out.exists() and not (tmp_path / "cache").exists() and not (tmp_path / "results").exists()


def test_cli_console_exit_code_and_unwritable_output_dir(tmp_path, cli_env):
    """Through a real process: exit status 2 and a single line on stderr."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    out = blocker / "sub"  # a directory below a regular file cannot be created, even by root
    p = _cli("run", "toy-mixture", "--preset", "smoke", "--out", str(out), env=cli_env)
    assert p.returncode == 2
    assert p.stderr.startswith("error: output directory") and "--out DIR" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


def test_cli_list_and_runs(tmp_path, cli_env, monkeypatch, capsys):
    from bench.cli import main

    for k, v in cli_env.items():
        monkeypatch.setenv(k, v)
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "toy-mixture" in out and "smoke" in out and "laptop" in out
    assert main(["runs"]) == 0 and "no runs recorded" in capsys.readouterr().out


TINY = ["--set", "n_modes=9", "--set", "n_train=1000", "--set", "train_samples=2560", "--set", "batch_size=128",
        "--set", "n_kde=300", "--set", "n_eval=200", "--set", "n_cv=100", "--set", "sample_steps=10",
        "--set", "gmm_fit_samples=500", "--set", "score_n_modes=9", "--set", "hidden=16", "--set", "figure_points=200"]


def test_kill_then_resume_reuses_finished_stages_and_matches_clean_run(tmp_path, cli_env):
    """Kill a run mid-way with SIGKILL; rerunning the same command computes only the missing stages and
    gives exactly the results of an uninterrupted run."""
    cache = tmp_path / "cache"
    args = [sys.executable, "-m", "bench.cli", "run", "toy-mixture", "--preset", "smoke", *TINY,
            "--set", "train_samples=64000", "--seeds", "0,1", "--quiet", "--out", str(tmp_path / "killed")]
    proc = subprocess.Popen(args, env={**os.environ, **cli_env}, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    done = 0
    while time.time() < deadline and proc.poll() is None:
        done = len(list(cache.rglob("stage.json")))
        if done >= 4:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "run finished before it could be killed; make it longer"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(list(cache.rglob("stage.json")))
    assert not (tmp_path / "killed" / "results.json").exists()
    # every visible stage directory is complete (in-progress temporaries are hidden, named '.*')
    stage_dirs = [d for d in (cache / "stages").glob("toy-*/*") if not d.name.startswith(".")]
    assert stage_dirs and all((d / "stage.json").exists() for d in stage_dirs)
    p = subprocess.run(args[:-1] + [str(tmp_path / "resumed")], env={**os.environ, **cli_env}, cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    resumed = json.loads((tmp_path / "resumed" / "results.json").read_text())
    assert resumed["cache"]["hits"] >= done >= 4 and resumed["cache"]["misses"] > 0
    clean_env = {**cli_env, "DLC_BENCH_CACHE": str(tmp_path / "clean-cache")}
    p = subprocess.run(args[:-1] + [str(tmp_path / "clean")], env={**os.environ, **clean_env}, cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    clean = json.loads((tmp_path / "clean" / "results.json").read_text())
    assert clean["cache"]["hits"] == 0
    key = lambda r: (r["metric"], r.get("variant"), r.get("n_modes"), r.get("seed"))  # noqa: E731
    a = {key(r): r["value"] for r in resumed["metrics"]}
    b = {key(r): r["value"] for r in clean["metrics"]}
    assert a.keys() == b.keys() and a == b


def test_user_error_format():
    e = UserError("bad thing", hint="do this")
    assert str(e) == "bad thing (do this)" and e.exit_code == 2


def test_sweep_is_one_recorded_run_with_the_axis_as_a_label(count_exp, tmp_path):
    """execute(sweep=[(labels, config), ...]) runs every point into one results record: rows carry the axis
    as a label column, stages shared between points are computed once, and a figure plots metric vs axis."""
    CALLS.clear()
    points = [({"scale": s}, CountCfg(scale=s)) for s in (1.0, 2.0, 4.0)]
    res = execute(count_exp, CountCfg(), preset=None, seeds=(0,), out_dir=tmp_path / "sw", sweep=points,
                  cache_dir=tmp_path / "cache", quiet=True)
    assert CALLS == ["make0", "sum0", "sum0", "sum0"]       # `make` does not depend on the axis: computed once
    data = json.loads((tmp_path / "sw" / "results.json").read_text())
    assert data["sweep"] == {"axes": ["scale"], "points": [{"scale": 1.0}, {"scale": 2.0}, {"scale": 4.0}]}
    per_seed = sorted((r["scale"], r["value"]) for r in data["metrics"] if r.get("seed") == 0)
    assert per_seed == [(1.0, 3.0), (2.0, 6.0), (4.0, 12.0)]
    with open(tmp_path / "sw" / "results.csv") as f:
        assert "scale" in next(csv.reader(f))
    assert any(f["name"] == "sweep_scale" for f in data["figures"])
    assert (tmp_path / "sw" / "figures" / "sweep_scale.png").stat().st_size > 1000
    assert res["cache"] == {"hits": 2, "misses": 4}


def test_named_suites_keep_the_main_job_small_and_paper_laptop_whole():
    from bench.cli import SUITES, suite_members
    from bench.experiment import load_builtin_experiments

    preset, main_job = suite_members("laptop")
    assert preset == "laptop" and sorted(main_job) == ["dlc-pipeline", "toy-mixture"]
    preset, every = suite_members("paper-laptop")
    assert preset == "laptop" and {"dlc-pipeline", "toy-mixture", "eta-sweep", "composition"} <= set(every)
    assert set(every) == {n for n, e in load_builtin_experiments().items() if "laptop" in e.presets()}
    assert suite_members("smoke")[0] == "smoke" and "eta-sweep" in suite_members("smoke")[1]
    assert set(SUITES) == {"laptop", "paper-laptop"}


def test_sweep_point_file_names_stay_distinct_when_two_keys_share_a_tail():
    from types import SimpleNamespace

    from bench.run import RunContext

    one = SimpleNamespace(row_labels={"dit_sampling.cfg_scale": 2.0})
    assert RunContext._point_name(one, "samples") == "samples_cfg_scale=2.0"
    two = SimpleNamespace(row_labels={"dit_sampling.cfg_scale": 1.0, "text_sampling.cfg_scale": 2.0, "eta": 0.1})
    assert RunContext._point_name(two, "samples") == \
        "samples_dit_sampling.cfg_scale=1.0_text_sampling.cfg_scale=2.0_eta=0.1"
