"""Command-line conventions (issue 12): --force before writing over a run directory or a page, the run's log
(log.txt with timestamps and the warnings raised while it ran; log lines above the progress bars), the
`stage k/N` line with its ETA from the last recorded run, and `metrics --keys torch-fidelity`.

Runs go through `bench.cli.main` in-process on a tiny registered experiment (`conv-tiny`, its smoke preset in a
temporary $DLC_BENCH_CONFIGS), `metrics` on the `pixels` extractor.
"""
from __future__ import annotations

import hashlib
import importlib
import json
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from bench.cache import Stage
from bench.cli import main
from bench.cli_metrics import TORCH_FIDELITY_KEYS
from bench.errors import UserError
from bench.experiment import EXPERIMENTS, experiment
from bench.run import FINISHING

STAGE = Stage("conv-tiny-total", code=())


@dataclass(frozen=True)
class Cfg:
    size: int = 3


def _run(ctx):
    warnings.warn("conv-tiny: a library warning", UserWarning)
    for seed in ctx.seeds:
        key = ctx.key(STAGE, ctx.config, seed=seed)
        total = ctx.stage(STAGE, key, lambda: float(sum(range(ctx.config.size)) + seed), desc=f"total seed={seed}")
        ctx.add_metric("total", total, higher_is_better=True, seed=seed)
    for _ in ctx.progress(range(2), desc="a bar"):
        ctx.log("a line while the bar is shown")


@pytest.fixture
def world(tmp_path, monkeypatch):
    """The working directory, with the store, cache and presets of the experiment `conv-tiny`."""
    (tmp_path / "configs" / "conv-tiny").mkdir(parents=True)
    (tmp_path / "configs" / "conv-tiny" / "smoke.yaml").write_text("seeds: [0, 1]\nsize: 3\n")
    monkeypatch.setenv("DLC_BENCH_CONFIGS", str(tmp_path / "configs"))
    monkeypatch.setenv("DLC_BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("DLC_BENCH_STORE", str(tmp_path / "store.sqlite"))
    monkeypatch.chdir(tmp_path)
    EXPERIMENTS.unregister("conv-tiny")
    experiment("conv-tiny", description="conventions test", config=Cfg)(_run)
    yield tmp_path
    EXPERIMENTS.unregister("conv-tiny")


def cli(capsys, *argv) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def tree(root: Path) -> dict[str, str | None]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None
            for p in sorted(root.rglob("*"))}


def refused(rc: int, err: str, option: str) -> bool:
    """Exit status 2 and one `error:` line whose fix names --force and the option."""
    lines = err.strip().splitlines()
    return (rc == 2 and len(lines) == 1 and lines[0].startswith("error: ")
            and lines[0].endswith(f"(pass --force to overwrite it, or another {option})"))


def run_id(d: Path) -> str:
    return json.loads((d / "results.json").read_text())["run_id"]


#################################################################################
#                                   --force                                     #
#################################################################################

def test_run_into_a_directory_holding_a_run_needs_force(world, capsys):
    out = world / "o"
    assert cli(capsys, "run", "conv-tiny", "--preset", "smoke", "--out", out)[0] == 0
    first, before = run_id(out), tree(world)
    for extra in (["--set", "size=4"], []):                     # another run, and this same one again
        rc, _, err = cli(capsys, "run", "conv-tiny", "--preset", "smoke", "--out", out, *extra)
        assert refused(rc, err, "--out DIR") and f"already holds run {first}" in err, err
        assert tree(world) == before
    rc, _, err = cli(capsys, "run", "conv-tiny", "--preset", "smoke", "--set", "size=4", "--out", out, "--force")
    assert rc == 0, err
    res = json.loads((out / "results.json").read_text())
    assert res["run_id"] != first and res["config"]["size"] == 4


def test_the_same_run_interrupted_after_its_results_is_finished_without_force(world, capsys):
    out = world / "o"
    assert cli(capsys, "run", "conv-tiny", "--preset", "smoke", "--out", out, "--no-store")[0] == 0
    first = run_id(out)
    (out / "report.html").unlink()                               # as if killed after writing results.json
    (out / FINISHING).write_text(json.dumps({"run_id": first, "render": True, "store": None}))
    rc, _, err = cli(capsys, "run", "conv-tiny", "--preset", "smoke", "--out", out, "--no-store")
    assert rc == 0 and "finished the interrupted run" in err, err
    assert run_id(out) == first and (out / "report.html").is_file() and not (out / FINISHING).exists()
    (out / FINISHING).write_text(json.dumps({"run_id": first, "render": True, "store": None}))
    rc, _, err = cli(capsys, "run", "conv-tiny", "--preset", "smoke", "--set", "size=5", "--out", out, "--no-store")
    assert refused(rc, err, "--out DIR"), err                    # another run: refused, the marker left in place
    assert (out / FINISHING).is_file()


