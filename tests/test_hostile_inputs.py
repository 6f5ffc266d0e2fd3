"""Hostile-input corpus (issue 13): every bad input to `dlc-bench` is one line `error: <problem> (<fix>)`, exit
status 2, and nothing is written or changed.

Each case runs `bench.cli.main(argv)` in-process (capsys) inside a fresh working directory (`world`: the out
dir's parent, the stage/feature cache $DLC_BENCH_CACHE, the run store $DLC_BENCH_STORE, the default results
root ./results) next to read-only fixtures (`inputs`: images, npz files, weights, configs, run directories, a
seeded run store). Both trees are snapshotted (every path, size, mtime and sha256) before and after. A case
that has not failed after `LIMIT_S` seconds is stopped (SIGALRM) and fails: invalid input must fail before work
starts, nothing may train. Two cases go through a real process for the console exit status.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import signal
import struct
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from bench.cli import main

ROOT = Path(__file__).resolve().parents[1]
LIMIT_S = 20          # a hostile case still running after this has started real work
FAST_S = 1.0          # "fails in the first second" (the config is checked before anything is built)


#################################################################################
#                                  Fixtures                                     #
#################################################################################

def _png(path: Path, rng: np.random.Generator, size: int = 16) -> None:
    from PIL import Image

    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png_bomb(path: Path, side: int = 20000) -> None:
    """A valid PNG header declaring side x side RGB pixels (1.2 GB decoded) with almost no data."""
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + _chunk(b"IEND", b""))


class _OpensAFile:
    """Unpickling this creates the file `marker`: a weights loader that unpickles would leave it behind."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _results(run_id: str, experiment: str = "toy-mixture", value: float = 0.5, **extra) -> dict:
    from bench.schema import Results, metric_row

    rows = [metric_row("kl_symmetric", value, higher_is_better=False, ci_low=value - 0.1, ci_high=value + 0.1, n=3,
                       variant="oracle", n_modes=9)]
    return Results(run_id=run_id, experiment=experiment, experiment_version="1", description="fixture", preset="smoke",
                   config={"hidden": 32}, config_hash="0123456789abcdef", code_version="fedcba9876543210",
                   git={"commit": "a" * 40, "dirty": False, "branch": "main"}, environment={"python": "3"},
                   seeds=[0, 1, 2], started_at="2026-01-01T00:00:00", finished_at=f"2026-01-01T00:00:0{value > 1:d}",
                   timings={"total": 1.0}, stages=[], cache={"hits": 0, "misses": 0}, metrics=rows,
                   **extra).to_dict()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """Every hostile (and a few valid) input files, written once; tests must leave them unchanged."""
    d = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    for name in ("imgs", "imgs2", "empty", "textfiles", "truncated", "bomb"):
        (d / name).mkdir()
    for i in range(4):
        _png(d / "imgs" / f"{i}.png", rng)
        _png(d / "imgs2" / f"{i}.png", rng)
    (d / "textfiles" / "notes.txt").write_text("not an image\n")
    (d / "textfiles" / "table.csv").write_text("a,b\n1,2\n")
    for i in range(3):
        _png(d / "truncated" / f"{i}.png", rng)
    whole = (d / "truncated" / "0.png").read_bytes()
    (d / "truncated" / "3.png").write_bytes(whole[: len(whole) // 2])     # header intact, pixel data cut
    _png(d / "bomb" / "0.png", rng)
    _png_bomb(d / "bomb" / "1.png")
    np.savez(d / "noarr.npz", images=rng.integers(0, 256, (4, 16, 16, 3), dtype=np.uint8))
    np.savez(d / "float.npz", arr_0=rng.random((4, 16, 16, 3), dtype=np.float32))
    np.savez(d / "shape3d.npz", arr_0=rng.integers(0, 256, (4, 16, 16), dtype=np.uint8))
    np.savez(d / "crc.npz", arr_0=rng.integers(0, 256, (64, 16, 16, 3), dtype=np.uint8))
    blob = bytearray((d / "crc.npz").read_bytes())
    blob[len(blob) // 2] ^= 0xFF                                          # inside arr_0's data: zip CRC mismatch
    (d / "crc.npz").write_bytes(bytes(blob))
    np.savez(d / "stats-crc.npz", mu=np.zeros(192), sigma=np.eye(192))    # reference statistics, damaged
    blob = bytearray((d / "stats-crc.npz").read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    (d / "stats-crc.npz").write_bytes(bytes(blob))
    (d / "garbage.pth").write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    (d / "pickle.pth").write_bytes(pickle.dumps({"state_dict": _OpensAFile(str(d / "UNPICKLED"))}))
    (d / "garbage.sqlite").write_bytes(b"this is not an SQLite database" * 40)
    (d / "blocker").write_text("a regular file: nothing can be created below it\n")
    # configs
    (d / "list.yaml").write_text("- hidden: 32\n- lr: 0.1\n")
    (d / "invalid.yaml").write_text("include: smoke\nhidden: [32, 64\nlr: : 0.1\n")
    (d / "unknown_key.yaml").write_text("include: smoke\nhiddn: 32\n")
    (d / "traversal.yaml").write_text("include: ../../x\nhidden: 32\n")
    (d / "scalar.yaml").write_text("just a string\n")
    # run directories
    runs = d / "runs"
    good = {"good_a": _results("20260101-000000-toy-mixture-aaaaaa"),
            "good_b": _results("20260101-000001-toy-mixture-bbbbbb", value=2.0),
            "other": _results("20260101-000002-dlc-pipeline-cccccc", experiment="dlc-pipeline")}
    bad = {"trunc": json.dumps(good["good_a"])[:200],
           "list": "[]",
           "badrow": json.dumps({**good["good_a"], "metrics": [{"metric": "kl", "value": "high"}]}),
           "badrow2": json.dumps({**good["good_a"], "metrics": [{"value": 1.0}]}),
           "oldschema": json.dumps({**good["good_a"], "schema_version": 0}),
           "notjson": "\x00\xff\xfe binary"}
    for name, res in good.items():
        (runs / name).mkdir(parents=True)
        (runs / name / "results.json").write_text(json.dumps(res))
    for name, text in bad.items():
        (runs / name).mkdir(parents=True)
        (runs / name / "results.json").write_text(text)
    (runs / "noresults").mkdir()
    from reports.html import render_run

    render_run(runs / "good_a")
    from bench.store import RunStore

    store = RunStore(d / "store.sqlite")
    for name, res in good.items():
        store.record(res, str(runs / name))
    store.record(_results("20260101-000003-metrics-dddddd", experiment="metrics"), None)   # no run directory
    os.utime(d)
    return d


@pytest.fixture(scope="module", autouse=True)
def _imported():
    """Import what the commands import (torch, the experiments) once, so FAST_S times the checks alone."""
    import bench.run  # noqa: F401
    import reports.html  # noqa: F401
    from bench.experiment import load_builtin_experiments
    from bench.features import build_extractor  # noqa: F401

    load_builtin_experiments()


@pytest.fixture
def world(tmp_path, monkeypatch) -> Path:
    """A working directory holding the cache and (not yet created) run store of the command."""
    w = tmp_path / "world"
    (w / "cache").mkdir(parents=True)
    monkeypatch.chdir(w)
    monkeypatch.setenv("DLC_BENCH_CACHE", str(w / "cache"))
    monkeypatch.setenv("DLC_BENCH_STORE", str(w / "store" / "runs.sqlite"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("DLC_BENCH_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(w / "cache" / "torch"))
    return w


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path below `root` with its kind, mode, size, mtime and (files) sha256."""
    out: dict[str, tuple] = {".": (root.stat().st_mtime_ns,)}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() and not p.is_symlink() else None
        out[str(p.relative_to(root))] = (p.is_dir(), st.st_mode, st.st_size, st.st_mtime_ns, digest)
    return out


def _ends_with_fix(line: str) -> bool:
    """Whether `line` ends with a non-empty parenthesised group (nested parentheses allowed)."""
    line = line.rstrip()
    if not line.endswith(")"):
        return False
    depth = 0
    for i in range(len(line) - 1, -1, -1):
        depth += {")": 1, "(": -1}.get(line[i], 0)
        if depth == 0:
            return bool(line[i + 1:-1].strip()) and i > len("error: ")
    return False


class _StillRunning(Exception):
    pass


def _alarm(signum, frame):
    raise _StillRunning(f"still running after {LIMIT_S} s: the hostile input started real work")


#################################################################################
#                                   Cases                                       #
#################################################################################

@dataclass
class Case:
    id: str
    argv: list[str]
    fragment: str | None = None          # a fragment the error line must contain (wording owned elsewhere: None)
    setup: Callable[[Path, Path], None] | None = None
    fast: bool = False                   # must fail within FAST_S seconds
    root_skip: bool = False              # meaningless as root (permissions do not bind root)
    marks: list = field(default_factory=list)


def _readonly_out(world: Path, inputs: Path) -> None:
    (world / "ro").mkdir()
    os.chmod(world / "ro", 0o500)


def _finished_suite(world: Path, inputs: Path) -> None:
    (world / "suite").mkdir()
    (world / "suite" / "index.html").write_text("<html>an earlier suite's index</html>\n")


def _options(base: list[str], option: str, rows: list[tuple[str, str, str]], **kw) -> list[Case]:
    """One Case per (id, value of `option`, fragment) row, appended to the command line `base`."""
    return [Case(case_id, [*base, option, value], fragment, **kw) for case_id, value, fragment in rows]


RUN = ["run", "toy-mixture", "--preset", "smoke", "--quiet", "--out", "{world}/out"]
PIPE = ["run", "dlc-pipeline", "--preset", "smoke", "--quiet", "--out", "{world}/out"]
PIX = ["metrics", "--features", "pixels", "--metrics", "fid", "--quiet", "--out", "{world}/out"]
REAL = ["--real", "{in}/imgs"]
REF = ["ref-stats", "--features", "pixels", "--quiet"]

CASES = [
    # ---------------------------------------------------------------- run: names
    Case("run-unknown-experiment", ["run", "toy-mixtur", "--preset", "smoke", "--out", "{world}/out"],
         "Did you mean 'toy-mixture'"),
    Case("run-unknown-preset", ["run", "toy-mixture", "--preset", "smok", "--out", "{world}/out"],
         "Did you mean 'smoke'"),
    Case("run-preset-traversal", ["run", "toy-mixture", "--preset", "../../x", "--out", "{world}/out"]),
    Case("run-preset-absolute", ["run", "toy-mixture", "--preset", "/etc/passwd", "--out", "{world}/out"]),
    Case("run-no-config", ["run", "toy-mixture", "--out", "{world}/out"], "--preset"),
    *_options(RUN, "--set", [
        ("run-unknown-key", "n_mode=9", "Did you mean 'n_modes'"), ("run-wrong-type-int", "hidden=big", "'hidden'"),
        ("run-wrong-type-float", "lr=fast", "'lr'"), ("run-wrong-type-bool", "clip_x0=maybe", "'clip_x0'"),
        ("run-literal", "gmm_covariance=round", "'gmm_covariance'"),
        ("run-set-without-equals", "hidden", "--set key=value"),
        ("run-unknown-variant", "variants=oracle,cgan", "cgan"), ("run-not-a-square", "n_modes=10", "square")]),
    *_options(PIPE, "--set", [
        ("run-unknown-nested-key", "dit_sampling.sampelr=euler", "Did you mean 'dit_sampling.sampler'"),
        ("run-set-group", "dit=3", "dit"),
        ("run-pipeline-missing-weights", "eval.weights={in}/nonexistent.pth", "nonexistent.pth"),
        ("run-pipeline-garbage-weights", "eval.weights={in}/garbage.pth", "garbage.pth"),
        ("run-pipeline-pickle-weights", "eval.weights={in}/pickle.pth", "pickle.pth")]),
    # ---------------------------------------------------------------- run: values (validated when read: fast)
    *_options(RUN, "--set", [
        ("run-negative-hidden", "hidden=-5", "hidden"), ("run-zero-batch", "batch_size=0", "batch_size"),
        ("run-lr-nan", "lr=nan", "lr"), ("run-lr-inf", "lr=inf", "lr"), ("run-huge-n-eval", "n_eval=1e12", "n_eval"),
        ("run-variance-negative", "variance=-0.1", "variance")], fast=True),
    *_options(PIPE, "--set", [
        ("run-bogus-sampler", "dit_sampling.sampler=bogus", "bogus"),
        ("run-bogus-dit-sampler", "dit.sampler=bogus", "dit.sampler"),
        ("run-bogus-prior-sampler", "prior_sampling.sampler=bogus", "bogus"),
        ("run-pipeline-negative-steps", "dit.steps=-1", "steps"),
        ("run-pipeline-unknown-features", "eval.features=incepton", "incepton")], fast=True),
    *_options(RUN, "--device", [("run-device-banana", "banana", "banana")], fast=True),
    *_options(RUN, "--dtype", [("run-dtype-int8", "int8", "int8")], fast=True),
    # ---------------------------------------------------------------- run: seeds, device, dtype, sweeps
    Case("run-seeds-garbage", [*RUN, "--seeds", "x,y"], "--seeds"),
    Case("run-seeds-reversed", [*RUN, "--seeds", "3-1"], "--seeds"),
    Case("run-seeds-repeated", [*RUN, "--seeds", "0,0"], "--seeds"),
    Case("run-seeds-empty", [*RUN, "--seeds", ","], "--seeds"),
    Case("run-sweep-malformed", [*RUN, "--sweep", "hidden"], "--sweep"),
    Case("run-sweep-unknown-key", [*RUN, "--sweep", "hiddn=16,32"], "Did you mean 'hidden'"),
    Case("run-sweep-bad-value", [*RUN, "--sweep", "hidden=16,big"], "hidden"),
    Case("run-sweep-repeated", [*RUN, "--sweep", "hidden=16,16"], "hidden"),
    # ---------------------------------------------------------------- run: --config files
    Case("run-config-missing", ["run", "toy-mixture", "--config", "{in}/nonexistent.yaml", "--out", "{world}/out"],
         "nonexistent.yaml"),
    Case("run-config-invalid-yaml", ["run", "toy-mixture", "--config", "{in}/invalid.yaml", "--out", "{world}/out"],
         "invalid.yaml"),
    Case("run-config-list", ["run", "toy-mixture", "--config", "{in}/list.yaml", "--out", "{world}/out"],
         "list.yaml"),
    Case("run-config-scalar", ["run", "toy-mixture", "--config", "{in}/scalar.yaml", "--out", "{world}/out"],
         "scalar.yaml"),
    Case("run-config-unknown-key", ["run", "toy-mixture", "--config", "{in}/unknown_key.yaml", "--out",
                                    "{world}/out"], "Did you mean 'hidden'"),
    Case("run-config-include-traversal", ["run", "toy-mixture", "--config", "{in}/traversal.yaml", "--out",
                                          "{world}/out"], "../../x"),
    Case("run-config-is-a-directory", ["run", "toy-mixture", "--config", "{in}/imgs", "--out", "{world}/out"]),
    # ---------------------------------------------------------------- run: output and cache locations
    Case("run-out-below-a-file", ["run", "toy-mixture", "--preset", "smoke", "--out", "{in}/blocker/out"], "--out"),
    Case("run-out-is-a-file", ["run", "toy-mixture", "--preset", "smoke", "--out", "{in}/blocker"], "--out"),
    Case("run-out-readonly", ["run", "toy-mixture", "--preset", "smoke", "--out", "{world}/ro/out"], "--out",
         setup=_readonly_out, root_skip=True),
    Case("run-cache-below-a-file", [*RUN, "--cache-dir", "{in}/blocker/cache"], "--cache-dir"),
    Case("run-store-garbage", [*RUN, "--store", "{in}/garbage.sqlite"], "garbage.sqlite"),
    Case("run-store-below-a-file", [*RUN, "--store", "{in}/blocker/runs.sqlite"], "--store"),
    Case("run-out-holds-a-run", ["run", "toy-mixture", "--preset", "smoke", "--out", "{in}/runs/good_a"], "--force"),
    Case("suite-out-holds-a-suite", ["suite", "smoke", "--only", "toy-mixture", "--out", "{world}/suite"], "--force",
         setup=_finished_suite),
    # ---------------------------------------------------------------- metrics
    Case("metrics-unknown-metric", ["metrics", *REAL, "--fake", "{in}/imgs2", "--features", "pixels",
                                    "--metrics", "fdi"], "'fid'"),
    Case("metrics-empty-metrics", ["metrics", *REAL, "--fake", "{in}/imgs2", "--features", "pixels",
                                   "--metrics", ","], "--metrics"),
    Case("metrics-unknown-extractor", ["metrics", *REAL, "--fake", "{in}/imgs2", "--features", "incepton",
                                       "--metrics", "fid"], "Did you mean 'inception"),
    Case("metrics-real-missing", [*PIX, "--real", "{in}/nonexistent", "--fake", "{in}/imgs2"], "nonexistent"),
    Case("metrics-fake-missing", [*PIX, *REAL, "--fake", "{in}/nonexistent"], "nonexistent"),
    Case("metrics-fake-empty-dir", [*PIX, *REAL, "--fake", "{in}/empty"], "empty"),
    Case("metrics-fake-non-images", [*PIX, *REAL, "--fake", "{in}/textfiles"], "non-image"),
    Case("metrics-fake-truncated-png", [*PIX, *REAL, "--fake", "{in}/truncated"], "3.png"),
    Case("metrics-fake-png-bomb", [*PIX, *REAL, "--fake", "{in}/bomb"], "1.png"),
    Case("metrics-fake-npz-no-arr0", [*PIX, *REAL, "--fake", "{in}/noarr.npz"], "arr_0"),
    Case("metrics-fake-npz-float", [*PIX, *REAL, "--fake", "{in}/float.npz"], "uint8"),
    Case("metrics-fake-npz-3d", [*PIX, *REAL, "--fake", "{in}/shape3d.npz"], "shape3d.npz"),
    Case("metrics-fake-npz-crc", [*PIX, *REAL, "--fake", "{in}/crc.npz"], "crc.npz"),
    Case("metrics-real-stats-crc", [*PIX, "--real", "{in}/stats-crc.npz", "--fake", "{in}/imgs2"], "stats-crc.npz"),
    Case("metrics-fake-not-images", [*PIX, *REAL, "--fake", "{in}/garbage.pth"], "garbage.pth"),
    Case("metrics-weights-garbage", ["metrics", *REAL, "--fake", "{in}/imgs2", "--features", "effnet-lite0",
                                     "--weights", "{in}/garbage.pth", "--metrics", "fid", "--quiet"], "garbage.pth"),
    Case("metrics-weights-pickle", ["metrics", *REAL, "--fake", "{in}/imgs2", "--features", "effnet-lite0",
                                    "--weights", "{in}/pickle.pth", "--metrics", "fid", "--quiet"], "pickle.pth"),
    Case("metrics-weights-missing", ["metrics", *REAL, "--fake", "{in}/imgs2", "--features", "inception-v3-compat",
                                     "--weights", "{in}/nonexistent.pth", "--metrics", "fid", "--quiet"],
         "nonexistent.pth"),
    Case("metrics-weights-for-pixels", [*PIX, *REAL, "--fake", "{in}/imgs2", "--weights", "{in}/garbage.pth"],
         "weights"),
    Case("metrics-batch-size-zero", [*PIX, *REAL, "--fake", "{in}/imgs2", "--batch-size", "0"], "--batch-size"),
    Case("metrics-batch-size-garbage", [*PIX, *REAL, "--fake", "{in}/imgs2", "--batch-size", "many"],
         "--batch-size"),
    Case("metrics-dtype-int8", [*PIX, *REAL, "--fake", "{in}/imgs2", "--dtype", "int8"], "int8"),
    Case("metrics-device-banana", [*PIX, *REAL, "--fake", "{in}/imgs2", "--device", "banana"], "banana"),
    Case("metrics-unknown-layer", [*PIX, *REAL, "--fake", "{in}/imgs2", "--layer", "pool9"], "pool9"),
    Case("metrics-out-below-a-file", ["metrics", *REAL, "--fake", "{in}/imgs2", "--features", "pixels",
                                      "--metrics", "fid", "--out", "{in}/blocker/out"], "--out"),
    Case("metrics-out-readonly", ["metrics", *REAL, "--fake", "{in}/imgs2", "--features", "pixels",
                                  "--metrics", "fid", "--out", "{world}/ro/out"], "--out", setup=_readonly_out,
         root_skip=True),
    Case("metrics-out-holds-a-run", ["metrics", *REAL, "--fake", "{in}/imgs2", "--features", "pixels",
                                     "--metrics", "fid", "--out", "{in}/runs/good_a"], "--force"),
    Case("metrics-store-garbage", [*PIX, *REAL, "--fake", "{in}/imgs2", "--store", "{in}/garbage.sqlite"],
         "garbage.sqlite"),
    Case("metrics-missing-required", ["metrics", *REAL, "--metrics", "fid", "--features", "pixels"], "--fake"),
    # ---------------------------------------------------------------- ref-stats
    Case("ref-stats-out-not-npz", [*REF, "{in}/imgs", "--out", "{world}/ref.txt"], ".npz"),
    Case("ref-stats-images-missing", [*REF, "{in}/nonexistent", "--out", "{world}/ref.npz"], "nonexistent"),
    Case("ref-stats-empty-dir", [*REF, "{in}/empty", "--out", "{world}/ref.npz"], "empty"),
    Case("ref-stats-truncated-png", [*REF, "{in}/truncated", "--out", "{world}/ref.npz"], "3.png"),
    Case("ref-stats-npz-crc", [*REF, "{in}/crc.npz", "--out", "{world}/ref.npz"], "crc.npz"),
    Case("ref-stats-unknown-extractor", ["ref-stats", "{in}/imgs", "--out", "{world}/ref.npz", "--features",
                                         "pixel"], "Did you mean 'pixels'"),
    Case("ref-stats-out-below-a-file", [*REF, "{in}/imgs", "--out", "{in}/blocker/ref.npz"], "--out"),
    Case("ref-stats-weights-garbage", ["ref-stats", "{in}/imgs", "--out", "{world}/ref.npz", "--weights",
                                       "{in}/garbage.pth", "--quiet"], "garbage.pth"),
    # ---------------------------------------------------------------- report
    Case("report-missing-dir", ["report", "{in}/runs/nonexistent"], "results.json"),
    Case("report-no-results", ["report", "{in}/runs/noresults"], "results.json"),
    Case("report-truncated-json", ["report", "{in}/runs/trunc"], "JSON"),
    Case("report-not-utf8", ["report", "{in}/runs/notjson"], "notjson"),
    Case("report-json-list", ["report", "{in}/runs/list"], "list"),
    Case("report-malformed-row", ["report", "{in}/runs/badrow"], "value"),
    Case("report-row-without-metric", ["report", "{in}/runs/badrow2"], "metric"),
    Case("report-old-schema", ["report", "{in}/runs/oldschema"], "schema version"),
    Case("report-second-dir-bad", ["report", "{in}/runs/good_a", "{in}/runs/trunc", "--out", "{world}/index.html"],
         "trunc"),
    Case("report-out-below-a-file", ["report", "{in}/runs/good_a", "--out", "{in}/blocker/index.html"], "--out"),
    Case("report-out-is-a-dir", ["report", "{in}/runs/good_a", "{in}/runs/good_b", "--out", "{world}"], "--out"),
    Case("report-out-exists", ["report", "{in}/runs/good_a", "{in}/runs/good_b", "--out",
                               "{in}/runs/good_a/report.html"], "--force"),
    # ---------------------------------------------------------------- compare
    Case("compare-one-run", ["compare", "{in}/runs/good_a"], "two"),
    Case("compare-unknown-run-id", ["compare", "{in}/runs/good_a", "20260101-000001-toy-mixture-bbbbbx",
                                    "--store", "{in}/store.sqlite"], "Did you mean"),
    Case("compare-two-experiments", ["compare", "{in}/runs/good_a", "{in}/runs/other"], "one experiment"),
    Case("compare-same-run-twice", ["compare", "{in}/runs/good_a", "20260101-000000-toy-mixture-aaaaaa",
                                    "--store", "{in}/store.sqlite"], "twice"),
    Case("compare-bad-run-dir", ["compare", "{in}/runs/good_a", "{in}/runs/badrow"], "badrow"),
    Case("compare-out-without-dirs", ["compare", "20260101-000003-metrics-dddddd", "{in}/runs/good_a", "--store",
                                      "{in}/store.sqlite", "--out", "{world}/cmp.html"]),
    Case("compare-out-exists", ["compare", "{in}/runs/good_a", "{in}/runs/good_b", "--out",
                                "{in}/runs/good_a/report.html"], "--force"),
    Case("compare-store-garbage", ["compare", "run-a", "run-b", "--store", "{in}/garbage.sqlite"], "garbage.sqlite"),
    # ---------------------------------------------------------------- history, runs, the parser
    Case("history-unknown-metric", ["history", "toy-mixture", "kl_symetric", "--store", "{in}/store.sqlite"],
         "Did you mean 'kl_symmetric'"),
    Case("history-unknown-experiment", ["history", "toy-mixtur", "kl_symmetric", "--store", "{in}/store.sqlite"],
         "Did you mean 'toy-mixture'"),
    Case("history-unknown-config-hash", ["history", "toy-mixture", "kl_symmetric", "--config-hash", "0123456789abcdeg",
                                         "--store", "{in}/store.sqlite"], "config hash"),
    Case("history-out-exists", ["history", "toy-mixture", "kl_symmetric", "--store", "{in}/store.sqlite", "--out",
                                "{in}/runs/good_a/report.html"], "--force"),
    Case("history-store-garbage", ["history", "toy-mixture", "kl_symmetric", "--store", "{in}/garbage.sqlite"],
         "garbage.sqlite"),
    Case("history-store-is-a-dir", ["history", "toy-mixture", "kl_symmetric", "--store", "{in}/runs"], "--store"),
    Case("runs-limit-garbage", ["runs", "--limit", "all"], "--limit"),
    Case("runs-limit-zero", ["runs", "--limit", "0"], "--limit"),
    Case("unknown-subcommand", ["comapre", "a", "b"], "compare"),
    Case("unknown-option", ["run", "toy-mixture", "--preset", "smoke", "--sets", "hidden=3"], "--sets"),
]


def _argv(case: Case, world: Path, inputs: Path) -> list[str]:
    return [a.replace("{world}", str(world)).replace("{in}", str(inputs)) for a in case.argv]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=c.marks) for c in CASES])
def test_hostile_input(case: Case, inputs: Path, world: Path, capsys):
    if case.root_skip and os.geteuid() == 0:
        pytest.skip("running as root: directory permissions do not stop root from writing")
    if case.setup:
        case.setup(world, inputs)
    argv = _argv(case, world, inputs)
    before = snapshot(world), snapshot(inputs)
    capsys.readouterr()
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, LIMIT_S)
    t0 = time.perf_counter()
    try:
        code = main(argv)
    except SystemExit as e:       # argparse's own exit: not the one-line contract
        code = e.code
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    elapsed = time.perf_counter() - t0
    captured = capsys.readouterr()
    lines = [ln for ln in captured.err.splitlines() if ln.strip()]
    assert code == 2, f"exit status {code}; stderr:\n{captured.err[-3000:]}"
    assert len(lines) == 1, f"{len(lines)} lines on stderr:\n{captured.err[-3000:]}"
    assert lines[0].startswith("error: "), lines[0]
    assert _ends_with_fix(lines[0]), f"no parenthesised fix: {lines[0]}"
    if case.fragment is not None:
        assert case.fragment in lines[0], lines[0]
    assert snapshot(inputs) == before[1], "an input file or folder was changed"
    assert snapshot(world) == before[0], f"something was written: {sorted(set(snapshot(world)) ^ set(before[0]))}"
    assert not (inputs / "UNPICKLED").exists()
    if case.fast:
        assert elapsed < FAST_S, f"failed after {elapsed:.2f} s, not within {FAST_S} s"


def test_corpus_is_large_and_covers_every_subcommand():
    assert len(CASES) >= 40 and len({c.id for c in CASES}) == len(CASES)
    commands = {c.argv[0] for c in CASES}
    assert {"run", "metrics", "ref-stats", "report", "compare", "history"} <= commands


@pytest.mark.parametrize("argv,fragment", [
    (["run", "toy-mixtur", "--preset", "smoke"], "Did you mean 'toy-mixture'"),
    (["metrics", "--real", "x"], "required"),
])
def test_console_exit_status_and_one_line(argv, fragment, tmp_path):
    """Through a real process: exit status 2, one `error:` line, no usage text, nothing created."""
    env = {**os.environ, "DLC_BENCH_STORE": str(tmp_path / "store.sqlite"),
           "DLC_BENCH_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-m", "bench.cli", *argv], capture_output=True, text=True, env=env,
                       cwd=tmp_path, timeout=120)
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], p.stderr
    assert _ends_with_fix(lines[0]) and not list(tmp_path.iterdir())


def test_valid_counterparts_succeed(inputs: Path, world: Path, capsys):
    """The inputs the corpus bends, unbent, pass: the corpus fails for the reason it names."""
    store = ["--store", str(inputs / "store.sqlite")]
    before = snapshot(inputs)
    assert main(["compare", str(inputs / "runs" / "good_a"), "20260101-000001-toy-mixture-bb", *store]) == 0
    out = capsys.readouterr().out
    assert "kl_symmetric" in out and "Δ +1.5" in out
    assert main(["history", "toy-mixture", "kl_symmetric", *store]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 2 + 2     # header, column names, two rows
    assert main(["compare", str(inputs / "runs" / "good_a"), str(inputs / "runs" / "good_b"), "--out",
                 str(world / "cmp.html")]) == 0
    assert (world / "cmp.html").is_file()
    assert main(["runs", *store]) == 0 and "20260101-000003-metrics-dddddd" in capsys.readouterr().out
    assert main(["ref-stats", str(inputs / "imgs"), "--out", str(world / "ref.npz"), "--features", "pixels",
                 "--quiet", "--no-cache"]) == 0
    assert snapshot(inputs) == before
