"""Running an experiment: the run context, stages through the shared stage cache, sweeps, outputs.

    out/results.json   results + provenance (its presence marks a run whose numbers are complete)
    out/results.csv    one row per metric value
    out/report.html    rendered from results.json by `reports`
    out/figures/*.png  figures the experiment added

Stage outputs live in the one stage cache of `bench.cache` (shared by every experiment, keyed by the
stage's whole config, its upstream keys and the source of its own modules, verified on read). A run
killed at any point resumes with the same command, recomputing only unfinished stages.

Bad input writes nothing: the device, dtype and the output and cache directories are checked before anything
is created; the directories are created only when the run starts, and a run that then fails removes the
folders it created that hold no file (after a UserError, the output folder it created goes entirely).

Finishing a run is: write `.dlc-bench-finishing.json` (the run id, the run store, whether to render), then
results.json, report.html, the run-store row, and delete that file. A run killed in between left a complete,
valid results.json that is missing its report or its row; `finish_interrupted(dir)` completes it (renders the
report, records the row in the store the run named, removes the file, and orphan temporaries of killed
writers). It is called by the next invocation that looks at the directory: `execute` on its output directory
(the same `dlc-bench run` command; when that interrupted run is the very run asked for, same experiment,
version, config, code, seeds and sweep, it is returned as is instead of run again), `dlc-bench report DIR`,
and `dlc-bench runs` / `history` / `compare` for the run directories under ./results. Nothing else is repaired
behind the user's back: a complete run (no such file) is run again when asked, as before (the command line asks
for --force before it writes over a directory holding a run: `check_overwrite`).

The run's log: every `ctx.log` line goes to stderr through tqdm (above any progress bar) and, with a timestamp,
to out/log.txt (written with the results; --quiet silences the terminal only), as do the warnings raised while the
experiment runs (`warnings.warn` of torch, scikit-learn, our metrics...): in the log, not on the terminal, which
gets one line counting them. Each stage prints `stage k/N`, the time elapsed and an ETA, both N and the ETA from
the last recorded run of the same experiment and preset in the run store (its stages from this one on).
"""
from __future__ import annotations

import contextlib
import json
import os
import secrets
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, TypeVar

import numpy as np
import torch

from dlc.common import atomic_write, atomic_write_bytes, resolve_device, resolve_dtype
from dlc.io import remove_orphans

from .cache import Stage, StageCache, StageKey, default_cache_dir, stage_key

from .aggregate import aggregate_over_seeds
from .config import config_hash, to_dict
from .errors import UserError
from .experiment import Experiment
from .outdir import check_overwrite, check_writable_dir, ensure_writable_dir, removed_on_failure  # noqa: F401 (API)
from .results import environment, git_info
from .schema import REPORT_HTML, RESULTS_JSON, Results, metric_row, read_results, write_results
from .store import RunStore, format_duration, recorded_seconds_from  # noqa: F401 (API)

T = TypeVar("T")


