"""The `dlc-bench` command line.

    dlc-bench list                                   experiments, descriptions, presets
    dlc-bench run NAME --preset P | --config FILE.yaml [--set k=v]... [--sweep k=v1,v2]... [--seeds 0,1,2]
    dlc-bench suite SUITE|PRESET [--out DIR]         a named suite (laptop: the main job; paper-laptop: every
                                                     experiment at laptop scale) or every experiment with that
                                                     preset, + one index page
    dlc-bench runs [--experiment NAME]               runs recorded in the run store
    dlc-bench history NAME METRIC                    one metric across recorded runs (commits)
    dlc-bench report DIR... [--out FILE]             (re-)render reports from stored results
    dlc-bench compare RUN RUN... [--out FILE]        recorded runs side by side, with Δ against the first

Bad input prints one line `error: <problem> (<fix>)` and exits with status 2, writing nothing: argument errors
too (the parser's usage text is not printed; `--help` shows it), and an error whose message names no fix gets
a pointer to the subcommand's --help. Every input is checked before anything is created.

Writing over earlier output needs --force: an --out DIR holding a run (results.json) for run / suite / metrics, an
existing --out FILE for report / compare / history (bench.run.check_overwrite).

A run killed after writing its results.json is finished (report, run-store row) by the next `run` of the same
command, `report DIR`, or `runs` / `history` / `compare` (run directories under ./results): see bench.run.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

from .cli_store import cmd_compare, cmd_history, cmd_runs
from .errors import UserError

RESULTS_ROOT = Path("results")     # where `run` and `suite` write by default (relative to the working directory)


FORCE_HELP = "write over an existing run directory or file given as --out"


class _ArgumentError(UserError):
    """A command-line parsing error (argparse's), printed as the one `error:` line."""


class _Parser(argparse.ArgumentParser):
    """argparse with its errors as one `error: <problem> (see `<prog> --help`)` line (exit status 2)."""

    def error(self, message: str):  # type: ignore[override]
        raise _ArgumentError(" ".join(message.split()), hint=f"see `{self.prog} --help`")


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cache-dir", default=None, help="stage/feature cache (default: $DLC_BENCH_CACHE or user cache dir)")
    p.add_argument("--store", default=None, help="run-store SQLite file (default: $DLC_BENCH_STORE or user data dir)")
    p.add_argument("--no-store", action="store_true", help="do not record the run in the run store")
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:1, ...")
    p.add_argument("--dtype", default="float32", help="float32 (default) or bfloat16 where supported")
    p.add_argument("--quiet", action="store_true", help="no progress bars or stage log on the terminal (log.txt "
                   "still gets them)")
    p.add_argument("--force", action="store_true", help=FORCE_HELP)


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    ap = _Parser(prog="dlc-bench", description="Discrete Latent Codes: reference implementation "
                                 "and benchmark harness.")
    ap.add_argument("--version", action="version", version=f"dlc-bench {__version__}")
    sub = ap.add_subparsers(dest="command", required=True)

    sub.add_parser("list", help="list registered experiments with their presets")

    p = sub.add_parser("run", help="run one experiment")
    p.add_argument("name")
    p.add_argument("--preset", default=None, help="smoke, laptop or paper (see `dlc-bench list`)")
    p.add_argument("--config", dest="config_file", default=None, metavar="FILE.yaml",
                   help="your own preset file (alone, or merged over --preset); it may `include:` built-in presets, "
                        "e.g. include: dlc-pipeline/laptop")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value (repeatable; dotted keys for nested groups)")
    p.add_argument("--sweep", dest="sweeps", action="append", default=[], metavar="KEY=V1,V2,...",
                   help="run once per value, all recorded as one run (repeatable: the cartesian product; "
                        "replaces the preset's sweep of that key)")
    p.add_argument("--seeds", default=None, help="seeds: 0,1,2 or 0-4 (default: the preset's)")
    p.add_argument("--out", default=None, help="output directory (default: results/<name>-<preset>-<time>)")
    p.add_argument("--dry-run", action="store_true", help="check the config and print the plan (stages cached / to "
                   "compute, memory and time estimates); compute and write nothing")
    _add_run_options(p)

    p = sub.add_parser("suite", help="run a named suite (laptop, paper-laptop) or every experiment that has the given "
                       "preset, then write one index page")
    p.add_argument("preset", metavar="SUITE|PRESET")
    p.add_argument("--only", default=None, help="comma-separated experiment names to restrict the suite")
    p.add_argument("--out", default=None, help="output directory (default: results/suite-<preset>-<time>)")
    _add_run_options(p)

    p = sub.add_parser("runs", help="list runs recorded in the run store")
    p.add_argument("--experiment", default=None)
    p.add_argument("--commit", default=None, help="commit prefix")
    p.add_argument("--limit", type=int, default=30)
    p.add_argument("--json", action="store_true")
    p.add_argument("--store", default=None)

    p = sub.add_parser("history", help="one metric across recorded runs (tracking across commits)")
    p.add_argument("name")
    p.add_argument("metric")
    p.add_argument("--config-hash", default=None)
    p.add_argument("--where", action="append", default=[], metavar="LABEL=VALUE",
                   help="only rows with this label value (repeatable), e.g. --where variant=dlc")
    p.add_argument("--json", action="store_true", help="the rows as JSON")
    p.add_argument("--csv", action="store_true", help="the rows as CSV")
    p.add_argument("--out", default=None, metavar="FILE.html", help="also write a page plotting the metric across "
                   "runs (95 %% bands, significant changes marked)")
    p.add_argument("--store", default=None)
    p.add_argument("--force", action="store_true", help=FORCE_HELP)

    p = sub.add_parser("report", help="render report.html for run directories (and an index for several)")
    p.add_argument("dirs", nargs="+")
    p.add_argument("--out", default=None, help="index page for several runs (default: ./dlc-bench-report.html)")
    p.add_argument("--force", action="store_true", help=FORCE_HELP)

    p = sub.add_parser("compare", help="runs of one experiment side by side, with the change against the first")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directories or run ids (or unique id prefixes) "
                   "recorded in the run store (see `dlc-bench runs`)")
    p.add_argument("--out", default=None, metavar="FILE.html", help="also write the comparison as an HTML page "
                   "(every run needs its run directory)")
    p.add_argument("--store", default=None)
    p.add_argument("--fail-if", dest="fail_if", action="append", default=[], metavar="METRIC[:+TOL[%]]",
                   help="exit 1 when METRIC got significantly worse than in the first run by more than TOL "
                        "(relative with %%, else absolute; repeatable), e.g. --fail-if 'fd_effnet:+2%%'")
    p.add_argument("--json", action="store_true", help="print the comparison as JSON")
    p.add_argument("--cache-dir", default=None, help="where the runs' features are stored, for a paired bootstrap "
                   "of Fréchet-distance differences (default: $DLC_BENCH_CACHE or the user cache dir)")
    p.add_argument("--force", action="store_true", help=FORCE_HELP)

    from .cli_metrics import add_metrics_parsers
    add_metrics_parsers(sub)
    return ap


