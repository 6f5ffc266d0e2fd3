"""The results schema: `results.json` (the source of truth) and `results.csv` (tidy metric rows).

results.json holds: schema version, run id, experiment (+ version), preset, resolved config and its
hash, git commit and dirty flag, environment (python, torch, numpy, device, dtype, threads, CPU/GPU),
seeds, wall time per stage, stage-cache hits, metric rows, figures and artifacts.

A metric row is a flat dict: metric, value, ci_low, ci_high, n, higher_is_better, then the label
columns that identify it (e.g. variant, n_modes, seed). Rows aggregated over seeds have no seed.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterable, Mapping

from dlc.common import atomic_write_bytes

SCHEMA_VERSION = 1
METRIC_COLUMNS = ("metric", "value", "ci_low", "ci_high", "n", "higher_is_better")
RESULTS_JSON = "results.json"
RESULTS_CSV = "results.csv"
REPORT_HTML = "report.html"


#################################################################################
#                               Provenance                                      #
#################################################################################

def repo_root() -> Path:
    return Path(__file__).resolve().parents[1]


def git_info(path: Path | None = None) -> dict:
    """{'commit': sha or None, 'dirty': bool or None, 'branch': name or None} of the checkout holding the code."""
    cwd = str(path or repo_root())

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None, "branch": None}
    status = git("status", "--porcelain")
    branch = git("rev-parse", "--abbrev-ref", "HEAD")
    return {"commit": commit, "dirty": bool(status), "branch": branch}


def environment(device: Any = None, dtype: Any = None) -> dict:
    import numpy
    import torch

    env = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "threads": torch.get_num_threads(),
        "device": str(device) if device is not None else "cpu",
        "dtype": str(dtype).replace("torch.", "") if dtype is not None else "float32",
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    for mod in ("scipy", "sklearn", "torch_fidelity", "transformers", "diffusers"):
        m = sys.modules.get(mod)
        if m is not None:
            env[mod] = getattr(m, "__version__", None)
    from . import __version__
    env["dlc_bench"] = __version__
    return env


#################################################################################
#                               Metric rows                                     #
#################################################################################

def metric_row(metric: str, value: float, *, higher_is_better: bool | None, ci_low: float | None = None,
               ci_high: float | None = None, n: int | None = None, **labels: Any) -> dict:
    if not isinstance(metric, str) or not metric:
        raise ValueError("metric name must be a non-empty string")
    for k in labels:
        if k in METRIC_COLUMNS:
            raise ValueError(f"label {k!r} clashes with a metric column")
    row = {"metric": metric, "value": _num(value), "ci_low": _num(ci_low), "ci_high": _num(ci_high),
           "n": None if n is None else int(n), "higher_is_better": higher_is_better}
    row.update(labels)
    return row


def _num(x: Any) -> float | None:
    if x is None:
        return None
    return float(x)  # NaN/inf are kept here; JSON writes them as null (see _clean)


def label_columns(rows: Iterable[Mapping]) -> list[str]:
    cols: list[str] = []
    for r in rows:
        for k in r:
            if k not in METRIC_COLUMNS and k not in cols:
                cols.append(k)
    return cols


def rows_to_csv(rows: list[Mapping]) -> str:
    cols = [*METRIC_COLUMNS, *label_columns(rows)]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({c: ("" if r.get(c) is None else r.get(c)) for c in cols})
    return buf.getvalue()


def _clean(o: Any) -> Any:
    """JSON-safe copy: NaN/inf → None, tuples → lists, Paths → str."""
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, Mapping):
        return {str(k): _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    if isinstance(o, Path):
        return str(o)
    return o


def write_results(out_dir: Path, results: Mapping) -> None:
    """Write results.json and results.csv atomically (JSON last: it marks the run complete)."""
    out_dir = Path(out_dir)
    atomic_write_bytes(out_dir / RESULTS_CSV, rows_to_csv(list(results["metrics"])).encode())
    atomic_write_bytes(out_dir / RESULTS_JSON, json.dumps(_clean(results), indent=2).encode())


def read_results(run_dir: Path) -> dict:
    from .errors import UserError

    path = Path(run_dir) / RESULTS_JSON
    if not path.exists():
        raise UserError(f"{run_dir} holds no {RESULTS_JSON}",
                        hint="pass a directory written by `dlc-bench run`, `suite` or `metrics`")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"{path} is not valid JSON: {e}") from None
    if data.get("schema_version") != SCHEMA_VERSION:
        raise UserError(f"{path} has schema version {data.get('schema_version')}, this dlc-bench reads "
                        f"{SCHEMA_VERSION}")
    return data
