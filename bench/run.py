"""Running an experiment: the run context, the content-addressed stage cache, resume, outputs.

    out/results.json   results + provenance (written last: its presence marks a complete run)
    out/results.csv    one row per metric value
    out/report.html    rendered from results.json by `reports`
    out/figures/*.png  figures the experiment added

Stage outputs (trained models, samples, fitted GMMs) are cached under
`<cache>/stages/<experiment>/<stage>/<hash>/` where the hash covers the experiment name, the
stage name, the stage's key (the config values it depends on, the seed) and the code version
(a hash of the experiment's source). A stage is computed into a temporary directory and renamed
into place only when complete, so an interrupted run never leaves a half-written stage; the next
run with the same settings reuses every finished stage and computes only the rest.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, TypeVar

import torch

from dlc.common import atomic_write, atomic_write_bytes, resolve_device, resolve_dtype

from .aggregate import aggregate_over_seeds
from .config import config_hash, to_dict
from .errors import UserError
from .experiment import Experiment
from .results import SCHEMA_VERSION, environment, git_info, metric_row, write_results
from .store import RunStore

T = TypeVar("T")


def default_cache_dir() -> Path:
    env = os.environ.get("DLC_BENCH_CACHE")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("dlc-bench"))


def ensure_writable_dir(path: Path, what: str, option: str) -> Path:
    """Create `path` if needed and prove it is writable, or raise a UserError naming the fix."""
    path = Path(path).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-probe-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise UserError(f"{what} {path} is not writable ({e.strerror or e})",
                        hint=f"choose another location with {option}") from None
    return path


#################################################################################
#                                 Stage cache                                   #
#################################################################################

def _default_save(value: Any, directory: Path) -> None:
    torch.save(value, directory / "value.pt")


def _default_load(directory: Path) -> Any:
    return torch.load(directory / "value.pt", weights_only=False, map_location="cpu")


class StageCache:
    """Content-addressed, atomically written stage outputs."""

    def __init__(self, root: Path, experiment: str, code_version: str):
        self.root = Path(root) / "stages" / experiment
        self.experiment = experiment
        self.code_version = code_version

    def key_hash(self, stage: str, key: Mapping[str, Any]) -> str:
        blob = json.dumps({"experiment": self.experiment, "stage": stage, "code": self.code_version,
                           "key": key}, sort_keys=True, default=str, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:20]

    def directory(self, stage: str, key: Mapping[str, Any]) -> Path:
        return self.root / stage / self.key_hash(stage, key)

    def lookup(self, stage: str, key: Mapping[str, Any]) -> Path | None:
        d = self.directory(stage, key)
        return d if (d / "stage.json").exists() else None

    def store(self, stage: str, key: Mapping[str, Any], value: Any, save: Callable[[Any, Path], None],
              seconds: float) -> Path:
        final = self.directory(stage, key)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
        try:
            save(value, tmp)
            meta = {"stage": stage, "key": key, "code": self.code_version, "seconds": seconds,
                    "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
            (tmp / "stage.json").write_text(json.dumps(meta, default=str, indent=1))
            try:
                os.rename(tmp, final)  # atomic: the stage appears complete or not at all
            except OSError:
                if (final / "stage.json").exists():  # someone else finished it first
                    shutil.rmtree(tmp, ignore_errors=True)
                else:  # a leftover without marker: replace it
                    shutil.rmtree(final, ignore_errors=True)
                    os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return final


#################################################################################
#                                 Run context                                   #
#################################################################################

class RunContext:
    """What an experiment function sees: config, seeds, device, stages, progress, metric/figure sinks."""

    def __init__(self, experiment: Experiment, config: Any, *, preset: str | None, seeds: tuple[int, ...],
                 out_dir: Path, cache_dir: Path, device: torch.device, dtype: torch.dtype, quiet: bool = False):
        self.experiment = experiment
        self.config = config
        self.preset = preset
        self.seeds = tuple(seeds)
        self.out_dir = Path(out_dir)
        self.device = device
        self.dtype = dtype
        self.quiet = quiet
        self.cache = StageCache(cache_dir, experiment.name, experiment.code_version())
        self.metrics: list[dict] = []
        self.figures: list[dict] = []
        self.artifacts: list[dict] = []
        self.notes: list[str] = []
        self.timings: dict[str, float] = {}
        # under torchrun every rank runs the experiment (DDP training needs them all); rank 0 writes
        self.rank = int(os.environ.get("RANK", "0"))
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.stage_log: list[dict] = []
        self.display_hints: dict[str, Any] = {}

    # ---------------------------------------------------------------- stages
    def stage(self, name: str, key: Mapping[str, Any], compute: Callable[[], T], *,
              save: Callable[[T, Path], None] = _default_save, load: Callable[[Path], T] = _default_load,
              desc: str | None = None) -> T:
        """Return the cached output of stage `name` for `key`, computing and caching it if absent.

        `key` must contain everything the output depends on (config values, seed, device); the
        code version is added automatically. Wall time of each stage is recorded."""
        key = dict(key, device=str(self.device), dtype=str(self.dtype))
        label = desc or name
        hit = self.cache.lookup(name, key)
        t0 = time.perf_counter()
        if hit is not None:
            value = load(hit)
            seconds = time.perf_counter() - t0
            self.log(f"[cached] {label}")
        else:
            self.log(f"[stage] {label}")
            value = compute()
            seconds = time.perf_counter() - t0
            if self.is_main:
                self.cache.store(name, key, value, save, seconds)
            self.barrier()
        self.timings[name] = self.timings.get(name, 0.0) + seconds
        self.stage_log.append({"stage": name, "desc": label, "cached": hit is not None, "seconds": seconds,
                               "key_hash": self.cache.key_hash(name, key)})
        return value

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        """Wait for every rank (no-op in a single process)."""
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.barrier()

    @contextlib.contextmanager
    def timer(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - t0

    # --------------------------------------------------------------- progress
    def progress(self, iterable: Iterable | None = None, total: int | None = None, desc: str | None = None):
        """A tqdm progress bar with rate and ETA (stderr), silent when quiet."""
        from tqdm.auto import tqdm

        return tqdm(iterable, total=total, desc=desc, leave=False, disable=self.quiet or not self.is_main,
                    dynamic_ncols=True,
                    file=sys.stderr, mininterval=0.5)

    def log(self, message: str) -> None:
        if not self.quiet and self.is_main:
            print(f"[{self.experiment.name}] {message}", file=sys.stderr, flush=True)

    # ---------------------------------------------------------------- outputs
    def add_metric(self, metric: str, value: float, *, higher_is_better: bool | None, ci_low: float | None = None,
                   ci_high: float | None = None, n: int | None = None, **labels: Any) -> None:
        self.metrics.append(metric_row(metric, value, higher_is_better=higher_is_better, ci_low=ci_low,
                                       ci_high=ci_high, n=n, **labels))

    def add_figure(self, fig: Any, name: str, caption: str = "", dpi: int = 110) -> Path:
        """Save a matplotlib figure (or copy a PNG path) to figures/<name>.png atomically."""
        path = self.out_dir / "figures" / f"{name}.png"
        if not self.is_main:
            import matplotlib.pyplot as plt

            if not isinstance(fig, (str, Path)):
                plt.close(fig)
        elif isinstance(fig, (str, Path)):
            atomic_write_bytes(path, Path(fig).read_bytes())
        else:
            import matplotlib.pyplot as plt

            with atomic_write(path) as f:
                fig.savefig(f, format="png", dpi=dpi, bbox_inches="tight")
            plt.close(fig)
        self.figures.append({"name": name, "path": f"figures/{name}.png", "caption": caption})
        return path

    def add_artifact(self, relpath: str, description: str) -> None:
        self.artifacts.append({"path": relpath, "description": description})

    def display(self, metric_order: list[str] | None = None, label_order: dict[str, list] | None = None) -> None:
        """Presentation hints for reports: metric column order, preferred order of label values."""
        if metric_order is not None:
            self.display_hints["metric_order"] = list(metric_order)
        if label_order is not None:
            self.display_hints["label_order"] = {k: list(v) for k, v in label_order.items()}

    def note(self, text: str) -> None:
        """A sentence shown in the report (e.g. what a metric means, a caveat)."""
        self.notes.append(text)


#################################################################################
#                                   Execute                                     #
#################################################################################

def new_run_id(experiment: str) -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{experiment}-{secrets.token_hex(3)}"


def execute(experiment: Experiment, config: Any, *, preset: str | None, seeds: tuple[int, ...], out_dir: Path,
            cache_dir: Path | None = None, store: RunStore | None = None, device: str = "auto",
            dtype: str = "float32", quiet: bool = False, render: bool = True) -> dict:
    """Run `experiment` with a resolved config; write results, figures, report; record in the store."""
    dev = resolve_device(device)
    dt = resolve_dtype(dtype)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # launched by torchrun: one process group for the whole run
        from dlc import dist as ddist

        dev = ddist.setup(device).device
    out_dir = ensure_writable_dir(Path(out_dir), "output directory", "--out DIR")
    cache_dir = ensure_writable_dir(Path(cache_dir or default_cache_dir()), "cache directory", "--cache-dir DIR")
    ctx = RunContext(experiment, config, preset=preset, seeds=seeds, out_dir=out_dir, cache_dir=cache_dir,
                     device=dev, dtype=dt, quiet=quiet)
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    t0 = time.perf_counter()
    experiment.fn(ctx)
    total = time.perf_counter() - t0
    metrics = ctx.metrics + aggregate_over_seeds(ctx.metrics)
    results = {
        "schema_version": SCHEMA_VERSION,
        "run_id": new_run_id(experiment.name),
        "experiment": experiment.name,
        "experiment_version": experiment.version,
        "description": experiment.description,
        "preset": preset,
        "config": to_dict(config),
        "config_hash": config_hash(config),
        "code_version": ctx.cache.code_version,
        "git": git_info(),
        "environment": environment(dev, dt),
        "seeds": list(seeds),
        "started_at": started,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "timings": {**{k: round(v, 3) for k, v in ctx.timings.items()}, "total": round(total, 3)},
        "stages": ctx.stage_log,
        "cache": {"hits": sum(s["cached"] for s in ctx.stage_log),
                  "misses": sum(not s["cached"] for s in ctx.stage_log)},
        "metrics": metrics,
        "figures": ctx.figures,
        "artifacts": ctx.artifacts,
        "notes": ctx.notes,
        "display": ctx.display_hints,
    }
    if not ctx.is_main:  # under torchrun only rank 0 writes results, the report and the store record
        return results
    write_results(out_dir, results)
    if render:
        from reports.html import render_run

        render_run(out_dir)
    if store is not None:
        store.record(results, str(out_dir.resolve()))
    return results
