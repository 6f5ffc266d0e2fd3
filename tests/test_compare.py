"""`dlc-bench compare`: differences with intervals, verdicts, config diff and the --fail-if gate, on real runs."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats

from bench.cli import main
from bench.compare import compare_runs, gate, parse_fail_if
from bench.schema import Results

from .test_features_helpers import smooth_images


def _npz(path, images: torch.Tensor):
    np.savez(path, arr_0=images.permute(0, 2, 3, 1).numpy())
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three `metrics` runs against one real set: the same fake set twice, then that set blurred."""
    root = tmp_path_factory.mktemp("cmp")
    real = _npz(root / "real.npz", smooth_images(400, 8, seed=1))
    fake = smooth_images(400, 8, seed=2)
    blurred = F.avg_pool2d(F.pad(fake.float(), (1, 1, 1, 1), mode="replicate"), 3, stride=1).round().to(torch.uint8)
    inputs = {"good": _npz(root / "fake.npz", fake), "blurred": _npz(root / "blurred.npz", blurred)}
    out = {}
    for name, fake_path in (("a", inputs["good"]), ("b", inputs["good"]), ("c", inputs["blurred"])):
        argv = ["metrics", "--real", real, "--fake", fake_path, "--features", "pixels", "--metrics", "fd,precision",
                "--bootstrap", "100", "--out", root / name, "--no-store", "--no-cache", "--quiet"]
        assert main([str(a) for a in argv]) == 0
        out[name] = root / name
    return out


def _compare(capsys, *argv):
    rc = main([str(a) for a in ("compare", *argv)])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def test_the_same_inputs_twice_are_identical_and_pass_the_gate(runs, capsys):
    rc, out, err = _compare(capsys, runs["a"], runs["b"], "--fail-if", "fd_pixels:+2%")
    assert rc == 0 and "every number is identical" in out and "config: identical" in out and err == ""
    rc, out, _ = _compare(capsys, runs["a"], runs["b"], "--json")
    (cmp,) = json.loads(out)["comparisons"]
    assert cmp["identical"] and {d["verdict"] for d in cmp["differences"]} == {"identical"}


def test_a_blurred_sample_set_is_worse_and_fails_the_gate(runs, capsys):
    rc, out, err = _compare(capsys, runs["a"], runs["c"], "--fail-if", "fd_pixels:+2%")
    assert rc == 1
    line = next(ln for ln in out.splitlines() if ln.startswith("fd_pixels"))
    assert line.endswith("worse (intervals)"), line
    assert "config differences: fake:" in out
    assert err.startswith("FAIL ") and "fd_pixels [features=pixels" in err and "got worse by +" in err
    assert "beyond the tolerance 2%" in err
    # a tolerance larger than the change passes; so does a gate on another metric that did not get worse
    cmp = json.loads(_compare(capsys, runs["a"], runs["c"], "--json")[1])["comparisons"][0]
    fd = next(d for d in cmp["differences"] if d["metric"] == "fd_pixels")
    assert fd["delta"] > 0 and fd["ci"][0] > 0
    big = f"{100 * fd['delta'] / fd['a']['value'] * 1.01:.3f}%"
    assert _compare(capsys, runs["a"], runs["c"], "--fail-if", f"fd_pixels:+{big}")[0] == 0


def test_an_unknown_gate_metric_is_an_input_error(runs, capsys):
    rc, _, err = _compare(capsys, runs["a"], runs["c"], "--fail-if", "fd_pixel:+2%")
    assert rc == 2 and err.startswith("error: --fail-if names metric 'fd_pixel'") and "Did you mean 'fd_pixels'" in err
    rc, _, err = _compare(capsys, runs["a"], runs["c"], "--fail-if", "fd_pixels:two")
    assert rc == 2 and "is not METRIC" in err


def _results(rows, config=None, run_id="r"):
    return Results(run_id=run_id, experiment="x", experiment_version="1", description="", preset=None,
                   config=config or {}, config_hash="h", code_version="c", git={"commit": None}, environment={},
                   seeds=[], started_at="", finished_at="", timings={}, stages=[], cache={}, metrics=rows)


def _row(metric, value, seed=None, hib=False, lo=None, hi=None, **labels):
    return {"metric": metric, "value": value, "ci_low": lo, "ci_high": hi, "n": 10, "higher_is_better": hib,
            "seed": seed, **labels}


