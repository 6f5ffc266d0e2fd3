"""HTML reports: rendered from stored results only, self-contained, and checked in a real headless browser."""
from __future__ import annotations

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
    assert lines[("oracle", "121")][0]["best"]                          # coverage: higher is better
    assert lines[("unconditional", "121")][1]["text"] == "0.9 ± 0.2"


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
    res["schema_version"] = 1
    (d / "results.json").write_text(json.dumps(res))
    with pytest.raises(UserError, match="schema version 1"):
        render_run(d)
    with pytest.raises(UserError, match="schema version 1"):
        render_index([d], tmp_path / "index.html")
    with pytest.raises(UserError, match="holds no results.json"):
        render_run(tmp_path / "missing")
    assert issubclass(ReportError, UserError)          # `except ReportError` callers keep working


def _chromium() -> tuple[str, str] | None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@pytest.mark.browser
@pytest.mark.skipif(_chromium() is None, reason="Debian chromium + chromium-driver not installed (make setup installs them)")
def test_report_in_headless_chromium(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    browser, driver = _chromium()
    d = _write_run(tmp_path / "run", _results("run-1", VALUES))
    report = render_run(d)
    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}"):
        opts.add_argument(flag)
    wd = webdriver.Chrome(service=Service(driver), options=opts)
    try:
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
    finally:
        wd.quit()
