"""`dlc-bench metrics` and `dlc-bench ref-stats`: metrics of two image sets from the command line.

    dlc-bench metrics --real REF --fake SAMPLES --features inception-v3-compat [--weights FILE]
                      [--resize legacy-tf|clean] --metrics fid,sfid,is,kid,pr,dc,vendi,fd_inf
                      [--layer L] [--batch-size 64] [--device auto] [--out DIR [--force]] [--store FILE | --no-store]
                      [--keys torch-fidelity]
    dlc-bench metrics --keys torch-fidelity          our metric names and torch-fidelity's result keys
    dlc-bench ref-stats IMAGES --out ref.npz --features inception-v3-compat [--weights FILE]

REF and SAMPLES are anything `bench.inputs.open_images` reads (image folder, ADM-style .npz with `arr_0`, .npy).
REF may instead be reference statistics (.npz with `mu`, `sigma`[, `mu_s`, `sigma_s`], written by `ref-stats` or
ADM's evaluator): Fréchet-type metrics (fid, sfid, fd_inf) then use them, and the other metrics use the file's
`arr_0` images when it has them (as ADM's evaluator does with its reference batches), else are refused.

The metrics are printed as one JSON object {metric: value} (with `--keys torch-fidelity`, the metrics torch-fidelity
also computes are named by its result keys, `TORCH_FIDELITY_KEYS`; `dlc-bench metrics --keys torch-fidelity` alone
prints that mapping). The run is recorded in the run store (unless --no-store) in the results schema of experiments
(experiment name "metrics"), and with --out DIR written as results.json, results.csv and report.html (over a run
already there only with --force). Bad input prints one line `error: ...`, exits 2 and writes nothing.

This module only parses arguments, calls `bench.evaluate.run_evaluation` (the library path every experiment uses)
and writes the outputs. Metric names (--metrics, comma-separated) are those of `bench.evaluate.resolve_metrics`:
keys of the registry `bench.metrics.METRICS`, group names, or aliases declared on the specs.
A Fréchet distance is labelled by the extractor and layer: `fid` on Inception pool3, `sfid` on its spatial layer,
`fd_effnet`, `fd_dinov2`, `fd_pixels`, ... elsewhere (never "FID" for another network).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable

from .errors import UserError

__all__ = ["METRICS_COMMANDS", "add_metrics_parsers", "parse_metric_names", "cmd_metrics", "cmd_ref_stats"]

EXPERIMENT = "metrics"
EXPERIMENT_VERSION = "1"

# our metric row → torch-fidelity's key in the dict its calculate_metrics returns (the KEY_METRIC_* constants of
# torch_fidelity.metric_fid / metric_isc / metric_kid / metric_prc), for the metrics defined as torch-fidelity does
TORCH_FIDELITY_KEYS = {
    "fid": "frechet_inception_distance",          # inception-v3-compat pool3 (with its legacy-tf resize)
    "is_fidelity": "inception_score_mean",
    "is_fidelity_std": "inception_score_std",
    "kid": "kernel_inception_distance_mean",
    "kid_std": "kernel_inception_distance_std",
    "precision": "precision",
    "recall": "recall",
}


#################################################################################
#                                 Metric names                                  #
#################################################################################

def parse_metric_names(text: str) -> list[str]:
    """'fid, kid,pr' → ['fid', 'kid', 'pr'] (duplicates dropped); unknown names fail with "did you mean".

    The names are those of `bench.evaluate.resolve_metrics` (registry keys, group names, spec aliases)."""
    from .evaluate import metric_names, resolve_metrics

    names = list(dict.fromkeys(s.strip().lower() for s in text.split(",") if s.strip()))
    if not names:
        raise UserError("--metrics is empty", hint=f"choose from {', '.join(metric_names())}")
    for n in names:
        try:
            resolve_metrics([n])
        except ValueError as e:
            extra = ""
            if n.startswith("probe") and "linear probes" not in str(e):
                extra = "; linear probes need labels: use bench.metrics.linear_probe from Python"
            raise UserError(f"{e}{extra}", hint=f"valid metrics: {', '.join(metric_names())}") from None
    return names


def _evaluate(names: list[str], **kw: Any):
    """`bench.evaluate.run_evaluation` with its warnings collected (not shown) and its errors as UserError."""
    from .evaluate import EvaluationInputError, run_evaluation

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            ev = run_evaluation(metrics=names, **kw)
        except EvaluationInputError as e:
            raise UserError(f"--{e.side}: {e.detail}") from None
        except UserError:
            raise
        except (OSError, ValueError) as e:
            raise UserError(str(e)) from None
    return ev, list(dict.fromkeys(str(w.message) for w in caught))


#################################################################################
#                                  Commands                                     #
#################################################################################

def _check_writable_target(path: Path, what: str, option: str, *, is_dir: bool) -> None:
    """Fail early (UserError) if `path` could not be created/written, without creating anything."""
    path = Path(path).expanduser().absolute()
    if path.exists():
        if is_dir and not path.is_dir():
            raise UserError(f"{what} {path} exists and is not a directory", hint=f"choose another {option}")
        if not is_dir and path.is_dir():
            raise UserError(f"{what} {path} is a directory", hint=f"choose a file name with {option}")
        if not os.access(path if is_dir else path.parent, os.W_OK):
            raise UserError(f"{what} {path} is not writable", hint=f"choose another location with {option}")
        return
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise UserError(f"{what} {path} cannot be created ({parent} is not a writable directory)",
                        hint=f"choose another location with {option}")


def _build_extractor(args: argparse.Namespace):
    from dlc.validate import ConfigError, check_device, check_dtype

    if args.features is None:       # metrics' default: the offline extractor, or Inception given its weights
        args.features = "inception-v3-compat" if args.weights else "effnet-lite0"

    from .features import build_extractor

    try:                                        # a device or dtype this machine lacks: one line, before any work
        check_dtype(args.dtype, check_device(args.device))
    except ConfigError as e:
        raise UserError(e.statement, hint=e.fix) from None
    kwargs: dict[str, Any] = {"device": args.device, "dtype": args.dtype}
    if args.weights is not None:
        kwargs["weights"] = args.weights
    if args.resize is not None:
        kwargs["resize"] = args.resize
    try:
        return build_extractor(args.features, **kwargs)
    except UserError:
        raise
    except (ValueError, OSError) as e:
        raise UserError(f"--features {args.features}: {e}") from None


def _progress_factory(quiet: bool):
    if quiet:
        return None
    from tqdm.auto import tqdm

    def make(side: str):
        bar = tqdm(desc=f"features {side}", unit="img", leave=False, file=sys.stderr, dynamic_ncols=True,
                   mininterval=0.5)

        def update(done: int, total: int | None) -> None:
            if total is not None and bar.total != total:
                bar.total = total
            bar.update(done - bar.n)
            if total is not None and done >= total:
                bar.close()
        return update
    return make


def _code_version() -> str:
    """sha256 (16 hex) of the code behind the numbers: metrics, extractors, inputs, ref stats, this command."""
    root = Path(__file__).resolve().parent
    files = sorted([*(root / "metrics").glob("*.py"), *(root / "features").glob("*.py"),
                    *(root / n for n in ("inputs.py", "npz_reader.py", "refstats.py", "evaluate.py") if (root / n).exists()),
                    Path(__file__).resolve()])
    h = hashlib.sha256()
    for p in files:
        h.update(p.relative_to(root).as_posix().encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:16]


def _cache_arg(args: argparse.Namespace):
    """The feature cache of a command (a FeatureCache, counting hits and misses), or False with --no-cache."""
    from .features import FeatureCache

    return False if args.no_cache else FeatureCache(args.cache_dir)


def _model_git(args: argparse.Namespace) -> dict | None:
    """The commit recorded for a `metrics` run: the model's (--commit SHA, or --repo DIR's HEAD), else None."""
    from .results import git_info

    if args.commit is not None:
        if not re.fullmatch(r"[0-9a-fA-F]{4,40}", args.commit):
            raise UserError(f"--commit {args.commit!r} is not a git commit id", hint="pass a hex sha, e.g. --commit "
                            "$(git -C ../my-model rev-parse HEAD)")
        return {"commit": args.commit.lower(), "dirty": None, "branch": None, "source": "--commit"}
    if args.repo is not None:
        info = git_info(Path(args.repo).expanduser())
        if info["commit"] is None:
            raise UserError(f"--repo {args.repo} is not a git checkout", hint="pass the model's repository folder")
        return {**info, "source": f"--repo {Path(args.repo).expanduser().resolve()}"}
    return None


def print_torch_fidelity_keys() -> None:
    """The table of `TORCH_FIDELITY_KEYS`, and the metrics torch-fidelity has no key for."""
    from .evaluate import metric_names, resolve_metrics

    print(f"{'dlc-bench':<16} torch-fidelity")
    for ours, theirs in TORCH_FIDELITY_KEYS.items():
        print(f"{ours:<16} {theirs}")
    others = [s.key for s in resolve_metrics(metric_names()) if s.key not in (*TORCH_FIDELITY_KEYS, "fd")]
    print(f"(no torch-fidelity key, named as ours: {', '.join(others)}; a Fréchet distance on another extractor "
          "is fd_<extractor>)")


def cmd_metrics(args: argparse.Namespace) -> int:
    from .evaluate import is_stats_file
    from .results import environment, git_info
    from .run import check_overwrite, ensure_writable_dir, new_run_id
    from .schema import Results, clean_json, write_results

    given = {"--real": args.real, "--fake": args.fake, "--metrics": args.metrics}
    missing = [opt for opt, v in given.items() if v is None]
    if args.keys and len(missing) == 3:
        print_torch_fidelity_keys()
        return 0
    if missing:
        raise UserError(f"the following arguments are required: {', '.join(missing)}",
                        hint="see `dlc-bench metrics --help`; `--keys torch-fidelity` alone prints the key names")
    names = parse_metric_names(args.metrics)
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {args.batch_size}")
    model_git = _model_git(args)
    if not 0 <= args.bootstrap <= 100_000:
        raise UserError(f"--bootstrap must be in [0, 100000], got {args.bootstrap}", hint="e.g. --bootstrap 200")
    if args.out:
        _check_writable_target(Path(args.out), "output directory", "--out DIR", is_dir=True)
        check_overwrite(Path(args.out), "--out DIR", args.force)
    if args.store and not args.no_store:
        _check_writable_target(Path(args.store), "run store", "--store FILE", is_dir=False)
    for side, value in (("--real", args.real), ("--fake", args.fake)):
        if not Path(value).expanduser().exists():
            raise UserError(f"{side} {value} does not exist", hint="pass an image folder, an .npz/.npy of uint8 "
                            "images" + (" or reference statistics (dlc-bench ref-stats)" if side == "--real" else ""))
    ext = _build_extractor(args)
    real: Any = args.real
    if args.image_size is not None:
        from .inputs import open_images

        try:
            real = real if is_stats_file(real) else open_images(real, size=args.image_size)
            fake: Any = open_images(args.fake, size=args.image_size)
        except (OSError, ValueError) as e:
            raise UserError(str(e), hint="--image-size resizes image folders only") from None
    else:
        fake = args.fake

    store = None
    if not args.no_store:                       # opened (checked, nothing written) before any work
        from .store import RunStore

        store = RunStore(args.store)
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    t0 = time.perf_counter()
    cache = _cache_arg(args)
    ev, warned = _evaluate(names, real=real, fake=fake, extractor=ext, layer=args.layer, batch_size=args.batch_size,
                           cache=cache, progress=_progress_factory(args.quiet), labels={"features": ext.name},
                           bootstrap=args.bootstrap)
    total = time.perf_counter() - t0
    for msg in warned:
        print(f"warning: {msg}", file=sys.stderr)
    values = ev.values if not args.keys else {TORCH_FIDELITY_KEYS.get(k, k): v for k, v in ev.values.items()}
    print(json.dumps(clean_json(values), indent=2))

    from .metrics import METRICS

    desc = ext.describe()
    rows = [{**r, "layer": lay, "resize": ext.resize} for r, lay in zip(ev.rows, ev.layers)]
    specs = {k: {"version": METRICS.get(k).version, "higher_is_better": METRICS.get(k).higher_is_better,
                 "description": METRICS.get(k).description} for k in ev.keys}
    config = {"real": str(args.real), "fake": str(args.fake), "features": ext.name, "weights": args.weights,
              "resize": ext.resize, "layer": args.layer or ext.default_layer, "metrics": names,
              "batch_size": args.batch_size, "image_size": args.image_size, "dtype": args.dtype,
              "bootstrap": args.bootstrap, "tag": args.tag,
              "real_path": str(Path(args.real).expanduser().resolve()),
              "fake_path": str(Path(args.fake).expanduser().resolve())}
    identity = {"metrics": names, "layer": config["layer"], "image_size": args.image_size,
                "extractor": {k: desc[k] for k in ("extractor", "preprocessing", "implementation", "features_version")},
                "weights_sha256": desc["weights"].get("sha256"),
                "real": ev.inputs["real_content_sha256"], "tag": args.tag}   # the samples are what is measured
    hits, misses = (cache.hits, cache.misses) if cache else (0, 0)
    n_fake = ev.inputs["n_fake"]
    results = Results(
        run_id=new_run_id(EXPERIMENT), experiment=EXPERIMENT, experiment_version=EXPERIMENT_VERSION,
        description=f"dlc-bench metrics: {', '.join(names)} of --fake against --real under {ext.name}",
        preset=None, config=config,
        config_hash=hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16],
        code_version=_code_version(), git=model_git or git_info(),
        environment={**environment(ext.device, ext.dtype), **({"dlc_bench_git": git_info()} if model_git else {})},
        seeds=[],
        started_at=started, finished_at=time.strftime("%Y-%m-%dT%H:%M:%S"),
        timings={**ev.timings, "total": round(total, 3)},
        # the two steps of this command, with what they read: extractor description, inputs, metric specs
        stages=[{"stage": "features", "desc": f"features ({ext.name})", "cached": misses == 0 and hits > 0,
                 "seconds": sum(v for k, v in ev.timings.items() if k.startswith("features_")),
                 "extractor": desc, "inputs": ev.inputs},
                {"stage": "metrics", "desc": "metrics", "cached": False, "seconds": ev.timings["metrics"],
                 "metric_specs": specs}],
        cache={"hits": hits, "misses": misses}, metrics=rows,
        notes=[f"features: {ext.name}, resize {ext.resize}, weights sha256 "
               f"{(desc['weights'].get('sha256') or 'none')[:12]}; n_real={ev.inputs['n_real']}, n_fake={n_fake}",
               *warned],
        display={"metric_order": [r["metric"] for r in rows]})
    out_dir = None
    if args.out:
        from reports.html import render_run

        out_dir = ensure_writable_dir(Path(args.out), "output directory", "--out DIR")
        write_results(out_dir, results)
        render_run(out_dir)
        print(f"results: {out_dir / 'results.json'}", file=sys.stderr)
        print(f"report:  {(out_dir / 'report.html').resolve()}", file=sys.stderr)
    if store is not None:
        store.record(results.to_dict(), str(out_dir.resolve()) if out_dir is not None else None)
    return 0


def cmd_ref_stats(args: argparse.Namespace) -> int:
    from .refstats import build_ref_stats, save_ref_stats

    out = Path(args.out).expanduser()
    if out.suffix != ".npz":
        raise UserError(f"--out {out} must end in .npz (the ADM reference statistics format)")
    _check_writable_target(out, "output file", "--out FILE", is_dir=False)
    from .outdir import check_overwrite

    check_overwrite(out, "--out FILE.npz", args.force)
    if not Path(args.images).expanduser().exists():
        raise UserError(f"{args.images} does not exist", hint="pass an image folder or an .npz/.npy of uint8 images")
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {args.batch_size}")
    ext = _build_extractor(args)
    from .inputs import open_images

    try:
        src = open_images(args.images, size=args.image_size)
        progress = _progress_factory(args.quiet)
        ref = build_ref_stats(src, ext, layer=args.layer, batch_size=args.batch_size, cache=_cache_arg(args),
                              progress=progress("images") if progress else None)
    except UserError:
        raise
    except (OSError, ValueError) as e:
        raise UserError(f"{args.images}: {e}") from None
    save_ref_stats(out, ref)
    keys = "mu, sigma" + (", mu_s, sigma_s" if ref.mu_s is not None else "")
    print(f"reference statistics: {out} ({keys}; n={ref.n}, {ext.name} {ref.meta['layer']}, resize {ext.resize})")
    return 0


#################################################################################
#                                   Parsers                                     #
#################################################################################

def _add_extractor_options(p: argparse.ArgumentParser, features_default: str | None) -> None:
    from .features.resize import RESIZE_MODES

    p.add_argument("--features", default=features_default,
                   help="feature extractor: inception-v3-compat, effnet-lite0, dinov2-vitl14, pixels, ... (default: "
                        + (features_default or "inception-v3-compat when --weights is given, else effnet-lite0, the "
                           "offline one") + ")")
    p.add_argument("--weights", default=None, help="local weights file or directory of the extractor")
    p.add_argument("--resize", default=None, choices=[m for m in RESIZE_MODES if m != "none"],
                   help="legacy-tf (TF1 bilinear, as ADM/torch-fidelity) or clean (clean-fid PIL bicubic); "
                        "default: the extractor's")
    p.add_argument("--layer", default=None, help="feature layer for fid/kid/pr/dc/vendi (default: the extractor's)")
    p.add_argument("--image-size", type=int, default=None, metavar="N",
                   help="resize every image of a folder to NxN on reading (mixed-size folders)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--bootstrap", type=int, default=0, metavar="N",
                   help="95 %% percentile-bootstrap intervals over the images from N resamples (0: none); "
                        "`dlc-bench compare` tests differences with them")
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:1, ...")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"], help="extractor compute dtype")
    p.add_argument("--cache-dir", default=None, help="feature cache (default: $DLC_BENCH_CACHE or user cache dir)")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the feature cache")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def add_metrics_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("metrics", help="metrics of generated images against real images or reference statistics",
                       description="Compute metrics of --fake against --real; prints JSON, records the run.")
    p.add_argument("--real", help="(required) image folder, .npz/.npy of uint8 images, or reference stats .npz")
    p.add_argument("--fake", help="(required) image folder or .npz/.npy of uint8 images")
    p.add_argument("--metrics", help="(required) comma-separated metric names (registry keys, groups, aliases): "
                   "fid, sfid, fd_inf, is, kid, pr, dc, prdc, vendi, vendi_q2, novelty, ...")
    p.add_argument("--keys", default=None, choices=["torch-fidelity"], help="print the values under "
                   "torch-fidelity's key names where it has the metric (frechet_inception_distance, ...); alone: "
                   "print the mapping")
    _add_extractor_options(p, None)
    p.add_argument("--out", default=None, help="write results.json, results.csv and report.html here")
    p.add_argument("--force", action="store_true", help="write over a run already in --out")
    p.add_argument("--store", default=None, help="run-store SQLite file (default: $DLC_BENCH_STORE or user data dir)")
    p.add_argument("--no-store", action="store_true", help="do not record the run in the run store")
    p.add_argument("--tag", default=None, metavar="NAME", help="the model these samples come from (part of the "
                   "config hash, so `history --config-hash` follows one model)")
    who = p.add_mutually_exclusive_group()
    who.add_argument("--commit", default=None, metavar="SHA", help="the model's commit, recorded as the run's commit "
                     "(default: --repo's, else dlc-bench's own)")
    who.add_argument("--repo", default=None, metavar="DIR", help="the model's git checkout: its HEAD and dirty flag "
                     "are recorded as the run's commit")

    p = sub.add_parser("ref-stats", help="build ADM-format reference statistics (.npz: mu, sigma, mu_s, sigma_s)")
    p.add_argument("images", help="image folder or .npz/.npy of uint8 images")
    p.add_argument("--out", required=True, help="output .npz file")
    p.add_argument("--force", action="store_true", help="write over an existing --out file")
    _add_extractor_options(p, "inception-v3-compat")


METRICS_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {"metrics": cmd_metrics,
                                                                     "ref-stats": cmd_ref_stats}
