"""HTML reports: rendered from stored results only, self-contained, and checked in a real headless browser."""
from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path

import pytest

from bench.errors import UserError
from bench.schema import SCHEMA_VERSION, metric_row, write_results
from reports.html import ReportError, fmt_ci, render_index, render_run, summary_table, sweep_table


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
