"""`dlc-bench run ... --dry-run`: the plan (cached / to compute), memory and time estimates; nothing written."""
from __future__ import annotations

import pytest

from bench.cli import main


def _files(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    """A real toy-mixture smoke run, recorded in a store, with its cache."""
    from bench.config import load_config
    from bench.experiment import get_experiment
    from bench.run import execute
    from bench.store import RunStore

    root = tmp_path_factory.mktemp("dry")
    exp = get_experiment("toy-mixture")
    cfg, seeds = load_config(exp.config_cls, "toy-mixture", "smoke")
    res = execute(exp, cfg, preset="smoke", seeds=seeds, out_dir=root / "out", cache_dir=root / "cache",
                  store=RunStore(root / "runs.sqlite"), quiet=True, render=False)
    return root, res


def test_on_an_empty_cache_the_plan_stops_at_the_first_stage_and_nothing_is_written(tmp_path, capsys):
    argv = ["run", "dlc-pipeline", "--preset", "smoke", "--dry-run", "--cache-dir", str(tmp_path / "cache"),
            "--store", str(tmp_path / "runs.sqlite"), "--out", str(tmp_path / "out")]
    assert main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("dry run: dlc-pipeline/smoke, seeds [0]")
    assert out[1].startswith("config: valid; memory estimate ") and " of " in out[1]
    planned = [ln for ln in out if ln.startswith("  compute") or ln.startswith("  cached")]
    assert len(planned) == 1 and planned[0].startswith("  compute  effnet-lite0 features: real test")
    assert any("no recorded run of dlc-pipeline/smoke" in ln for ln in out)
    assert out[-1] == "nothing was computed or written" and _files(tmp_path) == []


def test_after_a_run_every_stage_is_cached_and_the_time_is_the_recorded_one(toy_run, capsys):
    root, res = toy_run
    before = _files(root)
    argv = ["run", "toy-mixture", "--preset", "smoke", "--dry-run", "--cache-dir", str(root / "cache"),
            "--store", str(root / "runs.sqlite")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    planned = [ln for ln in out.splitlines() if ln.startswith("  cached") or ln.startswith("  compute")]
    assert len(planned) == len(res["stages"]) and all(ln.startswith("  cached") for ln in planned)
    assert "every one is cached" in out and f"({res['run_id']}, commit" in out
    assert _files(root) == before                                          # the cache and store only read


def test_a_changed_setting_plans_its_stage_and_nothing_upstream(toy_run, capsys):
    root, res = toy_run
    argv = ["run", "toy-mixture", "--preset", "smoke", "--dry-run", "--cache-dir", str(root / "cache"),
            "--no-store", "--set", "sample_steps=7"]
    assert main(argv) == 0
    planned = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("  c")]
    assert planned[-1].startswith("  compute  sample ") and all(ln.startswith("  cached") for ln in planned[:-1])
    assert any("train" in ln for ln in planned[:-1])                       # training is reused


def test_a_bad_value_fails_the_dry_run_as_it_would_the_run(tmp_path, capsys):
    argv = ["run", "toy-mixture", "--preset", "smoke", "--dry-run", "--set", "lr=nan", "--cache-dir",
            str(tmp_path / "c"), "--no-store"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: invalid config: lr=nan") and _files(tmp_path) == []
