"""HTML reports: rendered from stored results only, self-contained, and checked in a real headless browser."""
from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path

import pytest

from bench.errors import UserError
from bench.schema import SCHEMA_VERSION, metric_row, write_results
from reports.html import (ReportError, fmt_ci, render_index, render_run, summary_table, summary_tables,
                          sweep_table)


def _results(run_id: str, values: dict, preset: str = "smoke") -> dict:
    rows = []
    for (variant, n), (v, lo, hi) in values.items():
        rows.append(metric_row("kl_excess", v, ci_low=lo, ci_high=hi, n=3, higher_is_better=False,
                               variant=variant, n_modes=n))
        rows.append(metric_row("coverage", 1 - v, ci_low=None, ci_high=None, n=3, higher_is_better=True,
                               variant=variant, n_modes=n))
    rows.append(metric_row("kl_excess", 0.123456, n=100, higher_is_better=False, variant="oracle", n_modes=9, seed=0))
    return {"schema_version": SCHEMA_VERSION, "run_id": run_id, "experiment": "toy-mixture", "experiment_version": "1",
            "description": "a test", "preset": preset, "config": {"n_modes": [9, 121]}, "config_hash": "abc123",
            "code_version": "def456", "git": {"commit": "0123456789abcdef", "dirty": True},
            "environment": {"python": "3.11", "torch": "2.x", "device": "cpu", "dtype": "float32", "threads": 2},
            "seeds": [0, 1, 2], "started_at": "t0", "finished_at": "t1", "timings": {"train": 1.5, "total": 2.0},
            "stages": [{"stage": "train", "desc": "train oracle", "cached": True, "seconds": 0.01}],
            "cache": {"hits": 1, "misses": 0}, "metrics": rows,
            "figures": [{"name": "curve", "path": "figures/curve.png", "caption": "a curve"}],
            "artifacts": [], "notes": ["a computed note"], "display": {"metric_order": ["coverage", "kl_excess"]}}


def _write_run(d: Path, res: dict) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    (d / "figures").mkdir(parents=True)
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([0, 1], [1, 0])
    fig.savefig(d / "figures" / "curve.png")
    plt.close(fig)
    write_results(d, res)
    return d


VALUES = {("unconditional", 9): (0.5, 0.4, 0.6), ("oracle", 9): (0.1, 0.05, 0.15),
          ("unconditional", 121): (0.9, 0.7, 1.1), ("oracle", 121): (0.2, 0.1, 0.3)}


def test_fmt_ci_symmetric_and_asymmetric():
    assert fmt_ci({"value": 0.5, "ci_low": 0.4, "ci_high": 0.6}) == "0.5 ± 0.1"
    assert fmt_ci({"value": 0.5, "ci_low": 0.1, "ci_high": 0.6}) == "0.5 [0.1, 0.6]"
    assert fmt_ci({"value": 2.0, "ci_low": None, "ci_high": None}) == "2"


def test_summary_table_pivots_orders_and_highlights_best():
    t = summary_table(_results("r", VALUES)["metrics"], {"metric_order": ["coverage", "kl_excess"]})
    assert t["labels"] == ["variant", "n_modes"]
    assert [m["name"] for m in t["metrics"]] == ["coverage", "kl_excess"]
    assert [m["arrow"] for m in t["metrics"]] == ["↑", "↓"]
    lines = {tuple(line["labels"]): line["cells"] for line in t["lines"]}
    assert len(lines) == 4                                              # the per-seed row is not in the summary
    assert lines[("oracle", "9")][1]["best"] and not lines[("unconditional", "9")][1]["best"]
    assert not any(cells[0]["best"] for cells in lines.values())        # coverage has no intervals: no claim
    assert lines[("unconditional", "121")][1]["text"] == "0.9 ± 0.2"