def test_welch_over_seeds_equals_scipy_and_directions_follow_the_registry():
    a = [_row("fd", v, seed=i) for i, v in enumerate([10.0, 11.0, 12.0])] + [_row("fd", 11.0)]
    b = [_row("fd", v, seed=i) for i, v in enumerate([14.0, 15.5, 16.0])] + [_row("fd", 15.1667)]
    (d,) = compare_runs(_results(a), _results(b))["differences"]
    ci = stats.ttest_ind([14.0, 15.5, 16.0], [10.0, 11.0, 12.0], equal_var=False).confidence_interval()
    assert d["method"] == "welch" and d["ci"] == pytest.approx((ci.low, ci.high)) and d["verdict"] == "worse"
    up = [dict(r, higher_is_better=True) for r in b]
    assert compare_runs(_results([dict(r, higher_is_better=True) for r in a]), _results(up))["differences"][0][
        "verdict"] == "better"


def test_intervals_of_the_runs_combine_as_independent_normals():
    a, b = [_row("fd", 10.0, seed=0, lo=9.0, hi=11.0)], [_row("fd", 13.0, seed=0, lo=9.0, hi=17.0)]
    (d,) = compare_runs(_results(a), _results(b))["differences"]
    half = math.hypot(1.0, 4.0)                                          # half-widths add in quadrature
    assert d["method"] == "intervals" and d["ci"] == pytest.approx((3 - half, 3 + half))
    assert d["verdict"] == "no significant change"                      # 3 ± 4.12 covers 0
    narrow = [_row("fd", 13.0, seed=0, lo=11.0, hi=15.0)]                # 3 ± √5 does not
    assert compare_runs(_results(a), _results(narrow))["differences"][0]["verdict"] == "worse"
    assert gate(compare_runs(_results(a), _results(b)), parse_fail_if(["fd"])) == []
    (d,) = compare_runs(_results([_row("fd", 10.0, seed=0)]), _results([_row("fd", 13.0, seed=0)]))["differences"]
    assert (d["ci"], d["verdict"]) == (None, "no interval")             # one value each: no claim


def test_config_diff_and_rows_present_on_one_side():
    cmp = compare_runs(_results([_row("fd", 1.0), _row("recall", 0.5, hib=True)], {"dit": {"lr": 1e-3, "x": 1}}),
                       _results([_row("fd", 1.0)], {"dit": {"lr": 2e-3, "x": 1}}))
    assert cmp["config_diff"] == [("dit.lr", 1e-3, 2e-3)]
    assert [d["verdict"] for d in cmp["differences"]] == ["identical", "only in A"]


@pytest.fixture(scope="module")
def stored(runs, tmp_path_factory):
    """Two `metrics` runs of one set-up recorded in a run store."""
    root = tmp_path_factory.mktemp("hist")
    store = root / "runs.sqlite"
    real = runs["a"].parent / "real.npz"
    for fake in ("fake.npz", "blurred.npz"):
        argv = ["metrics", "--real", real, "--fake", runs["a"].parent / fake, "--features", "pixels", "--metrics",
                "fd,precision", "--bootstrap", "20", "--store", store, "--no-cache", "--quiet"]
        assert main([str(a) for a in argv]) == 0
    return store