#################################################################################
#                                  Commands                                     #
#################################################################################

def cmd_list(args: argparse.Namespace) -> int:
    from .experiment import load_builtin_experiments

    reg = load_builtin_experiments()
    rows = [(name, ", ".join(exp.presets()) or "-", exp.description) for name, exp in reg.items()]
    w0 = max([len(r[0]) for r in rows] + [10])
    w1 = max([len(r[1]) for r in rows] + [7])
    print(f"{'experiment':<{w0}}  {'presets':<{w1}}  description")
    for name, presets, desc in rows:
        print(f"{name:<{w0}}  {presets:<{w1}}  {desc}")
    return 0


def _prepare(name: str, preset: str | None, overrides: list[str], seeds_text: str | None,
             config_file: str | None = None, sweeps: list[str] | None = None, device: str = "auto",
             dtype: str = "float32"):
    """(experiment, LoadedConfig, seeds, sweep points or None), every input checked before anything runs:
    names, values, and what depends on this machine (bench.config.preflight: device, dtype, memory)."""
    from .config import expand_sweep, parse_seeds, preflight, resolve_config
    from .experiment import get_experiment

    exp = get_experiment(name)
    loaded = resolve_config(exp.config_cls, name, preset, overrides, config_file=config_file, sweeps=sweeps)
    seeds = parse_seeds(seeds_text) if seeds_text else (loaded.seeds or (0,))
    points = expand_sweep(loaded.config, loaded.sweep) if loaded.sweep else None
    preflight(loaded.config, device, dtype, points=points)
    return exp, loaded, seeds, points