def test_best_is_never_a_floor_nor_inside_overlapping_intervals():
    def row(variant, v, lo, hi):
        return metric_row("fd", v, ci_low=lo, ci_high=hi, higher_is_better=False, variant=variant)

    def best(rows):
        t = summary_table(rows)
        return {line["labels"][0] for line in t["lines"] if line["cells"][0]["best"]}

    clear = [row("dlc", 10, 9, 11), row("unconditional", 20, 18, 22), row("real-train", 2, 1.5, 2.5)]
    assert best(clear) == {"dlc"}                                        # the floor is lower, but not a method
    assert best([row("dlc", 10, 9, 15), row("unconditional", 12, 11, 13)]) == set()    # overlapping: no bold
    assert best([row("dlc", 10, 10, 10), row("unconditional", 12, 12, 12)]) == set()   # no interval: no claim


def _mixed_rows() -> list[dict]:
    """Seed-aggregated rows of every kind, labelled as dlc-pipeline labels them, and one per-seed row."""
    rows = []
    for i, variant in enumerate(["dlc", "unconditional", "real-train"]):
        for m, v, better in (("fd_effnet", 30.0 + 10 * i, False), ("precision", 0.5 + 0.1 * i, True),
                             ("vendi", 2.0 + 5 * i, True)):          # fd and vendi: intervals apart
            rows.append(metric_row(m, v, ci_low=v - 1, ci_high=v + 1, higher_is_better=better, variant=variant,
                                   features="effnet-lite0", n=3))
        rows.append(metric_row("object_frac", 0.9, higher_is_better=True, variant=variant, n=3))
    rows.append(metric_row("source_mse", 0.6, higher_is_better=False, variant="dlc-recon", n=3))
    rows += [metric_row("factor_agreement", 0.3, higher_is_better=True, variant="dlc-recon", factor=f, chance=c, n=3)
             for f, c in (("shape", 1 / 6), ("size", 1 / 3))]
    rows.append(metric_row("fd_effnet_gap", -9.5, higher_is_better=False, variant="dlc", against="unconditional"))
    rows += [metric_row("probe_top1", 0.4 + 0.1 * j, higher_is_better=True, representation=rep, factor=f, n=64)
             for rep in ("dlc", "embedding") for j, f in enumerate(("shape", "colour", "size"))]
    rows += [metric_row("code_swap_ratio", 1.01, higher_is_better=True, against=a, t_bin=t, conditioning="dlc", n=8)
             for t in ("0.00-0.50", "0.50-1.00") for a in ("shuffled", "null")]
    rows += [metric_row("code_tv", 0.2, higher_is_better=False, variant=v, n=64) for v in ("dlc", "real-train")]
    rows.append(metric_row("codes_per_position", 3.6, higher_is_better=None, stage="encoder", n=64))
    rows += [metric_row("train_loss", 4.0, higher_is_better=None, stage=s, n=100) for s in ("encoder", "dit-dlc")]
    rows.append(metric_row("wall_per_image", 0.01, higher_is_better=False))         # fits no kind: "other"
    rows.append(metric_row("fd_effnet", 31.0, higher_is_better=False, variant="dlc", features="effnet-lite0", seed=0))
    return rows