def test_suite_into_an_earlier_suite_needs_force(world, capsys):
    out = world / "s"
    assert cli(capsys, "suite", "smoke", "--out", out, "--quiet")[0] == 0
    assert (out / "index.html").is_file() and (out / "conv-tiny" / "results.json").is_file()
    before = tree(world)
    rc, _, err = cli(capsys, "suite", "smoke", "--out", out, "--quiet")
    assert refused(rc, err, "--out DIR") and "index.html already exists" in err, err
    (out / "index.html").unlink()                                # a suite killed before its index: its runs
    before = tree(world)
    rc, _, err = cli(capsys, "suite", "smoke", "--out", out, "--quiet")
    assert refused(rc, err, "--out DIR") and "conv-tiny already holds run" in err, err
    assert tree(world) == before
    first = run_id(out / "conv-tiny")
    assert cli(capsys, "suite", "smoke", "--out", out, "--quiet", "--force")[0] == 0
    assert run_id(out / "conv-tiny") != first and (out / "index.html").is_file()


def _images(path: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    np.savez(path, arr_0=rng.integers(0, 256, (120, 6, 6, 3), dtype=np.uint8))
    return path


def test_metrics_out_over_a_run_needs_force(world, capsys):
    real, fake = _images(world / "real.npz", 0), _images(world / "fake.npz", 1)
    argv = ["metrics", "--real", real, "--fake", fake, "--features", "pixels", "--metrics", "fd", "--quiet",
            "--no-cache", "--no-store", "--out", world / "m"]
    assert cli(capsys, *argv)[0] == 0
    first, before = run_id(world / "m"), tree(world)
    rc, _, err = cli(capsys, *argv)
    assert refused(rc, err, "--out DIR") and tree(world) == before, err
    assert cli(capsys, *argv, "--force")[0] == 0 and run_id(world / "m") != first


def test_ref_stats_out_over_a_file_needs_force(world, capsys):
    real = _images(world / "real.npz", 0)
    argv = ["ref-stats", real, "--out", world / "ref.npz", "--features", "pixels", "--no-cache", "--quiet"]
    assert cli(capsys, *argv)[0] == 0
    before = tree(world)
    rc, _, err = cli(capsys, *argv)
    assert refused(rc, err, "--out FILE.npz") and tree(world) == before, err
    assert cli(capsys, *argv, "--force")[0] == 0


def test_report_compare_and_history_pages_need_force_to_replace_a_file(world, capsys):
    for size in (3, 4):
        assert cli(capsys, "run", "conv-tiny", "--preset", "smoke", "--set", f"size={size}", "--out",
                   world / f"r{size}", "--quiet")[0] == 0
    runs = [world / "r3", world / "r4"]
    page = world / "page.html"
    for argv in (["report", *runs, "--out", page], ["compare", *runs, "--out", page],
                 ["history", "conv-tiny", "total", "--out", page]):
        page.write_text("an earlier page\n")
        rc, _, err = cli(capsys, *argv)
        assert refused(rc, err, argv[-2] + (" FILE" if argv[0] == "report" else " FILE.html")), err
        assert page.read_text() == "an earlier page\n"
        rc, _, err = cli(capsys, *argv, "--force")
        assert rc == 0 and "<html" in page.read_text().lower(), err
    page.unlink()
    assert cli(capsys, "report", *runs)[0] == 0 and (world / "dlc-bench-report.html").is_file()
    rc, _, err = cli(capsys, "report", *runs)                    # the default index page is a file like any other
    assert refused(rc, err, "--out FILE"), err
    assert cli(capsys, "report", runs[0])[0] == 0                # one run's own report.html: re-rendered in place


#################################################################################
#                          The run's log, stage k/N                             #
#################################################################################

STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d "


def test_log_txt_holds_every_log_line_and_the_warnings_with_timestamps(world, capsys):
    out = world / "o"
    rc, _, err = cli(capsys, "run", "conv-tiny", "--preset", "smoke", "--out", out)
    assert rc == 0, err
    log = (out / "log.txt").read_text().splitlines()
    assert all(re.match(STAMP, ln) for ln in log), log
    assert re.search(r"conv-tiny preset smoke, seeds \[0, 1\], cpu float32, output ", log[0])
    assert any(ln.endswith("[conv-tiny] stage 1/? [compute] total seed=0 · 0 s elapsed · ETA ?") for ln in log), log
    assert sum("a line while the bar is shown" in ln for ln in log) == 2
    warned = [ln for ln in log if "warning: UserWarning: conv-tiny: a library warning (" in ln]
    assert len(warned) == 1 and "test_cli_conventions.py:" in warned[0]
    # the terminal: the same log lines, the warning only counted
    assert "a library warning" not in err
    assert f"[conv-tiny] 1 warning(s) while running, written to {out / 'log.txt'}" in err
    with_quiet = world / "q"
    rc, _, err = cli(capsys, "run", "conv-tiny", "--preset", "smoke", "--out", with_quiet, "--quiet")
    assert rc == 0 and "conv-tiny" not in err
    assert any("stage 2/2 [cached] total seed=1" in ln for ln in (with_quiet / "log.txt").read_text().splitlines())


def test_log_lines_are_written_above_the_progress_bar(world, capsys):
    rc, _, err = cli(capsys, "run", "conv-tiny", "--preset", "smoke", "--out", world / "o")
    assert rc == 0 and "a bar" in err                              # the bar was drawn on stderr
    segments = [seg for ln in err.split("\n") for seg in ln.split("\r")]
    assert segments.count("[conv-tiny] a line while the bar is shown") == 2, err


def test_stage_lines_count_and_time_from_the_last_recorded_run(world, capsys):
    rc, _, err = cli(capsys, "run", "conv-tiny", "--preset", "smoke", "--out", world / "a")
    assert rc == 0 and "[conv-tiny] stage 1/? [compute] total seed=0" in err and "stage 2/? [compute]" in err
    rc, _, err = cli(capsys, "run", "conv-tiny", "--preset", "smoke", "--out", world / "b")
    assert rc == 0, err
    first = run_id(world / "a")
    assert f"the last recorded run ({first}) had 2 stages and took" in err
    lines = [ln for ln in err.splitlines() if "] stage " in ln]
    assert re.search(r"\[conv-tiny\] stage 1/2 \[cached\] total seed=0 · \d+ s elapsed · ETA \d+ s$", lines[0]), lines
    assert re.search(r"stage 2/2 \[cached\] total seed=1 · \d+ s elapsed · ETA \d+ s$", lines[1]), lines
    rc, _, err = cli(capsys, "run", "conv-tiny", "--preset", "smoke", "--seeds", "0-2", "--out", world / "c")
    assert rc == 0 and re.search(r"stage 3/3 \[compute\] total seed=2 · \d+ s elapsed · ETA \?", err), err


def test_a_crashed_run_shows_its_warnings_and_bad_input_found_late_is_one_line(world, capsys):
    def fails(ctx):
        warnings.warn("conv-tiny: warned before failing", UserWarning)
        if ctx.config.size == 3:
            raise RuntimeError("boom")
        raise UserError("size 4 found bad late", hint="use another size")

    EXPERIMENTS.unregister("conv-tiny")
    experiment("conv-tiny", description="fails", config=Cfg)(fails)
    with pytest.raises(RuntimeError, match="boom"):
        main(["run", "conv-tiny", "--preset", "smoke", "--out", str(world / "o")])
    err = capsys.readouterr().err
    assert "warning: UserWarning: conv-tiny: warned before failing (" in err
    assert not (world / "o").exists()
    rc, _, err = cli(capsys, "run", "conv-tiny", "--preset", "smoke", "--set", "size=4", "--out", world / "o")
    assert rc == 2 and err.strip() == "error: size 4 found bad late (use another size)", err
    assert not (world / "o").exists()


#################################################################################
#                          metrics --keys torch-fidelity                        #
#################################################################################

def test_every_torch_fidelity_key_named_is_a_constant_of_the_installed_package():
    modules = [importlib.import_module(f"torch_fidelity.{m}") for m in ("metric_fid", "metric_isc", "metric_kid",
                                                                           "metric_prc")]
    constants = {v for m in modules for k, v in vars(m).items() if k.startswith("KEY_METRIC_")}
    assert set(TORCH_FIDELITY_KEYS.values()) <= constants, set(TORCH_FIDELITY_KEYS.values()) - constants
    from bench.evaluate import metric_names

    assert set(TORCH_FIDELITY_KEYS) - {"fid"} <= set(metric_names())   # our names exist ('fid' is fd's alias)


def test_keys_alone_prints_the_mapping(capsys):
    rc, out, err = cli(capsys, "metrics", "--keys", "torch-fidelity")
    assert rc == 0 and err == "", err
    rows = dict(ln.split() for ln in out.splitlines()[1:] if not ln.startswith("("))
    assert rows == TORCH_FIDELITY_KEYS
    assert out.splitlines()[-1].startswith("(no torch-fidelity key, named as ours: sfid, fd_inf, is_adm, density")
    rc, _, err = cli(capsys, "metrics", "--real", "x", "--keys", "torch-fidelity")
    assert rc == 2 and "error: the following arguments are required: --fake, --metrics" in err


def test_keys_names_the_values_as_torch_fidelity_does(world, capsys):
    real, fake = _images(world / "real.npz", 0), _images(world / "fake.npz", 1)
    argv = ["metrics", "--real", real, "--fake", fake, "--features", "pixels", "--metrics", "kid,pr,fd", "--quiet",
            "--no-cache", "--no-store"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rc, ours, _ = cli(capsys, *argv)
        assert rc == 0
        rc, theirs, _ = cli(capsys, *argv, "--keys", "torch-fidelity")
    ours, theirs = json.loads(ours), json.loads(theirs)
    assert set(theirs) == {"kernel_inception_distance_mean", "kernel_inception_distance_std", "precision", "recall",
                           "fd_pixels"}
    assert theirs["kernel_inception_distance_mean"] == ours["kid"] and theirs["fd_pixels"] == ours["fd_pixels"]
