"""The run-store commands of dlc-bench: `runs`, `history` and `compare` (argument handling; the comparison
itself is `bench.compare`). bench.cli registers them; they use its store and output helpers (imported when called,
so the modules do not import each other at load time)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .errors import UserError
from .registry import did_you_mean
from .schema import HISTORY_COLUMNS


def cmd_runs(args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise UserError(f"--limit must be >= 1, got {args.limit}", hint="pass --limit N with N >= 1")
    from .cli import _reader

    store = _reader(args)
    rows = store.runs(experiment=args.experiment, commit=args.commit, limit=args.limit)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"store: {store.path}")
    if not rows:
        print("(no runs recorded)")
        return 0
    print(f"{'run_id':<44} {'experiment':<16} {'preset':<8} {'commit':<10} {'config':<16} {'seeds':<10} {'wall s':>8}")
    for r in rows:
        commit = (r["git_commit"] or "-")[:8] + ("*" if r["git_dirty"] else "")
        seeds = ",".join(str(s) for s in json.loads(r["seeds"]))
        wall = f"{r['wall_s']:.1f}" if r["wall_s"] is not None else "-"
        print(f"{r['run_id']:<44} {r['experiment']:<16} {r['preset'] or '-':<8} {commit:<10} {r['config_hash']:<16} "
              f"{seeds:<10} {wall:>8}")
    return 0


def _no_history(store, name: str, metric: str, config_hash: str | None) -> None:
    """Raise the UserError that explains an empty history (unknown experiment, metric or config hash), or
    return when the name is simply not recorded yet."""
    metrics = store.metric_names(name)
    if metrics and metric not in metrics:
        raise UserError(f"no metric {metric!r} is recorded for {name!r}.{did_you_mean(metric, metrics)}",
                        hint=f"recorded metrics: {', '.join(metrics)}")
    hashes = store.config_hashes(name)
    if metrics and config_hash and config_hash not in hashes:
        raise UserError(f"no run of {name!r} has config hash {config_hash!r}.{did_you_mean(config_hash, hashes)}",
                        hint=f"recorded config hashes: {', '.join(hashes)}")
    if metrics:
        return
    from .cli_metrics import EXPERIMENT as METRICS_EXPERIMENT
    from .experiment import load_builtin_experiments

    known = sorted({*load_builtin_experiments().names(), *store.experiments(), METRICS_EXPERIMENT})
    if name not in known:
        raise UserError(f"unknown experiment {name!r}.{did_you_mean(name, known)}",
                        hint=f"experiments: {', '.join(known)}")


def _history_rows(rows: list[dict]) -> list[dict]:
    """Per run and labels: the across-seed row, or the per-seed row when the run had one seed."""
    key = lambda r: (r["run_id"], tuple(sorted((k, str(v)) for k, v in r.items() if k not in HISTORY_COLUMNS)))
    seeds: dict[tuple, list[dict]] = {}
    for r in rows:
        if r["seed"] is not None:
            seeds.setdefault(key(r), []).append(r)
    agg = {key(r) for r in rows if r["seed"] is None}
    return [r for r in rows if r["seed"] is None or (key(r) not in agg and len(seeds[key(r)]) == 1)]


def cmd_history(args: argparse.Namespace) -> int:
    where = {}
    for w in args.where:
        k, sep, v = w.partition("=")
        if not sep or not k.strip():
            raise UserError(f"--where {w!r} is not LABEL=VALUE", hint="e.g. --where variant=dlc")
        where[k.strip()] = v.strip()
    from .cli import _reader

    store = _reader(args)
    rows = store.history(args.name, args.metric, config_hash=args.config_hash)
    if not rows:
        _no_history(store, args.name, args.metric, args.config_hash)
        print(f"(no recorded values of {args.metric!r} for {args.name!r})")
        return 0
    rows = _history_rows(rows)
    labels = sorted({k for r in rows for k in r if k not in HISTORY_COLUMNS})
    for k, v in where.items():
        if k not in labels:
            raise UserError(f"--where {k}: {args.metric!r} rows of {args.name!r} have no label {k!r}."
                            f"{did_you_mean(k, labels)}", hint=f"labels: {', '.join(labels) or 'none'}")
        values = sorted({str(r.get(k)) for r in rows})
        if v not in values:
            raise UserError(f"--where {k}={v}: no recorded row has it.{did_you_mean(v, values)}",
                            hint=f"values of {k}: {', '.join(values)}")
    rows = [r for r in rows if all(str(r.get(k)) == v for k, v in where.items())]
    if args.out:
        from reports.html import render_history

        from .cli import _check_out_file

        _check_out_file(Path(args.out), "--out FILE.html", args.force)
        page = render_history(rows, args.out, args.name, args.metric)
        print(f"page: {page.resolve()}", file=sys.stderr)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if args.csv:
        import csv

        w = csv.DictWriter(sys.stdout, fieldnames=[*HISTORY_COLUMNS, *labels], extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
        return 0
    print(f"{args.name} · {args.metric} · {len(rows)} value(s) over {len({r['run_id'] for r in rows})} run(s), "
          "oldest first (* = uncommitted changes)")
    print(f"{'finished':<19}  {'commit':<9} {'config':<16}  {'value':>10}  {'95 % interval':<22} labels")
    for r in rows:
        ci = f"[{r['ci_low']:.4g}, {r['ci_high']:.4g}]" if r["ci_low"] is not None else ""
        commit = (r["git_commit"] or "-")[:8] + ("*" if r["git_dirty"] else "")
        value = "-" if r["value"] is None else f"{r['value']:.6g}"
        lab = " ".join(f"{k}={r[k]}" for k in labels if k in r and k not in where)
        print(f"{r['finished_at']:<19}  {commit:<9} {r['config_hash']:<16}  {value:>10}  {ci:<22} {lab}")
    return 0


def _compared_runs(args: argparse.Namespace) -> list[tuple[str, object, Path | None]]:
    """(name, Results, run directory or None) of every RUN of `dlc-bench compare`, checked."""
    from .schema import Results, read_results

    if len(args.runs) < 2:
        raise UserError(f"compare needs at least two runs, got {len(args.runs)}",
                        hint="pass two or more run directories or run ids (see `dlc-bench runs`)")
    from .cli import _reader

    store = _reader(args)
    out = []
    for ref in args.runs:
        if Path(ref).is_dir():
            out.append((ref, read_results(ref), Path(ref)))
            continue
        found = store.find(ref)
        if not found:
            raise UserError(f"no run {ref!r}: not a run directory, nor a run id recorded in {store.path}."
                            f"{did_you_mean(ref, store.run_ids())}",
                            hint="pass a run directory or a run id listed by `dlc-bench runs`")
        if len(found) > 1:
            raise UserError(f"run id prefix {ref!r} matches {len(found)} runs: "
                            f"{', '.join(r['run_id'] for r in found[:5])}", hint="give more of the run id")
        row = found[0]
        try:
            res = Results.from_dict(json.loads(row["results_json"] or "null"), source=f"run {row['run_id']}")
        except ValueError as e:
            raise UserError(f"the record of run {row['run_id']} in {store.path} is not readable ({e})",
                            hint="compare its run directory instead") from None
        d = Path(row["out_dir"]) if row["out_dir"] and Path(row["out_dir"]).is_dir() else None
        out.append((row["run_id"], res, d))
    ids = [r.run_id for _, r, _ in out]
    dup = next((i for i in ids if ids.count(i) > 1), None)
    if dup:
        raise UserError(f"run {dup} is given twice", hint="compare distinct runs")
    experiments = list(dict.fromkeys(r.experiment for _, r, _ in out))
    if len(experiments) > 1:
        raise UserError(f"compare needs runs of one experiment, got {', '.join(experiments)}",
                        hint="compare runs of the same experiment (`dlc-bench runs --experiment NAME`)")
    return out


def cmd_compare(args: argparse.Namespace) -> int:
    from reports.html import render_index

    runs = _compared_runs(args)
    if args.out:
        out = Path(args.out)
        from .cli import _check_out_file

        _check_out_file(out, "--out FILE.html", args.force)
        missing = [name for name, _, d in runs if d is None]
        if missing:
            raise UserError(f"--out needs the run directories, and run {missing[0]} has none",
                            hint="compare without --out, or pass the run directories")
    from .compare import compare_runs, format_comparison, gate, parse_fail_if, stored_features

    gates = parse_fail_if(args.fail_if)
    load = stored_features(args.cache_dir)             # stored features: FD differences get a paired bootstrap
    cmps = [compare_runs(runs[0][1], res, features=load) for _, res, _ in runs[1:]]   # every run against the first
    failed = [f"{c['b']}: {f}" for c in cmps for f in gate(c, gates)]
    if args.json:
        print(json.dumps({"comparisons": cmps, "failed": failed}, indent=2, default=str))
    else:
        for c in cmps:
            print("\n".join(format_comparison(c)))
    if args.out:
        print(f"report: {render_index([d for _, _, d in runs], out, render_each=False, verdicts=cmps).resolve()}",
              file=sys.stderr if args.json else sys.stdout)
    for f in failed:
        print(f"FAIL {f}", file=sys.stderr)
    return 1 if failed else 0