def test_the_summary_is_one_table_per_kind_of_measure_without_empty_rows_and_without_losing_a_row():
    rows = _mixed_rows()
    display = {"metric_order": ["fd_effnet", "precision", "vendi", "train_loss", "code_tv", "code_swap_ratio"],
               "label_order": {"variant": ["dlc", "unconditional", "dlc-recon", "real-train"]}}
    sections = summary_tables(rows, display)
    assert [s["id"] for s in sections] == ["samples", "probes", "codes", "training", "other"]
    tables = {t["id"]: t for s in sections for t in s["tables"]}
    labels = {i: t["labels"] for i, t in tables.items()}
    assert labels == {"summary-samples": ["variant"], "summary-probes": ["representation"],
                      "summary-codes": ["variant"], "summary-codes-2": ["t_bin", "conditioning"],
                      "summary-codes-3": ["stage"], "summary-training": ["stage"], "summary-other": []}
    for t in tables.values():                  # every line names itself fully and holds a value
        assert all(all(line["labels"]) and any(c["text"] for c in line["cells"]) for line in t["lines"]), t["id"]
        assert all(any(line["cells"][j]["text"] for line in t["lines"]) for j in range(len(t["metrics"]))), t["id"]
    n_agg = sum(r.get("seed") is None for r in rows)
    assert sum(bool(c["text"]) for t in tables.values() for line in t["lines"] for c in line["cells"]) == n_agg
    samples = tables["summary-samples"]
    assert [line["labels"] for line in samples["lines"]] == [["dlc"], ["unconditional"], ["dlc-recon"], ["real-train"]]
    heads = [(m["name"], m["qualifiers"]) for m in samples["metrics"]]
    assert heads[:3] == [("fd_effnet", "features=effnet-lite0"), ("precision", "features=effnet-lite0"),
                         ("vendi", "features=effnet-lite0")]                    # display.metric_order kept
    assert ("factor_agreement", "factor=shape · chance=0.1667") in heads
    best = [(line["labels"], m["name"]) for line in samples["lines"] for m, c in zip(samples["metrics"], line["cells"])
            if c["best"]]
    assert best == [(["dlc"], "fd_effnet")]             # vendi's intervals are as far apart: it has no direction
    assert ("fd_effnet_gap", "against=unconditional") in heads
    probes = tables["summary-probes"]
    assert [m["qualifiers"] for m in probes["metrics"]] == ["factor=shape", "factor=colour", "factor=size"]
    assert [line["labels"] for line in probes["lines"]] == [["dlc"], ["embedding"]]
    assert [c["text"] for c in probes["lines"][1]["cells"]] == ["0.4", "0.5", "0.6"]
    assert [(m["name"], m["qualifiers"]) for m in tables["summary-codes-2"]["metrics"]] == [
        ("code_swap_ratio", "against=shuffled"), ("code_swap_ratio", "against=null")]


def test_vendi_carries_no_direction_and_is_never_best(tmp_path):
    """Vendi's registry entry says higher is better; the report claims no direction (closer to the data's value
    is what matters): no arrow, no bold, and a compare verdict 'changed' instead of better/worse."""
    def rows(metric, hib):
        return [metric_row(metric, 10.0, ci_low=9, ci_high=11, higher_is_better=hib, variant="dlc"),
                metric_row(metric, 20.0, ci_low=19, ci_high=21, higher_is_better=hib, variant="unconditional")]

    fd = summary_table(rows("fd", False))
    assert fd["metrics"][0]["arrow"] == "↓" and fd["lines"][0]["cells"][0]["best"]       # separated: bold
    for metric in ("vendi", "vendi_q2"):
        t = summary_table(rows(metric, True))
        assert t["metrics"][0]["arrow"] == "" and not any(line["cells"][0]["best"] for line in t["lines"])
    cmp = {"a": "run-a", "b": "run-b", "config_diff": [], "identical": False, "differences": [
        {"metric": m, "labels": {"variant": "dlc"}, "higher_is_better": hib, "a": {"value": 1.0},
         "b": {"value": 2.0}, "delta": 1.0, "ci": (0.5, 1.5), "method": "welch", "verdict": verdict}
        for m, hib, verdict in (("vendi", True, "better"), ("precision", True, "better"))]}
    out = render_index([], tmp_path / "index.html", verdicts=[cmp]).read_text()
    vendi_row, precision_row = [line for line in out.splitlines() if line.startswith("<tr class=")]
    assert 'class="same"' in vendi_row and "changed (welch)" in vendi_row and "↑" not in vendi_row
    assert 'class="better"' in precision_row and "precision ↑" in precision_row


def _wide_run(d: Path) -> Path:
    """A run of every kind of measure whose sample-metrics table is far wider than the page."""
    res = _results("run-w", VALUES)
    res["metrics"] = _mixed_rows() + [metric_row(f"wide_metric_{i}", 1.0 + i, higher_is_better=True, variant="dlc")
                                      for i in range(30)]
    return _write_run(d, res)


