"""Interrupted runs repair themselves (issue 13): a run killed after writing results.json is finished (report,
run-store row) by the next invocation; orphan temporaries of killed writers are cleaned; files and stage
directories respect the umask; a failed run leaves no folder behind; opening or reading a run store writes nothing."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench.cache import Stage, StageCache, save_tree, stage_key
from bench.errors import UserError
from bench.experiment import EXPERIMENTS, experiment
from bench.run import FINISHING, execute, finish_interrupted
from bench.store import RunStore
from dlc.io import atomic_write_bytes, is_orphan, remove_orphans, temp_tag

ROOT = Path(__file__).resolve().parents[1]

EXP_MODULE = '''
from dataclasses import dataclass

from bench.cache import Stage
from bench.experiment import EXPERIMENTS, experiment

CALLS = []
STAGE = Stage("repair-count", code=("repair_exp",))


@dataclass(frozen=True)
class Cfg:
    size: int = 3


def run(ctx):
    CALLS.append(ctx.config.size)
    for seed in ctx.seeds:
        k = ctx.key(STAGE, ctx.config, seed=seed)
        total = ctx.stage(STAGE, k, lambda: float(sum(range(ctx.config.size)) + seed))
        ctx.add_metric("total", total, higher_is_better=True, seed=seed)


EXPERIMENTS.unregister("repair-count")
experiment("repair-count", description="repair test", config=Cfg)(run)
'''

KILLER = '''
import os, signal, sys
sys.path.insert(0, {mod_dir!r})
import repair_exp
import reports.html
from bench.run import execute
from bench.store import RunStore

def die(*a, **k):                       # killed right after results.json was written
    os.kill(os.getpid(), signal.SIGKILL)

reports.html.render_run = die
execute(repair_exp.EXPERIMENTS.get("repair-count"), repair_exp.Cfg(), preset="smoke", seeds=(0, 1),
        out_dir={out!r}, cache_dir={cache!r}, store=RunStore({store!r}), quiet=True)
'''


@pytest.fixture
def exp(tmp_path, monkeypatch):
    """The experiment `repair-count`, from a module file both this process and a killed child import."""
    mod_dir = tmp_path / "mod"
    mod_dir.mkdir()
    (mod_dir / "repair_exp.py").write_text(EXP_MODULE)
    monkeypatch.syspath_prepend(str(mod_dir))
    sys.modules.pop("repair_exp", None)
    import repair_exp

    yield repair_exp
    EXPERIMENTS.unregister("repair-count")
    sys.modules.pop("repair_exp", None)


def _kill_after_results(exp, tmp_path: Path, out: Path) -> Path:
    """Run the experiment in a child process that is SIGKILLed right after writing results.json."""
    store = tmp_path / "store.sqlite"
    script = KILLER.format(mod_dir=str(Path(exp.__file__).parent), out=str(out), cache=str(tmp_path / "cache"),
                           store=str(store))
    p = subprocess.run([sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": str(ROOT)},
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == -signal.SIGKILL, p.stderr
    assert (out / "results.json").is_file() and (out / FINISHING).is_file()
    assert not (out / "report.html").exists() and RunStore(store).runs() == []
    return store


def _run(exp, tmp_path: Path, out: Path, store: Path, **kw):
    return execute(EXPERIMENTS.get("repair-count"), kw.pop("config", exp.Cfg()), preset="smoke", seeds=(0, 1),
                   out_dir=out, cache_dir=tmp_path / "cache", store=RunStore(store), quiet=True, **kw)


def test_run_killed_after_results_is_finished_by_the_same_command(exp, tmp_path):
    out = tmp_path / "out"
    store = _kill_after_results(exp, tmp_path, out)
    run_id = json.loads((out / "results.json").read_text())["run_id"]
    res = _run(exp, tmp_path, out, store)
    assert res.run_id == run_id and exp.CALLS == []            # finished, not run again
    assert (out / "report.html").is_file() and not (out / FINISHING).exists()
    assert [r["run_id"] for r in RunStore(store).runs()] == [run_id]
    assert json.loads((out / "results.json").read_text())["run_id"] == run_id
    res = _run(exp, tmp_path, out, store)                       # a complete run asked again: runs again
    assert res.run_id != run_id and exp.CALLS == [3]
    assert len(RunStore(store).runs()) == 2


def test_interrupted_run_of_another_config_is_finished_then_the_new_one_runs(exp, tmp_path):
    out = tmp_path / "out"
    store = _kill_after_results(exp, tmp_path, out)
    old = json.loads((out / "results.json").read_text())["run_id"]
    res = _run(exp, tmp_path, out, store, config=exp.Cfg(size=5))
    assert res.run_id != old and exp.CALLS == [5]
    assert {r["run_id"] for r in RunStore(store).runs()} == {old, res.run_id}   # the old run kept its row


def test_report_finishes_an_interrupted_run(exp, tmp_path, capsys):
    from bench.cli import main

    out = tmp_path / "out"
    store = _kill_after_results(exp, tmp_path, out)
    assert main(["report", str(out)]) == 0
    assert (out / "report.html").is_file() and not (out / FINISHING).exists()
    assert len(RunStore(store).runs()) == 1
    assert "finished the interrupted run" in capsys.readouterr().err


def test_runs_finishes_interrupted_runs_under_results(exp, tmp_path, monkeypatch, capsys):
    from bench.cli import main

    work = tmp_path / "work"
    out = work / "results" / "repair-count-smoke-20260101-000000"
    store = _kill_after_results(exp, tmp_path, out)
    monkeypatch.chdir(work)
    assert main(["runs", "--store", str(store)]) == 0
    assert "repair-count" in capsys.readouterr().out
    assert (out / "report.html").is_file() and not (out / FINISHING).exists()


def test_stale_marker_without_its_results_is_dropped(exp, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / FINISHING).write_text(json.dumps({"run_id": "not-this-one", "store": None, "render": True}))
    assert finish_interrupted(out) is None and not (out / FINISHING).exists()
    res = _run(exp, tmp_path, out, tmp_path / "store.sqlite")
    assert exp.CALLS == [3] and (out / "report.html").is_file() and res.run_id


def test_orphan_temporaries_in_the_run_directory_are_removed(exp, tmp_path):
    out = tmp_path / "out"
    (out / "figures").mkdir(parents=True)
    dead = _dead_pid()
    orphans = [out / f".results.json.{temp_tag().split('-')[0]}-{dead}.abcd1234.tmp",
               out / "figures" / f".fig.png.{temp_tag().split('-')[0]}-{dead}.abcd1234.tmp"]
    live = out / f".report.html.{temp_tag()}.abcd1234.tmp"     # this process: being written
    for p in [*orphans, live]:
        p.write_bytes(b"half")
    _run(exp, tmp_path, out, tmp_path / "store.sqlite")
    assert not any(p.exists() for p in orphans) and live.exists()


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_is_orphan_rules(tmp_path):
    host = temp_tag().split("-")[0]
    dead, young, old = tmp_path / f".a.{host}-{_dead_pid()}.x", tmp_path / ".b.zzzz", tmp_path / ".c.zzzz"
    other_host = tmp_path / f".d.00000000-{_dead_pid()}.x"
    for p in (dead, young, old, other_host):
        p.write_text("x")
    os.utime(old, (time.time() - 10 * 24 * 3600,) * 2)
    assert is_orphan(dead) and is_orphan(old)
    assert not is_orphan(young) and not is_orphan(other_host)      # could be being written (another host)
    assert not is_orphan(tmp_path / f".e.{temp_tag()}.x")          # this very process
    keep = tmp_path / ".gitignore"
    keep.write_text("x")
    os.utime(keep, (time.time() - 10 * 24 * 3600,) * 2)
    assert remove_orphans(tmp_path) == [] and keep.exists()        # only names of temporaries are touched


@dataclass(frozen=True)
class _Cfg:
    n: int = 1


def test_stage_cache_removes_orphan_stage_temporaries(tmp_path):
    stage = Stage("orph", code=("bench.cache",))
    key = stage_key(stage, _Cfg())
    parent = tmp_path / "stages" / "orph"
    parent.mkdir(parents=True)
    host = temp_tag().split("-")[0]
    dead = parent / f".{key.hash}.{host}-{_dead_pid()}.q1w2e3r4"
    rejected = parent / f".rejected-{key.hash}-1-2"
    live = parent / f".{key.hash}.{temp_tag()}.q1w2e3r4"
    unrelated = parent / ".notes"
    for d in (dead, rejected, live):
        (d / "sub").mkdir(parents=True)
        (d / "sub" / "f.bin").write_bytes(b"x")
    unrelated.write_text("x")
    cache = StageCache(tmp_path)
    assert not dead.exists() and not rejected.exists() and live.exists() and unrelated.exists()
    cache.store(key, {"v": 1}, save_tree, seconds=0.0)
    assert live.exists() and (parent / key.hash / "stage.json").is_file()


def test_files_and_stage_directories_respect_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        atomic_write_bytes(tmp_path / "a.bin", b"x")
        assert (tmp_path / "a.bin").stat().st_mode & 0o777 == 0o640
        key = stage_key(Stage("um", code=("bench.cache",)), _Cfg())
        d = StageCache(tmp_path / "c").store(key, {"v": 1}, save_tree, seconds=0.0)
        assert d.stat().st_mode & 0o777 == 0o750
        os.umask(0o002)
        atomic_write_bytes(tmp_path / "b.bin", b"x")
        assert (tmp_path / "b.bin").stat().st_mode & 0o777 == 0o664
    finally:
        os.umask(old)


def test_a_failed_run_leaves_no_folder_behind(tmp_path):
    @dataclass(frozen=True)
    class C:
        fail: str = "user"

    def fn(ctx):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        if ctx.config.fail == "crash":
            raise RuntimeError("boom")
        ctx.add_figure(plt.figure(), "f")
        raise UserError("bad input found late", hint="fix it")

    EXPERIMENTS.unregister("fail-late")
    experiment("fail-late", description="fails", config=C)(fn)
    try:
        for cfg, exc in ((C("user"), UserError), (C("crash"), RuntimeError)):
            out, cache = tmp_path / "a" / "out", tmp_path / "cache"
            with pytest.raises(exc):
                execute(EXPERIMENTS.get("fail-late"), cfg, preset=None, seeds=(0,), out_dir=out, cache_dir=cache,
                        quiet=True)
            assert not (tmp_path / "a").exists() and not cache.exists()
    finally:
        EXPERIMENTS.unregister("fail-late")


def test_opening_and_reading_a_store_writes_nothing(tmp_path):
    path = tmp_path / "sub" / "runs.sqlite"
    store = RunStore(path)
    assert store.runs() == [] and store.history("x", "y") == [] and store.metric_names("x") == []
    assert not (tmp_path / "sub").exists()
    store.record({"run_id": "r1", "experiment": "x", "config_hash": "h", "metrics": [{"metric": "y", "value": 1.0}]},
                 None)
    assert [r["run_id"] for r in RunStore(path, writable=False).runs()] == ["r1"]
    assert store.metric_names("x") == ["y"] and store.find("r") and store.find("r1")[0]["run_id"] == "r1"
    (tmp_path / "bad.sqlite").write_bytes(b"garbage" * 100)
    with pytest.raises(UserError, match="not a dlc-bench run store"):
        RunStore(tmp_path / "bad.sqlite")
