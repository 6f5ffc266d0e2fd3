"""Provenance of a run: git commit and dirty flag, environment (python, torch, numpy, device, dtype,
threads, CPU/GPU). The results schema itself (the `Results` record, metric rows, reading and writing
results.json / results.csv) is `bench.schema`; its names are re-exported here for old imports.

`environment()` imports torch (lazily); `bench.schema` never does.
"""
from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

# compatibility re-exports: import these from bench.schema in new code
from .schema import (METRIC_COLUMNS, REPORT_HTML, RESULTS_CSV, RESULTS_JSON, SCHEMA_VERSION,  # noqa: F401
                     Results, clean_json, label_columns, metric_row, read_results, rows_to_csv, write_results)

_clean = clean_json   # old private name, still imported by bench/cli_metrics.py

__all__ = ["repo_root", "git_info", "environment", "METRIC_COLUMNS", "REPORT_HTML", "RESULTS_CSV", "RESULTS_JSON",
           "SCHEMA_VERSION", "Results", "clean_json", "label_columns", "metric_row", "read_results",
           "rows_to_csv", "write_results"]


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