def test_every_summary_table_scrolls_inside_its_wrapper(tmp_path):
    html = render_run(_wide_run(tmp_path / "run")).read_text()
    n_tables = html.count('<table class="summary"')
    assert n_tables == 7 and html.count('<div class="scroll"><table class="summary"') == n_tables
    assert ".scroll { overflow-x: auto;" in html
    assert 'id="summary"' in html and 'id="kind-probes"' in html and ">Probes: representation × factor<" in html


def test_render_run_is_self_contained_and_verbatim(tmp_path):
    d = _write_run(tmp_path / "run", _results("run-1", VALUES))
    html = render_run(d).read_text()
    assert "data:image/png;base64," in html and 'src="figures/' not in html   # figure inlined
    assert 'href="results.csv"' in html and 'href="results.json"' in html
    assert "0.9 ± 0.2" in html and "0.1235" in html                        # values as stored, not recomputed
    assert "smoke test" in html and "a computed note" in html and "0123456789ab" in html and "(dirty)" in html
    # change the stored number: the report follows the file (nothing is recomputed from other sources)
    res = json.loads((d / "results.json").read_text())
    res["metrics"][0]["value"] = 7.25
    (d / "results.json").write_text(json.dumps(res))
    assert "7.25" in render_run(d).read_text()


def test_index_compares_runs_with_deltas(tmp_path):
    a = _write_run(tmp_path / "a", _results("run-a", VALUES, preset="laptop"))
    b = _write_run(tmp_path / "b", _results("run-b", {k: (v + 0.25, lo + 0.25, hi + 0.25)
                                                      for k, (v, lo, hi) in VALUES.items()}, preset="laptop"))
    page = render_index([a, b], tmp_path / "index.html").read_text()
    assert 'href="a/report.html"' in page and 'href="b/report.html"' in page
    assert "(+0.25)" in page and 'id="compare"' in page
    assert (a / "report.html").exists() and (b / "report.html").exists()


def test_run_report_shows_the_sweep_axes_and_points(tmp_path):
    res = _results("run-s", VALUES)
    for r in res["metrics"]:
        r["prior.eta"] = 0.01 if r["variant"] == "oracle" else 0.1
    res["sweep"] = {"axes": ["prior.eta", "n_modes"], "points": [{"prior.eta": 0.01, "n_modes": 9},
                                                                 {"prior.eta": 0.1, "n_modes": 121}]}
    html = render_run(_write_run(tmp_path / "run", res)).read_text()
    assert 'id="sweep"' in html and "<code>prior.eta</code>" in html and "<code>n_modes</code>" in html
    assert "2 points" in html
    t = sweep_table(res["sweep"])
    assert t == {"axes": ["prior.eta", "n_modes"], "points": [["0.01", "9"], ["0.1", "121"]]}
    # no sweep: no section
    plain = render_run(_write_run(tmp_path / "plain", _results("run-p", VALUES))).read_text()
    assert 'id="sweep"' not in plain and sweep_table(None) is None


def test_reports_check_the_schema_version(tmp_path):
    d = _write_run(tmp_path / "run", _results("run-1", VALUES))
    res = json.loads((d / "results.json").read_text())
    res["schema_version"] = 3
    (d / "results.json").write_text(json.dumps(res))
    with pytest.raises(UserError, match="schema version 3"):
        render_run(d)
    with pytest.raises(UserError, match="schema version 3"):
        render_index([d], tmp_path / "index.html")
    with pytest.raises(UserError, match="holds no results.json"):
        render_run(tmp_path / "missing")
    assert issubclass(ReportError, UserError)          # `except ReportError` callers keep working


def test_a_schema_1_run_of_an_older_dlc_bench_renders(tmp_path):
    """tests/data/dlc_pipeline_smoke_c6dd1f4.json is the results.json that commit c6dd1f4 wrote (schema 1)."""
    d = tmp_path / "old"
    d.mkdir()
    shutil.copy(Path(__file__).parent / "data" / "dlc_pipeline_smoke_c6dd1f4.json", d / "results.json")
    html = render_run(d).read_text()
    assert "dlc-pipeline" in html and "fd_effnet" in html
    render_index([d, _write_run(tmp_path / "new", _results("run-1", VALUES))], tmp_path / "index.html")


