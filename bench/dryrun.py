"""`dlc-bench run ... --dry-run`: the resolved plan of a run, with nothing computed and nothing written.

    dry run: dlc-pipeline/laptop, seeds [0], cpu float32
    config: valid; memory estimate 220.4 MiB of 23.5 GiB (largest: images 129.4 MiB)
    stages, in order, until the first that must be computed:
      cached   SEM encoder seed=0                    encoder/3f0c…
      compute  SEDD prior seed=0                     sedd/91ab…
      (the stages after it depend on its output: they are looked up or computed once it exists)
    time: the last recorded dlc-pipeline/laptop run (run-id, commit abc1234) took 23 min 0 s; its stages from
          'SEDD prior seed=0' on took 19 min 12 s

The config is checked as for a run (`bench.config.preflight`: values, device, dtype, memory). The experiment then
runs on a `PlanContext`: a cached stage (its manifest present) is read back so the experiment can go on to the
next; the first stage that is not cached ends the walk, since what follows it depends on its output. Metric rows,
figures and samples are dropped; the cache is only read (not verified, so a damaged entry is neither reported nor
removed here: the real run does that). The time estimate is measured, not modelled: the last recorded run of the
same experiment and preset in the run store.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable

from .cache import MANIFEST, Stage, StageKey
from .run import RunContext, resolve_device_dtype
from .store import format_duration, recorded_seconds_from

__all__ = ["PlanContext", "dry_run"]


class _FirstToCompute(Exception):
    pass


class PlanContext(RunContext):
    """A RunContext that computes no stage and writes nothing: `plan` lists the stages met."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.plan: list[dict] = []

    def stage(self, stage: Stage, key: StageKey, compute: Callable[[], Any], *, desc: str | None = None) -> Any:
        d = self.cache.directory(key)
        cached = (d / MANIFEST).is_file()
        self.plan.append({"stage": stage.name, "desc": desc or stage.name, "key": str(key), "cached": cached,
                          **({"point": dict(self.row_labels)} if self.row_labels else {})})
        if not cached:
            raise _FirstToCompute
        try:
            return stage.load(d)
        except Exception:            # unreadable: the real run will reject and recompute it
            self.plan[-1]["cached"] = False
            raise _FirstToCompute from None

    def log(self, message: str) -> None:
        pass

    def add_metric(self, *args: Any, **kwargs: Any) -> None:
        pass

    def add_rows(self, rows: Iterable) -> None:
        pass

    def add_figure(self, fig: Any, name: str, caption: str = "", dpi: int = 110) -> Path:
        import matplotlib.pyplot as plt

        plt.close(fig)
        return self.out_dir / f"{name}.png"

    def add_artifact(self, relpath: str, description: str) -> None:
        pass

    def add_samples(self, name: str, images: Any, description: str, **extra: Any) -> Path:
        return self.out_dir / "samples" / f"{name}.npz"

    def note(self, text: str) -> None:
        pass


def dry_run(experiment: Any, config: Any, *, preset: str | None, seeds: tuple[int, ...], cache_dir: Path,
            store: Any = None, device: str = "auto", dtype: str = "float32",
            sweep: list[tuple[dict, Any]] | None = None) -> str:
    """The plan of `execute(experiment, config, ...)` as text (see the module docstring); computes and writes
    nothing. Raises UserError, as `execute` would, on a config, device, dtype or size a run would refuse."""
    from dlc.validate import format_bytes, machine_memory

    from .config import preflight

    preflight(config, device, dtype, points=sweep)
    dev, dt = resolve_device_dtype(device, dtype)
    name = f"{experiment.name}/{preset or 'config'}"
    lines = [f"dry run: {name}, seeds {list(seeds)}, {dev} {str(dt).replace('torch.', '')}"]
    estimate = getattr(config, "estimate", None)
    if callable(estimate):
        parts = estimate()
        big = max(parts, key=parts.get)
        lines.append(f"config: valid; memory estimate {format_bytes(sum(parts.values()))} of "
                     f"{format_bytes(machine_memory())} (largest: {big} {format_bytes(parts[big])})")
    else:
        lines.append("config: valid; sizes within this machine's memory")
    ctx = PlanContext(experiment, config, preset=preset, seeds=seeds, out_dir=Path("/nonexistent/dry-run"),
                      cache_dir=cache_dir, device=dev, dtype=dt, quiet=True)
    complete = True
    for labels, point in (sweep or [({}, config)]):
        ctx.config, ctx.row_labels = point, dict(labels)
        try:
            experiment.fn(ctx)
        except _FirstToCompute:
            complete = False
            break
    lines.append("stages, in order, until the first that must be computed:" if not complete
                 else "stages: every one is cached (the run only reads them and recomputes the metrics)")
    width = max((len(p["desc"]) for p in ctx.plan), default=0)
    for p in ctx.plan:
        point = "".join(f" [{k}={v}]" for k, v in p.get("point", {}).items())
        lines.append(f"  {'cached ' if p['cached'] else 'compute'}  {p['desc'] + point:<{width}}  {p['key'][:40]}")
    if not complete:
        lines.append("  (the stages after it depend on its output: they are looked up or computed once it exists)")
    last = store.last_run(experiment.name, preset) if store is not None else None
    if last is None:
        lines.append(f"time: no recorded run of {name} in the run store to estimate from")
    else:
        first = next((p for p in ctx.plan if not p["cached"]), None)
        found = recorded_seconds_from(last["results"].get("stages") or [], first["desc"], first.get("point")
                                      ) if first else None
        commit = (last.get("git_commit") or "?")[:7]
        lines.append(f"time: the last recorded {name} run ({last['run_id']}, commit {commit}) took "
                     f"{format_duration(last['wall_s'] or 0)}" + (f"; its stages from {first['desc']!r} on took "
                                                                  f"{format_duration(found[1])}" if found else ""))
    lines.append("nothing was computed or written")
    return "\n".join(lines)