def _sweep_kwargs(points) -> dict:
    """{'sweep': points} for bench.run.execute, or {} for a run without a sweep."""
    if not points:
        return {}
    import inspect

    from .run import execute

    if "sweep" not in inspect.signature(execute).parameters:
        raise UserError("this version of bench.run.execute cannot run sweeps", hint="run without sweep / --sweep")
    return {"sweep": points}


def _store(args: argparse.Namespace):
    from .store import RunStore

    return None if getattr(args, "no_store", False) else RunStore(args.store)


def cmd_run(args: argparse.Namespace) -> int:
    from .run import check_overwrite, check_writable_dir, execute, run_identity

    if args.preset is None and args.config_file is None:
        raise UserError("dlc-bench run needs a config", hint="pass --preset NAME (see `dlc-bench list`) "
                        "or --config FILE.yaml")
    exp, loaded, seeds, points = _prepare(args.name, args.preset, args.overrides, args.seeds,
                                          config_file=args.config_file, sweeps=args.sweeps, device=args.device,
                                          dtype=args.dtype)
    sweep = _sweep_kwargs(points)
    if args.dry_run:
        from .cache import default_cache_dir
        from .dryrun import dry_run
        from .store import RunStore

        store = None if args.no_store else RunStore(args.store, writable=False)
        print(dry_run(exp, loaded.config, preset=loaded.preset, seeds=seeds, cache_dir=Path(args.cache_dir or
                      default_cache_dir()), store=store, device=args.device, dtype=args.dtype, **sweep))
        return 0
    stamp = time.strftime('%Y%m%d-%H%M%S')
    out = Path(args.out) if args.out else RESULTS_ROOT / f"{args.name}-{loaded.preset}-{stamp}"
    # without --out, an interrupted run of this same command sits in an earlier timestamped directory
    earlier = [] if args.out else sorted(RESULTS_ROOT.glob(f"{args.name}-{loaded.preset}-*"), reverse=True)
    check_writable_dir(out, "output directory", "--out DIR")
    check_overwrite(out, "--out DIR", args.force, run_identity(exp, loaded.config, seeds, loaded.preset, points))
    store = _store(args)
    res = execute(exp, loaded.config, preset=loaded.preset, seeds=seeds, out_dir=out, cache_dir=args.cache_dir,
                  store=store, device=args.device, dtype=args.dtype, quiet=args.quiet, resume_dirs=earlier, **sweep)
    out = next((d for d in [out, *earlier] if _holds_run(d, res.run_id)), out)
    print(f"results: {out / 'results.json'}")
    print(f"report:  {(out / 'report.html').resolve()}")
    return 0


def _holds_run(d: Path, run_id: str) -> bool:
    try:
        return json.loads((d / "results.json").read_text()).get("run_id") == run_id
    except (OSError, ValueError, AttributeError):
        return False


# named suites: name → (preset, the experiments run with it; None: every experiment that has the preset). Any other
# name is a preset: `suite smoke` runs every experiment's smoke preset.
SUITES: dict[str, tuple[str, tuple[str, ...] | None]] = {
    "laptop": ("laptop", ("dlc-pipeline", "toy-mixture")),    # the README's main job (make demo), ≤ 30 minutes
    "paper-laptop": ("laptop", None),                        # every experiment of the paper at laptop scale
}


def suite_members(name: str) -> tuple[str, list[str]]:
    """(preset, experiments) of a named suite, or of every experiment that has the preset `name`."""
    from .experiment import load_builtin_experiments

    preset, members = SUITES.get(name, (name, None))
    return preset, [n for n, e in load_builtin_experiments().items()
                    if preset in e.presets() and (members is None or n in members)]