def _chromium() -> tuple[str, str] | None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@contextlib.contextmanager
def headless_chromium(tmp_path: Path):
    """A selenium WebDriver on the Debian chromium (skips the test when it is not installed)."""
    if _chromium() is None:
        pytest.skip("Debian chromium + chromium-driver not installed (make setup installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver = _chromium()
    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}"):
        opts.add_argument(flag)
    wd = webdriver.Chrome(service=Service(driver), options=opts)
    try:
        yield wd
    finally:
        wd.quit()


@pytest.mark.browser
@pytest.mark.skipif(_chromium() is None, reason="Debian chromium + chromium-driver not installed (make setup installs them)")
def test_report_in_headless_chromium(tmp_path):
    from selenium.webdriver.common.by import By

    d = _write_run(tmp_path / "run", _results("run-1", VALUES))
    report = render_run(d)
    with headless_chromium(tmp_path) as wd:
        wd.get(report.resolve().as_uri())
        rows = wd.find_elements(By.CSS_SELECTOR, "#summary tbody tr")
        assert len(rows) == 4
        headers = [h.text for h in wd.find_elements(By.CSS_SELECTOR, "#summary thead th")]
        assert "kl_excess ↓" in headers and "coverage ↑" in headers
        imgs = wd.find_elements(By.CSS_SELECTOR, "figure img")
        assert len(imgs) == 1
        assert wd.execute_script("return Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
        assert wd.find_element(By.ID, "provenance").is_displayed()
        links = {a.get_attribute("href").rsplit("/", 1)[-1] for a in wd.find_elements(By.TAG_NAME, "a")}
        assert {"results.csv", "results.json"} <= links
        wd.save_screenshot(str(tmp_path / "report.png"))
        assert (tmp_path / "report.png").stat().st_size > 10000
        # a run of every kind of measure: one table each, the wide one scrolls inside its wrapper, not the page
        wd.set_window_size(1000, 900)
        wd.get(render_run(_wide_run(tmp_path / "wide")).resolve().as_uri())
        ids = [t.get_attribute("id") for t in wd.find_elements(By.CSS_SELECTOR, "#summary table.summary")]
        assert ids == ["summary-samples", "summary-probes", "summary-codes", "summary-codes-2", "summary-codes-3",
                       "summary-training", "summary-other"]
        assert len(wd.find_elements(By.CSS_SELECTOR, "#summary-samples tbody tr")) == 4
        assert wd.execute_script("const w = document.querySelector('#summary-samples').parentElement; "
                                 "return w.scrollWidth > w.clientWidth + 500 && getComputedStyle(w).overflowX")
        assert wd.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
        headers = [h.text.splitlines()[0] for h in wd.find_elements(By.CSS_SELECTOR, "#summary-samples thead th")]
        assert "vendi" in headers and "fd_effnet ↓" in headers
        assert [c.text for c in wd.find_elements(By.CSS_SELECTOR, "td.best")] == ["30 ± 1"]    # fd of dlc; no vendi


#################################################################################
#                Hostile results.json: nothing outside the run is read          #
#################################################################################

def test_figures_resolving_outside_the_run_dir_are_never_read(tmp_path, capsys, monkeypatch):
    """A figure path leading out of the run directory (.., absolute, a symlinked file or folder) is skipped with
    one `warning:` line each, nothing outside is read, and the figures inside are still inlined."""
    import base64

    secret = b"\x89PNG not yours " * 8
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.png").write_bytes(secret)
    res = _results("run-1", VALUES)
    d = _write_run(tmp_path / "run", res)
    (d / "figures" / "link.png").symlink_to(tmp_path / "outside" / "secret.png")
    (d / "figures" / "sub").symlink_to(tmp_path / "outside", target_is_directory=True)
    (d / "figures" / "inner.png").symlink_to(d / "figures" / "curve.png")     # a symlink that stays inside
    evil = ["../outside/secret.png", str(tmp_path / "outside" / "secret.png"), "figures/link.png",
            "figures/sub/secret.png", "figures/../../outside/secret.png"]
    res["figures"] += [{"name": f"evil{i}", "path": p, "caption": None} for i, p in enumerate(evil)]
    res["figures"].append({"name": "inner", "path": "figures/inner.png"})
    write_results(d, res)
    read = []
    real_read_bytes = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda self: read.append(self.resolve()) or real_read_bytes(self))
    capsys.readouterr()
    html = render_run(d).read_text()
    err = capsys.readouterr().err.splitlines()
    assert all(p.is_relative_to(d.resolve()) for p in read) and len(read) == 2       # curve.png, inner.png
    assert base64.b64encode(secret).decode()[:40] not in html and "secret" not in html
    assert len(err) == len(evil) and all(line.startswith("warning: figure 'evil") and "outside the run directory"
                                         in line for line in err)
    assert html.count("data:image/png;base64,") == 2 and 'id="fig-evil' not in html