def test_history_has_a_header_filters_and_machine_formats(stored, capsys):
    assert main(["history", "metrics", "fd_pixels", "--store", str(stored)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("metrics · fd_pixels · 2 value(s) over 2 run(s)") and out[1].startswith("finished")
    assert len(out) == 4 and all("features=pixels" in ln for ln in out[2:])
    assert main(["history", "metrics", "fd_pixels", "--store", str(stored), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 2 and rows[0]["value"] < rows[1]["value"]          # the blurred set came second
    assert main(["history", "metrics", "fd_pixels", "--store", str(stored), "--csv", "--where", "layer=pixels"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("finished_at,git_commit") and len(lines) == 3
    rc = main(["history", "metrics", "fd_pixels", "--store", str(stored), "--where", "layr=pixels"])
    assert rc == 2 and "Did you mean 'layer'" in capsys.readouterr().err
    rc = main(["history", "metrics", "fd_pixel", "--store", str(stored)])
    assert rc == 2 and "Did you mean 'fd_pixels'" in capsys.readouterr().err


def test_version():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "bench.cli", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("dlc-bench 0.")


def test_a_models_commits_in_its_own_repository_make_the_history(runs, tmp_path, capsys):
    """Samples scored with --repo (the model's checkout) at two commits: history shows both commits, one model tag,
    one config hash; compare of the two runs names both commits."""
    import subprocess

    repo, store = tmp_path / "model", tmp_path / "runs.sqlite"
    repo.mkdir()
    git = lambda *a: subprocess.run(["git", "-C", str(repo), *a], check=True, capture_output=True, text=True).stdout
    git("init", "-q")
    git("config", "user.email", "t@t")
    git("config", "user.name", "t")
    commits = []
    real = runs["a"].parent / "real.npz"
    for i, fake in enumerate(("fake.npz", "blurred.npz")):
        (repo / "model.py").write_text(f"VERSION = {i}\n")
        git("add", ".")
        git("commit", "-q", "-m", f"v{i}")
        commits.append(git("rev-parse", "HEAD").strip())
        argv = ["metrics", "--real", real, "--fake", runs["a"].parent / fake, "--features", "pixels", "--metrics",
                "fd", "--repo", repo, "--tag", "my-model", "--store", store, "--no-cache", "--quiet",
                "--out", tmp_path / f"run{i}"]
        assert main([str(a) for a in argv]) == 0
    capsys.readouterr()
    assert main(["history", "metrics", "fd_pixels", "--store", str(store), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["git_commit"] for r in rows] == commits and len({r["config_hash"] for r in rows}) == 1
    assert main(["history", "metrics", "fd_pixels", "--store", str(store)]) == 0
    text = capsys.readouterr().out
    assert commits[0][:8] in text and commits[1][:8] in text
    rc, out, _ = _compare(capsys, tmp_path / "run0", tmp_path / "run1")
    assert rc == 0 and f"(commit {commits[0][:8]})" in out and f"(commit {commits[1][:8]})" in out
    assert "fake_path" in out                                               # the config diff: the sample files


def test_metrics_defaults_to_the_offline_extractor(tmp_path, capsys):
    real, fake = _npz(tmp_path / "r.npz", smooth_images(12, 8, seed=1)), _npz(tmp_path / "f.npz", smooth_images(12, 8))
    assert main(["metrics", "--real", str(real), "--fake", str(fake), "--metrics", "fd", "--no-store", "--no-cache",
                 "--quiet"]) == 0
    assert set(json.loads(capsys.readouterr().out)) == {"fd_effnet"}


def test_the_comparison_page_shows_verdicts_and_the_config_diff(runs, tmp_path, capsys):
    page = tmp_path / "cmp.html"
    rc, out, _ = _compare(capsys, runs["a"], runs["c"], "--out", page)
    assert rc == 0 and page.is_file()
    html = page.read_text()
    assert '<tr class="worse"><td class="label">fd_pixels ↓' in html and "worse (intervals)" in html
    assert "config differences: <code>fake</code>" in html


@pytest.mark.browser
def test_the_comparison_page_in_headless_chromium(runs, tmp_path, capsys):
    from selenium.webdriver.common.by import By

    from .test_reports import headless_chromium

    page = tmp_path / "cmp.html"
    assert _compare(capsys, runs["a"], runs["b"], runs["c"], "--out", page)[0] == 0
    with headless_chromium(tmp_path) as wd:
        wd.get(page.resolve().as_uri())
        tables = wd.find_elements(By.CSS_SELECTOR, "table.verdicts")
        assert len(tables) == 2                                              # b and c, each against a
        first = [td.text for td in tables[0].find_elements(By.CSS_SELECTOR, "td.verdict")]
        assert first and set(first) == {"identical"}
        worse = tables[1].find_elements(By.CSS_SELECTOR, "tr.worse td.verdict")
        assert worse and worse[0].value_of_css_property("color") == "rgba(180, 35, 24, 1)"


def test_the_history_page_plots_both_commits_and_marks_the_significant_change(stored, tmp_path, capsys):
    page = tmp_path / "hist.html"
    assert main(["history", "metrics", "fd_pixels", "--store", str(stored), "--out", str(page)]) == 0
    html = page.read_text()
    assert html.count('class="point') == 2 and html.count('class="point changed"') == 1   # blurred: a clear jump
    assert 'class="band"' in html and "<title>" in html
    from selenium.webdriver.common.by import By

    from .test_reports import _chromium, headless_chromium

    if _chromium() is None:
        return
    with headless_chromium(tmp_path) as wd:
        wd.get(page.resolve().as_uri())
        svg = wd.find_element(By.ID, "history")
        assert svg.is_displayed() and svg.size["width"] > 500
        assert len(wd.find_elements(By.CSS_SELECTOR, "circle.changed")) == 1
        assert len(wd.find_elements(By.CSS_SELECTOR, "#points tbody tr")) == 2


@pytest.fixture(scope="module")
def cached_runs(tmp_path_factory):
    """`metrics` runs that stored their features in a feature cache: a fake set, the same set with a slight colour
    shift, and against reference statistics instead of images."""
    root = tmp_path_factory.mktemp("cmp-cached")
    cache = root / "cache"
    real = _npz(root / "real.npz", smooth_images(300, 8, seed=1))
    fake = smooth_images(300, 8, seed=2)
    shifted = (fake.float() * 0.9 + 30).round().clamp(0, 255).to(torch.uint8)
    out = {"cache": cache}
    for name, images in (("a", fake), ("b", shifted)):
        argv = ["metrics", "--real", real, "--fake", _npz(root / f"{name}.npz", images), "--features", "pixels",
                "--metrics", "fd", "--bootstrap", "100", "--out", root / name, "--no-store", "--cache-dir", cache,
                "--quiet"]
        assert main([str(a) for a in argv]) == 0
        out[name] = Results.from_dict(json.loads((root / name / "results.json").read_text()))
    return out


def test_stored_features_give_a_paired_bootstrap_of_the_fd_difference(cached_runs):
    """With the features in the cache, the FD difference gets a paired bootstrap over both sample sets, which is
    narrower than combining the two runs' own intervals; the same comparison without stored features (or with a
    cache that lacks them) falls back to the runs' intervals."""
    from bench.compare import stored_features
    from bench.metrics.frechet import fd_difference_ci

    a, b = cached_runs["a"], cached_runs["b"]
    load = stored_features(cached_runs["cache"])
    paired = next(d for d in compare_runs(a, b, features=load)["differences"] if d["metric"] == "fd_pixels")
    plain = next(d for d in compare_runs(a, b)["differences"] if d["metric"] == "fd_pixels")
    assert paired["method"] == "paired bootstrap" and plain["method"] == "intervals"
    assert paired["delta"] == plain["delta"] > 0 and paired["verdict"] == "worse"
    width = lambda d: d["ci"][1] - d["ci"][0]
    assert width(paired) < width(plain)
    # the interval is fd_difference_ci's on the features the loader found, which reproduce both runs' values
    (_, real_a, fake_a), (_, _, fake_b) = load(a, a.metrics[0]), load(b, b.metrics[0])
    ref = fd_difference_ci(real=real_a, fake_a=fake_a, fake_b=fake_b, n_resamples=200, seed=0)
    assert paired["ci"] == (ref.low, ref.high)
    empty = stored_features(cached_runs["cache"].parent / "no-cache")
    assert next(d for d in compare_runs(a, b, features=empty)["differences"]
                if d["metric"] == "fd_pixels")["method"] == "intervals"


def test_the_compare_command_reads_the_stored_features(cached_runs, capsys):
    """`dlc-bench compare --cache-dir` on the two cached runs' directories: the FD line says 'paired bootstrap'."""
    a_dir, b_dir = (cached_runs["cache"].parent / n for n in ("a", "b"))
    rc, out, _ = _compare(capsys, a_dir, b_dir, "--cache-dir", cached_runs["cache"])
    line = next(ln for ln in out.splitlines() if ln.startswith("fd_pixels"))
    assert rc == 0 and line.endswith("worse (paired bootstrap)"), line
    rc, out, _ = _compare(capsys, a_dir, b_dir, "--cache-dir", cached_runs["cache"].parent / "elsewhere")
    assert next(ln for ln in out.splitlines() if ln.startswith("fd_pixels")).endswith("worse (intervals)")