def resolve_device_dtype(device: str, dtype: str) -> tuple[torch.device, torch.dtype]:
    """The torch device and dtype of --device / --dtype, or a UserError naming the valid values."""
    try:
        dev = resolve_device(device)
    except (ValueError, RuntimeError) as e:
        raise UserError(f"--device {device!r}: {str(e).splitlines()[0]}",
                        hint="use auto, cpu, cuda or cuda:N (cuda needs a GPU)") from None
    try:
        dt = resolve_dtype(dtype)
    except ValueError as e:
        raise UserError(f"--dtype {dtype!r}: {e}", hint="use float32 (or bfloat16 where supported)") from None
    return dev, dt


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
        self.cache = StageCache(cache_dir)
        self.code_version = experiment.code_version()
        self.row_labels: dict[str, Any] = {}     # added to every metric row (the point of a sweep)
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
        self.started = time.perf_counter()
        self.log_lines: list[str] = []          # out/log.txt: every log line and warning, with a timestamp
        self.warnings: list[str] = []
        self.recorded_stages: list[dict] = []   # the last recorded run's stages: `stage k/N` and the ETA
        self._recorded_at = 0
        self._stages_started = 0

    # ---------------------------------------------------------------- stages
    def key(self, stage: Stage, config: Any, *, upstream: Iterable[StageKey] = (), seed: int | None = None
            ) -> StageKey:
        """The cache key of `stage` run with `config` (every field counts) on the outputs `upstream`, with
        `seed`, on this run's device and dtype (see bench.cache.stage_key)."""
        return stage_key(stage, config, upstream=upstream, seed=seed, device=self.device, dtype=self.dtype)

    def stage(self, stage: Stage, key: StageKey, compute: Callable[[], T], *, desc: str | None = None) -> T:
        """The cached output of `stage` for `key` (verified), or `compute()` stored under that key."""
        label = desc or stage.name
        t0 = time.perf_counter()
        hit, value = self.cache.load(key, stage.load)
        self.log(self._stage_line(label, hit))
        if hit:
            seconds, cost = time.perf_counter() - t0, self.cache.compute_seconds(key)    # a hit: its first cost
        else:
            value = compute()
            seconds = cost = time.perf_counter() - t0
            if self.is_main:
                self.cache.store(key, value, stage.save, seconds)
                if stage.reload:   # e.g. checkpoint paths inside the cache rather than a scratch directory
                    value = self.cache.load(key, stage.load)[1]
            self.barrier()
        self.timings[stage.name] = self.timings.get(stage.name, 0.0) + seconds
        self.stage_log.append({"stage": stage.name, "desc": label, "cached": hit, "seconds": seconds, "compute_seconds":
                               cost, "key_hash": key.hash, **({"point": dict(self.row_labels)} if self.row_labels else {})})
        return value

    def _stage_line(self, label: str, cached: bool) -> str:
        """'stage k/N [cached|compute] label · 3 min 2 s elapsed · ETA 12 min 5 s', N and the ETA from the last
        recorded run (`recorded_stages`: its seconds from this stage on, this one left out when cached now); '?'
        where there is no such run or it had no such stage."""
        self._stages_started += 1
        k = self._stages_started
        total = str(max(k, len(self.recorded_stages))) if self.recorded_stages else "?"
        found = recorded_seconds_from(self.recorded_stages, label, self.row_labels, self._recorded_at)
        eta = "?"
        if found is not None:
            self._recorded_at, rest = found[0] + 1, found[1]
            if cached:
                rest -= self.recorded_stages[found[0]].get("seconds", 0)
            eta = format_duration(rest)
        point = "".join(f" [{name}={v}]" for name, v in self.row_labels.items())    # a sweep point, an η of a grid
        return (f"stage {k}/{total} [{'cached' if cached else 'compute'}] {label}{point} · "
                f"{format_duration(time.perf_counter() - self.started)} elapsed · ETA {eta}")

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

    @contextlib.contextmanager
    def labelled(self, **labels: Any) -> Iterator[None]:
        """Rows, figures, notes and stage records made inside carry `labels`, as a sweep point's (e.g. eta-sweep's η)."""
        before, self.row_labels = self.row_labels, {**self.row_labels, **labels}
        try:
            yield
        finally:
            self.row_labels = before

    # --------------------------------------------------------------- progress
    def progress(self, iterable: Iterable | None = None, total: int | None = None, desc: str | None = None):
        """A tqdm progress bar with rate and ETA (stderr), silent when quiet."""
        from tqdm.auto import tqdm

        return tqdm(iterable, total=total, desc=desc, leave=False, disable=self.quiet or not self.is_main,
                    dynamic_ncols=True, file=sys.stderr, mininterval=0.5)

    def log(self, message: str) -> None:
        """A line on stderr, written above any progress bar (silent when quiet), and in log.txt."""
        if not self.is_main:
            return
        line = f"[{self.experiment.name}] {message}"
        self.record(line)
        if not self.quiet:
            from tqdm.auto import tqdm

            tqdm.write(line, file=sys.stderr)

    def record(self, line: str) -> None:
        """A line in log.txt only, with a timestamp."""
        self.log_lines.append(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}")

    def warning(self, message: Warning | str, category: type[Warning], filename: str, lineno: int,
                file: Any = None, line: str | None = None) -> None:
        """`warnings.showwarning` while the experiment runs: the warning goes to log.txt, not to the terminal."""
        text = f"{category.__name__}: {' '.join(str(message).split())} ({filename}:{lineno})"
        self.warnings.append(text)
        self.record(f"warning: {text}")

    # ---------------------------------------------------------------- outputs
    def add_metric(self, metric: str, value: float, *, higher_is_better: bool | None, ci_low: float | None = None,
                   ci_high: float | None = None, n: int | None = None, **labels: Any) -> None:
        self.metrics.append(metric_row(metric, value, higher_is_better=higher_is_better, ci_low=ci_low,
                                       ci_high=ci_high, n=n, **self.row_labels, **labels))

    def add_rows(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Metric rows made elsewhere (bench.evaluate), with the sweep point's labels added."""
        self.metrics.extend({**r, **self.row_labels} for r in rows)

    def add_figure(self, fig: Any, name: str, caption: str = "", dpi: int = 110) -> Path:
        """Save a matplotlib figure (or copy a PNG path) to figures/<name>.png atomically."""
        if self.row_labels:    # one figure per sweep point
            name = self._point_name(name)
            caption = f"[{', '.join(f'{k}={v}' for k, v in self.row_labels.items())}] {caption}"
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

    def _point_name(self, name: str) -> str:
        """name_<axis>=<value>... for this sweep point (an axis is its key's last part, unless two share it)."""
        tails = [k.split(".")[-1] for k in self.row_labels]
        return name + "".join(f"_{t if tails.count(t) == 1 else k}={v}" for t, (k, v) in zip(tails, self.row_labels.items()))

    def add_artifact(self, relpath: str, description: str) -> None:
        self.artifacts.append({"path": relpath, "description": description})

    def add_samples(self, name: str, images: torch.Tensor, description: str, **extra: torch.Tensor) -> Path:
        """Write images as an ADM-format sample file samples/<name>.npz (`arr_0`: N×H×W×3 uint8, what the ADM
        evaluator and `dlc-bench metrics` read), with `extra` uint8 image sets under their own keys (e.g. the
        source images of reconstructions). Images come as (N, 3, H, W) uint8; rank 0 writes, atomically."""
        name = self._point_name(name)
        path = self.out_dir / "samples" / f"{name}.npz"
        if self.is_main:
            arrays = {"arr_0": images, **extra}
            for k, v in arrays.items():
                if v.dtype != torch.uint8 or v.ndim != 4 or v.shape[1] != 3:
                    raise ValueError(f"samples {name}.{k}: expected (N, 3, H, W) uint8, got {tuple(v.shape)} {v.dtype}")
            with atomic_write(path) as f:
                np.savez(f, **{k: v.permute(0, 2, 3, 1).contiguous().numpy() for k, v in arrays.items()})
        self.add_artifact(f"samples/{name}.npz", description)
        return path

    def display(self, metric_order: list[str] | None = None, label_order: dict[str, list] | None = None) -> None:
        """Presentation hints for reports: metric column order, preferred order of label values."""
        if metric_order is not None:
            self.display_hints["metric_order"] = list(metric_order)
        if label_order is not None:
            self.display_hints["label_order"] = {k: list(v) for k, v in label_order.items()}

    def note(self, text: str) -> None:
        """A sentence shown in the report (e.g. what a metric means, a caveat)."""
        if self.row_labels:
            text = f"[{', '.join(f'{k}={v}' for k, v in self.row_labels.items())}] {text}"
        self.notes.append(text)


#################################################################################
#                                   Execute                                     #
#################################################################################

def new_run_id(experiment: str) -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{experiment}-{secrets.token_hex(3)}"


FINISHING = ".dlc-bench-finishing.json"
LOG_TXT = "log.txt"


def run_identity(experiment: Experiment, config: Any, seeds: Iterable[int], preset: str | None,
                 sweep: list[tuple[dict[str, Any], Any]] | None = None) -> dict:
    """What makes two runs the same run: experiment and version, preset, config hash, code version, seeds,
    sweep points (compared with `identity_of(results)`)."""
    return _canonical({"experiment": experiment.name, "experiment_version": str(experiment.version),
                       "preset": preset, "config_hash": config_hash(config), "code_version": experiment.code_version(),
                       "seeds": list(seeds), "sweep": [dict(lb) for lb, _ in sweep] if sweep else None})


def identity_of(results: Results) -> dict:
    """`run_identity` of a stored run."""
    return _canonical({"experiment": results.experiment, "experiment_version": str(results.experiment_version),
                       "preset": results.preset, "config_hash": results.config_hash,
                       "code_version": results.code_version, "seeds": list(results.seeds),
                       "sweep": results.sweep.get("points") if isinstance(results.sweep, dict) else None})


def _canonical(identity: dict) -> dict:
    return json.loads(json.dumps(identity, default=list))


def _clean_run_dir(out_dir: Path) -> None:
    for d in (out_dir, out_dir / "figures", out_dir / "samples"):
        remove_orphans(d)


def finish_run(out_dir: Path, results: Results, store: RunStore | None, render: bool = True) -> None:
    """Write results.json, report.html and the run-store row of a finished run, marked as unfinished until
    the last of them is written (see the module docstring)."""
    marker = out_dir / FINISHING
    atomic_write_bytes(marker, json.dumps({"run_id": results.run_id, "render": render,
                                           "store": None if store is None else str(store.path)}).encode())
    write_results(out_dir, results)
    _complete(out_dir, results, store, render)


def _complete(out_dir: Path, results: Results, store: RunStore | None, render: bool) -> None:
    if render:
        from reports.html import render_run

        render_run(out_dir)
    if store is not None:
        store.record(results.to_dict(), str(out_dir.resolve()))
    (out_dir / FINISHING).unlink(missing_ok=True)


def finish_interrupted(out_dir: Path, log: Callable[[str], None] | None = None) -> Results | None:
    """Complete the run in `out_dir` if it was killed after writing results.json (see the module docstring):
    render its report, record its row in the run store it named, and return its Results. None when there is
    nothing to finish; a marker without the matching results.json (killed before the results) is removed.
    Orphan temporaries of killed writers in the run directory are removed either way."""
    out_dir = Path(out_dir)
    marker = out_dir / FINISHING
    if not out_dir.is_dir():
        return None
    _clean_run_dir(out_dir)
    if not marker.is_file():
        return None
    try:
        meta = json.loads(marker.read_text())
        results = read_results(out_dir) if (out_dir / RESULTS_JSON).is_file() else None
    except (OSError, ValueError, UserError):
        meta, results = None, None
    if not isinstance(meta, dict) or results is None or results.run_id != meta.get("run_id"):
        marker.unlink(missing_ok=True)   # killed before its results were written: nothing to finish
        return None
    store = RunStore(meta["store"]) if meta.get("store") else None
    if store is not None and store.run(results.run_id) is not None:
        store = None                     # killed after recording: only the marker was left
    render = bool(meta.get("render", True))
    _complete(out_dir, results, store, render)
    did = ([REPORT_HTML] if render else []) + ([f"recorded in {store.path}"] if store is not None else [])
    (log or (lambda m: print(m, file=sys.stderr, flush=True)))(
        f"finished the interrupted run {out_dir}" + (f": {', '.join(did)}" if did else ""))
    return results


def finish_interrupted_runs(root: Path = Path("results")) -> list[tuple[Path, Results]]:
    """`finish_interrupted` for every run directory under `root` (runs and suite members: root/*/ and
    root/*/*/); a directory it cannot finish is left as it is."""
    done = []
    for marker in sorted([*Path(root).glob(f"*/{FINISHING}"), *Path(root).glob(f"*/*/{FINISHING}")]):
        try:
            res = finish_interrupted(marker.parent)
        except UserError as e:
            print(f"warning: cannot finish the interrupted run {marker.parent}: {e}", file=sys.stderr)
            continue
        if res is not None:
            done.append((marker.parent, res))
    return done


def execute(experiment: Experiment, config: Any, *, preset: str | None, seeds: tuple[int, ...], out_dir: Path,
            cache_dir: Path | None = None, store: RunStore | None = None, device: str = "auto",
            dtype: str = "float32", quiet: bool = False, render: bool = True,
            sweep: list[tuple[dict[str, Any], Any]] | None = None, resume_dirs: Iterable[Path] = ()) -> Results:
    """Run `experiment` with a resolved config (or once per point of `sweep`, a list of (labels, config)
    pairs from bench.config.expand_sweep, all recorded as one run whose rows carry the labels); write
    results, figures, report; record in the store.

    Everything that can be checked is checked before anything is written: the device and dtype (and
    `bench.config.preflight`: memory), the output and cache locations. The output folder appears with the
    first file written there; a run that fails removes what it created (see `removed_on_failure`).

    An interrupted run in `out_dir` (or in one of `resume_dirs`) is finished first (`finish_interrupted`); when
    it is this very run (`run_identity`), it is returned without running again."""
    from .config import preflight

    preflight(config, device, dtype, points=sweep)
    dev, dt = resolve_device_dtype(device, dtype)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # launched by torchrun: one process group for the whole run
        from dlc import dist as ddist

        dev = ddist.setup(device).device
    out_dir = check_writable_dir(Path(out_dir), "output directory", "--out DIR")
    cache_dir = check_writable_dir(Path(cache_dir or default_cache_dir()), "cache directory", "--cache-dir DIR")
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:   # (under torchrun every rank must run: no shortcut)
        identity = run_identity(experiment, config, seeds, preset, sweep)
        for d in [out_dir, *resume_dirs]:
            finished = finish_interrupted(d)
            if finished is not None and identity_of(finished) == identity:
                return finished
    with removed_on_failure(out_dir, cache_dir):
        return _execute(experiment, config, preset=preset, seeds=seeds, out_dir=out_dir, cache_dir=cache_dir,
                        store=store, dev=dev, dt=dt, quiet=quiet, render=render, sweep=sweep)


def _execute(experiment: Experiment, config: Any, *, preset: str | None, seeds: tuple[int, ...], out_dir: Path,
             cache_dir: Path, store: RunStore | None, dev: torch.device, dt: torch.dtype, quiet: bool, render: bool,
             sweep: list[tuple[dict[str, Any], Any]] | None) -> Results:
    ctx = RunContext(experiment, config, preset=preset, seeds=seeds, out_dir=out_dir, cache_dir=cache_dir,
                     device=dev, dtype=dt, quiet=quiet)
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    t0 = time.perf_counter()
    ctx.record(f"{experiment.name} preset {preset}, seeds {list(seeds)}, {dev} {str(dt).replace('torch.', '')}, "
               f"output {out_dir}")
    last = store.last_run(experiment.name, preset) if store is not None else None
    if last is not None:
        ctx.recorded_stages = list(last["results"].get("stages") or [])
        ctx.log(f"the last recorded run ({last['run_id']}) had {len(ctx.recorded_stages)} stages and took "
                f"{format_duration(last['wall_s'] or 0)}: the stage count and ETAs below come from it")
    points = sweep or [({}, config)]
    try:
        with warnings.catch_warnings():
            if ctx.is_main:
                warnings.showwarning = ctx.warning
            for labels, point_config in points:
                ctx.config, ctx.row_labels = point_config, dict(labels)
                if labels:
                    ctx.log("sweep point " + ", ".join(f"{k}={v}" for k, v in labels.items()))
                experiment.fn(ctx)
    except BaseException as e:
        if not isinstance(e, UserError):   # a crash writes no log.txt: its warnings are shown (bad input: one line)
            for text in ctx.warnings:
                print(f"warning: {text}", file=sys.stderr)
        raise
    if ctx.warnings:
        ctx.log(f"{len(ctx.warnings)} warning(s) while running, written to {out_dir / LOG_TXT}")
    ctx.config, ctx.row_labels = config, {}
    total = time.perf_counter() - t0
    metrics = ctx.metrics + aggregate_over_seeds(ctx.metrics)
    sweep_record = None
    if sweep:
        axes = list(points[0][0])
        sweep_record = {"axes": axes, "points": [dict(lb) for lb, _ in points]}
        if ctx.is_main:
            _sweep_figures(ctx, metrics, axes)
    results = Results(
        run_id=new_run_id(experiment.name), experiment=experiment.name, experiment_version=experiment.version,
        description=experiment.description, preset=preset, config=to_dict(config), config_hash=config_hash(config),
        code_version=ctx.code_version, git=git_info(), environment=environment(dev, dt), seeds=list(seeds),
        started_at=started, finished_at=time.strftime("%Y-%m-%dT%H:%M:%S"),
        timings={**{k: round(v, 3) for k, v in ctx.timings.items()}, "total": round(total, 3)},
        stages=ctx.stage_log, cache={"hits": sum(s["cached"] for s in ctx.stage_log),
                                     "misses": sum(not s["cached"] for s in ctx.stage_log)},
        metrics=metrics, figures=ctx.figures, artifacts=ctx.artifacts, notes=ctx.notes, display=ctx.display_hints,
        sweep=sweep_record)
    if not ctx.is_main:  # under torchrun only rank 0 writes results, the report and the store record
        return results
    atomic_write_bytes(out_dir / LOG_TXT, "".join(f"{line}\n" for line in ctx.log_lines).encode())
    finish_run(out_dir, results, store, render)
    return results


def _sweep_figures(ctx: RunContext, metrics: list[dict], axes: list[str]) -> None:
    """One figure per sweep axis: every quality metric (mean over seeds) against the axis."""
    from .figures import sweep_figure

    means = [r for r in metrics if "seed" not in r and r.get("higher_is_better") is not None]
    names = list(dict.fromkeys(r["metric"] for r in means))[:6]
    for axis in axes:
        if not names:
            break
        fig = sweep_figure(means, axis, names)
        saved = ctx.row_labels
        ctx.row_labels = {}
        ctx.add_figure(fig, f"sweep_{axis.replace('.', '_')}",
                       f"Metrics (mean over seeds) against the sweep axis {axis}.")
        ctx.row_labels = saved