def _corrupt(name: str, text: str) -> str:
    """results.json text broken in one way (the names are what the issue listed, and their neighbours)."""
    if name == "truncated":
        return text[: len(text) // 2]
    raw = {"not json": "{not json", "a JSON list": "[1, 2]", "empty": "", "a JSON string": '"results"'}
    if name in raw:
        return raw[name]
    r = json.loads(text)
    row, fig, last = r["metrics"][0], r["figures"][0], r["metrics"][-1]
    edits = {"row is a string": lambda: r["metrics"].__setitem__(0, "fd=3"),
             "row without metric": lambda: row.pop("metric"),
             "value a string": lambda: row.update(value="0.5"), "value a list": lambda: row.update(value=[0.5]),
             "ci_low a string": lambda: row.update(ci_low="x"), "n a string": lambda: row.update(n="three"),
             "higher_is_better a string": lambda: row.update(higher_is_better="yes"),
             "label a mapping": lambda: row.update(variant={"a": 1}), "label a list": lambda: row.update(variant=[1]),
             "seed a string": lambda: last.update(seed="zero"),
             "figure without path": lambda: fig.pop("path"), "figure path a number": lambda: fig.update(path=5),
             "timings a string": lambda: r["timings"].update(total="x"),
             "timings without total": lambda: r["timings"].pop("total"),
             "commit a number": lambda: r["git"].update(commit=5),
             "metric_order a number": lambda: r["display"].update(metric_order=5),
             "label_order a list": lambda: r["display"].update(label_order=[1]),
             "stage seconds a string": lambda: r["stages"][0].update(seconds="1s")}
    edits[name]()
    return json.dumps(r)


@pytest.mark.parametrize("name", [
    "truncated", "not json", "a JSON list", "empty", "a JSON string", "row is a string", "row without metric",
    "value a string", "value a list", "ci_low a string", "n a string", "higher_is_better a string", "label a mapping",
    "label a list", "seed a string", "figure without path", "figure path a number", "timings a string",
    "timings without total", "commit a number", "metric_order a number", "label_order a list",
    "stage seconds a string"])
def test_cli_report_on_a_broken_results_json_is_one_line_exit_2_nothing_written(name, tmp_path, capsys):
    from bench import cli

    d = _write_run(tmp_path / "run", _results("run-1", VALUES))
    bad = _corrupt(name, (d / "results.json").read_text())
    (d / "results.json").write_text(bad)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    capsys.readouterr()
    for argv in (["report", str(d)], ["report", str(d), "--out", str(tmp_path / "index.html")]):
        rc = cli.main(argv)
        out = capsys.readouterr()
        assert rc == 2 and out.out == "" and len(out.err.splitlines()) == 1, out.err
        assert out.err.startswith(f"error: {d / 'results.json'} ") and "Traceback" not in out.err
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    assert (d / "results.json").read_text() == bad