def cmd_suite(args: argparse.Namespace) -> int:
    from reports.html import render_index

    from .experiment import load_builtin_experiments
    from .run import check_overwrite, check_writable_dir, execute, run_identity

    reg = load_builtin_experiments()
    suite = args.preset
    args.preset, names = suite_members(suite)
    if args.only:
        wanted = [s.strip() for s in args.only.split(",") if s.strip()]
        for w in wanted:
            reg.get(w)  # did-you-mean on typos
            if w not in names:
                raise UserError(f"experiment {w!r} has no {args.preset!r} preset")
        names = [n for n in names if n in wanted]
    if not names:
        raise UserError(f"no experiment has a {args.preset!r} preset", hint="see `dlc-bench list`; suites: "
                        + ", ".join(SUITES))
    prepared = [(n, *_prepare(n, args.preset, [], None, device=args.device, dtype=args.dtype))
                for n in names]  # validate everything first
    sweeps = {n: _sweep_kwargs(points) for n, _, _, _, points in prepared}
    out = Path(args.out) if args.out else RESULTS_ROOT / f"suite-{suite}-{time.strftime('%Y%m%d-%H%M%S')}"
    check_writable_dir(out, "output directory", "--out DIR")   # created by the first run
    check_overwrite(out / "index.html", "--out DIR", args.force)
    for name, exp, loaded, seeds, points in prepared:
        check_overwrite(out / name, "--out DIR", args.force, run_identity(exp, loaded.config, seeds, args.preset,
                                                                          points))
    store = _store(args)
    done, failed = [], []
    t0 = time.perf_counter()
    for i, (name, exp, loaded, seeds, _) in enumerate(prepared, 1):
        print(f"[suite {i}/{len(prepared)}] {name} --preset {args.preset}", file=sys.stderr, flush=True)
        t1 = time.perf_counter()
        try:
            execute(exp, loaded.config, preset=args.preset, seeds=seeds, out_dir=out / name, cache_dir=args.cache_dir,
                    store=store, device=args.device, dtype=args.dtype, quiet=args.quiet, **sweeps[name])
            done.append(out / name)
            print(f"[suite] {name} finished in {time.perf_counter() - t1:.0f} s", file=sys.stderr, flush=True)
        except UserError:
            raise
        except Exception:  # keep going: one broken experiment must not hide the others' results
            traceback.print_exc()
            failed.append(name)
    if done:
        index = render_index(done, out / "index.html", title=f"dlc-bench suite · {suite}")
        print(f"suite finished in {time.perf_counter() - t0:.0f} s")
        print(f"report: {index.resolve()}")
    if failed:
        print(f"error: experiments failed: {', '.join(failed)} (see the tracebacks above)", file=sys.stderr)
        return 1
    return 0


def _finish_interrupted() -> None:
    """Finish the runs under ./results that were killed after writing their results (bench.run)."""
    if RESULTS_ROOT.is_dir():
        from .run import finish_interrupted_runs

        finish_interrupted_runs(RESULTS_ROOT)


def _reader(args: argparse.Namespace):
    """The run store of a command that only reads it (never created by reading)."""
    from .store import RunStore

    _finish_interrupted()
    return RunStore(args.store, writable=False)


def _check_out_file(out: Path, option: str, force: bool) -> None:
    """The page `out` of --out can be written: not a directory, its folder writable, no file there unless --force."""
    from .run import check_overwrite, check_writable_dir

    if out.is_dir():
        raise UserError(f"{option.split()[0]} {out} is a directory", hint=f"give a file name with {option}")
    check_writable_dir(out.parent, f"{option.split()[0]} {out}: its folder", option)
    check_overwrite(out, option, force)


def cmd_report(args: argparse.Namespace) -> int:
    from reports.html import render_index, render_run

    from .run import finish_interrupted
    from .schema import read_results

    for d in args.dirs:        # every run is read (and so checked) before anything is written
        read_results(d)
    out = Path(args.out or "dlc-bench-report.html")
    if len(args.dirs) > 1 or args.out:
        _check_out_file(out, "--out FILE", args.force)
    for d in args.dirs:
        finish_interrupted(Path(d))
    if len(args.dirs) == 1 and not args.out:
        print(f"report: {render_run(args.dirs[0]).resolve()}")
    else:
        print(f"report: {render_index(args.dirs, out).resolve()}")
    return 0



COMMANDS = {"list": cmd_list, "run": cmd_run, "suite": cmd_suite, "runs": cmd_runs, "history": cmd_history,
            "report": cmd_report, "compare": cmd_compare}


def _error_line(e: UserError, command: str | None) -> str:
    """`error: <problem> (<fix>)` on one line; a message without a fix points to the command's --help."""
    text = " ".join(str(e).split())
    if e.hint is None and not text.endswith(")"):
        text += f" (see `dlc-bench{' ' + command if command else ''} --help`)"
    return f"error: {text}"


def main(argv: list[str] | None = None) -> int:
    args = None
    try:
        args = build_parser().parse_args(argv)
        from .cli_metrics import METRICS_COMMANDS

        return {**COMMANDS, **METRICS_COMMANDS}[args.command](args)
    except UserError as e:
        print(_error_line(e, getattr(args, "command", None)), file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted: finished stages are cached; rerun the same command to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:               # e.g. `dlc-bench history ... | head`: the reader left, not an error
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
