"""`dlc-bench metrics` and `dlc-bench ref-stats`: metrics of two image sets from the command line.

    dlc-bench metrics --real REF --fake SAMPLES --features inception-v3-compat [--weights FILE]
                      [--resize legacy-tf|clean] --metrics fid,sfid,is,kid,pr,dc,vendi,fd_inf
                      [--layer L] [--batch-size 64] [--device auto] [--out DIR] [--store FILE | --no-store]
    dlc-bench ref-stats IMAGES --out ref.npz --features inception-v3-compat [--weights FILE]

REF and SAMPLES are anything `bench.inputs.open_images` reads (image folder, ADM-style .npz with `arr_0`, .npy).
REF may instead be reference statistics (.npz with `mu`, `sigma`[, `mu_s`, `sigma_s`], written by `ref-stats` or
ADM's evaluator): Fréchet-type metrics (fid, sfid, fd_inf) then use them, and the other metrics use the file's
`arr_0` images when it has them (as ADM's evaluator does with its reference batches), else are refused.

The metrics are printed as one JSON object {metric: value}. The run is recorded in the run store (unless
--no-store) in the results schema of experiments (experiment name "metrics"), and with --out DIR written as
results.json, results.csv and report.html. Bad input prints one line `error: ...`, exits 2 and writes nothing.

Metric names (--metrics, comma-separated): each expands to registered metrics of `bench.metrics.METRICS`.
A Fréchet distance is labelled by the extractor and layer: `fid` on Inception pool3, `sfid` on its spatial layer,
`fd_effnet`, `fd_dinov2`, `fd_pixels`, ... elsewhere (never "FID" for another network).
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .errors import UserError

__all__ = ["METRICS_COMMANDS", "add_metrics_parsers", "CLI_METRICS", "parse_metric_names", "compute_image_metrics",
           "cmd_metrics", "cmd_ref_stats"]

EXPERIMENT = "metrics"
EXPERIMENT_VERSION = 1


#################################################################################
#                              Metric vocabulary                                #
#################################################################################

@dataclasses.dataclass(frozen=True)
class CliMetric:
    """One name accepted by --metrics: the registered metrics it computes and the feature layer they read.

    kind: 'fd' (Fréchet distance, labelled by extractor and layer), 'fd_inf' (FD∞, the same label + '_inf') or
    'registry' (the METRICS keys in `keys`, computed by `compute_metrics`). layer: 'default' (the extractor's
    default layer or --layer), or a named layer the extractor must have.
    """
    kind: str
    keys: tuple[str, ...]
    layer: str = "default"
    description: str = ""

    @property
    def fd_type(self) -> bool:
        return self.kind in ("fd", "fd_inf")


_FD = CliMetric("fd", ("fd",), description="Fréchet distance on the default layer (FID on Inception pool3)")
CLI_METRICS: dict[str, CliMetric] = {
    "fid": _FD,
    "fd": _FD,
    "sfid": CliMetric("fd", ("fd",), "spatial", "sFID: Fréchet distance on Inception mixed_6/conv[..., :7] (ADM)"),
    "fd_inf": CliMetric("fd_inf", ("fd_inf",), description="FD∞ (Chong & Forsyth 2020) on the default layer"),
    "fid_inf": CliMetric("fd_inf", ("fd_inf",), description="alias of fd_inf"),
    "is": CliMetric("registry", ("is_adm", "is_fidelity", "is_fidelity_std"), "logits_unbiased",
                    "Inception Score in both conventions (ADM; torch-fidelity mean and std)"),
    "is_adm": CliMetric("registry", ("is_adm",), "logits_unbiased", "Inception Score as ADM's evaluator"),
    "is_fidelity": CliMetric("registry", ("is_fidelity", "is_fidelity_std"), "logits_unbiased",
                             "Inception Score as torch-fidelity (mean and std over 10 splits)"),
    "kid": CliMetric("registry", ("kid", "kid_std"), description="Kernel Inception Distance (mean and std)"),
    "pr": CliMetric("registry", ("precision", "recall"), description="improved precision and recall (k=3)"),
    "dc": CliMetric("registry", ("density", "coverage"), description="density and coverage (k=5)"),
    "prdc": CliMetric("registry", ("precision", "recall", "density", "coverage"),
                      description="precision, recall, density, coverage"),
    **{k: CliMetric("registry", (k,), description=k) for k in ("precision", "recall", "density", "coverage")},
    "vendi": CliMetric("registry", ("vendi",), description="Vendi score (q=1) of the fake set"),
    "vendi_q2": CliMetric("registry", ("vendi_q2",), description="Vendi score of order 2"),
    "vendi_qinf": CliMetric("registry", ("vendi_qinf",), description="Vendi score of order ∞"),
    "novelty": CliMetric("registry", ("nn_max_sim", "nn_copy_frac"),
                         description="nearest-neighbour novelty of fake against real (cosine, faiss)"),
    "nn_max_sim": CliMetric("registry", ("nn_max_sim",), description="mean max cosine similarity to real"),
    "nn_copy_frac": CliMetric("registry", ("nn_copy_frac",), description="fraction of near-copies of real"),
}


def parse_metric_names(text: str) -> list[str]:
    """'fid, kid,pr' → ['fid', 'kid', 'pr'] (duplicates dropped); unknown names fail with "did you mean"."""
    from .registry import did_you_mean

    names = list(dict.fromkeys(s.strip().lower() for s in text.split(",") if s.strip()))
    if not names:
        raise UserError("--metrics is empty", hint=f"choose from {', '.join(CLI_METRICS)}")
    for n in names:
        if n not in CLI_METRICS:
            extra = ""
            if n.startswith("probe"):
                extra = "; linear probes need labels: use bench.metrics.linear_probe from Python"
            raise UserError(f"unknown metric {n!r}.{did_you_mean(n, list(CLI_METRICS))}{extra}",
                            hint=f"valid metrics: {', '.join(CLI_METRICS)}")
    return names


#################################################################################
#                                 Computing                                     #
#################################################################################

def _input_error(e: Exception, what: str) -> UserError:
    if isinstance(e, UserError):
        return e
    return UserError(f"{what}: {e}")


def is_stats_file(path: str | os.PathLike) -> bool:
    """True for an .npz holding `mu` and `sigma` (reference statistics), False for anything else."""
    p = Path(path).expanduser()
    if p.suffix != ".npz" or not p.is_file():
        return False
    try:
        with np.load(p, allow_pickle=False) as z:
            return {"mu", "sigma"} <= set(z.files)
    except (OSError, ValueError):
        return False


def _npz_has_images(path: Path) -> bool:
    with np.load(path, allow_pickle=False) as z:
        return "arr_0" in z.files


def _layer_of(m: CliMetric, ext: Any, default_layer: str, name: str) -> str:
    layer = default_layer if m.layer == "default" else m.layer
    if layer not in ext.layer_dims:
        raise UserError(f"metric {name!r} needs the layer {layer!r}, which the {ext.name} extractor does not have "
                        f"(layers: {', '.join(ext.layer_dims)})",
                        hint="use --features inception-v3-compat for sfid and is")
    return layer


def compute_image_metrics(names: list[str], *, real: Any, fake: Any, extractor: Any, layer: str | None = None,
                          batch_size: int = 64, cache: Any = True,
                          progress: Callable[[str], Callable[[int, int | None], None] | None] | None = None
                          ) -> dict:
    """Every metric in `names` (CLI vocabulary) of `fake` against `real` under `extractor`.

    real: images (anything open_images takes), a path to reference statistics (.npz with mu/sigma) or a RefStats.
    Returns {'values': {key: float}, 'rows': [(key, value, layer, registry key)], 'inputs': {...},
    'warnings': [str], 'timings': {...}}. Raises UserError on bad input, before anything is written.
    Warnings (rank-deficient covariances, KID subset size, ADM reference files, ...) are collected, not shown.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = _compute_image_metrics(names, real=real, fake=fake, extractor=extractor, layer=layer,
                                     batch_size=batch_size, cache=cache, progress=progress)
    out["warnings"] = list(dict.fromkeys(str(w.message) for w in caught))
    return out


def _compute_image_metrics(names, *, real, fake, extractor, layer, batch_size, cache, progress) -> dict:
    from .features import extract_features
    from .inputs import open_images
    from .metrics import METRICS, compute_metrics
    from .metrics.frechet import fd, fd_infinity
    from .refstats import RefStats, check_compatible, load_ref_stats

    default_layer = layer or extractor.default_layer
    if default_layer not in extractor.layer_dims:
        raise UserError(f"{extractor.name} has no layer {default_layer!r}",
                        hint=f"--layer takes one of {', '.join(extractor.layer_dims)}")
    plan = [(n, CLI_METRICS[n], _layer_of(CLI_METRICS[n], extractor, default_layer, n)) for n in names]

    # ---- the real side: images, statistics, or statistics plus images (an ADM reference batch) ----
    ref: RefStats | None = None
    real_images = real
    if isinstance(real, RefStats):
        ref, real_images = real, None
    elif isinstance(real, (str, Path)) and is_stats_file(real):
        try:
            ref = load_ref_stats(real)
        except (OSError, ValueError) as e:
            raise _input_error(e, "--real") from None
        real_images = real if _npz_has_images(Path(real).expanduser()) else None
    def uses_real(m: CliMetric) -> bool:                          # IS and Vendi read the fake set only
        return any("real" in METRICS.get(k).inputs for k in m.keys)

    needs_real_images = [n for n, m, _ in plan if not m.fd_type and uses_real(m)]
    if ref is not None:
        if real_images is None and needs_real_images:
            raise UserError(f"--real is a reference statistics file without images: only fid, sfid and fd_inf can "
                            f"use it, not {', '.join(needs_real_images)}",
                            hint="pass real images (a folder or an .npz with arr_0) for the other metrics")
        for n, m, lay in plan:
            if m.fd_type:
                check_compatible(ref, extractor.describe(), lay)
    try:
        fake_src = open_images(fake)
    except (OSError, ValueError) as e:
        raise _input_error(e, "--fake") from None
    real_src = None
    if real_images is not None and (ref is None or needs_real_images):
        try:
            real_src = open_images(real_images)
        except (OSError, ValueError) as e:
            raise _input_error(e, "--real") from None

    # ---- features: one pass per image set over every layer it needs ----
    fake_layers = list(dict.fromkeys(lay for _, _, lay in plan))
    real_layers = list(dict.fromkeys(lay for _, m, lay in plan
                                     if uses_real(m) and (ref is None or not m.fd_type)))
    timings: dict[str, float] = {}
    feats: dict[str, dict[str, np.ndarray]] = {}
    for side, src, layers in (("real", real_src, real_layers), ("fake", fake_src, fake_layers)):
        if src is None or not layers:
            continue
        t0 = time.perf_counter()
        try:
            feats[side] = extract_features(src, extractor, layers, batch_size=batch_size, cache=cache,
                                           progress=progress(side) if progress else None)
        except (OSError, ValueError) as e:
            raise _input_error(e, f"--{side}") from None
        timings[f"features_{side}"] = round(time.perf_counter() - t0, 3)

    # ---- metrics ----
    values: dict[str, float] = {}
    rows: list[tuple[str, float, str, str]] = []
    t0 = time.perf_counter()
    for name, m, lay in plan:
        fake_f = feats["fake"][lay]
        try:
            if m.fd_type:
                label = extractor.metric_label(lay)
                key = label if m.kind == "fd" else f"{label}_inf"
                if key in values:                                   # 'fid' and 'fd' are one metric
                    continue
                if ref is not None:
                    spatial = lay != ref.meta.get("layer")
                    real_in: Any = (ref.mu_s, ref.sigma_s) if spatial else (ref.mu, ref.sigma)
                else:
                    real_in = feats["real"][lay]
                fn = fd if m.kind == "fd" else fd_infinity
                values[key] = float(fn(real=real_in, fake=fake_f))
                rows.append((key, values[key], lay, m.keys[0]))
                continue
            todo = [k for k in m.keys if k not in values]
            if not todo:
                continue
            out = compute_metrics(todo, real=feats.get("real", {}).get(lay), fake=fake_f)
        except ValueError as e:
            raise _input_error(e, f"metric {name!r}") from None
        for k in todo:
            values[k] = out[k]
            rows.append((k, out[k], lay, k))
    timings["metrics"] = round(time.perf_counter() - t0, 3)
    return {
        "values": values,
        "rows": rows,
        "specs": {r[3]: {"version": METRICS.get(r[3]).version, "higher_is_better": METRICS.get(r[3]).higher_is_better,
                         "description": METRICS.get(r[3]).description} for r in rows},
        "inputs": {
            "real": ({"kind": "reference statistics", **{k: v for k, v in ref.meta.items() if k != "extractor"}}
                     if ref is not None else None) or (real_src.describe() if real_src is not None else None),
            "real_images": real_src.describe() if real_src is not None and ref is not None else None,
            "fake": fake_src.describe(),
            "n_real": (len(next(iter(feats["real"].values()))) if "real" in feats else ref.n if ref else None),
            "n_fake": len(next(iter(feats["fake"].values()))),
            "real_content_sha256": (real_src.fingerprint() if real_src is not None
                                    else (ref.meta.get("file") or {}).get("sha256")),
            "fake_content_sha256": fake_src.fingerprint(),
        },
        "timings": timings,
    }


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
    from .features import build_extractor

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
                    root / "inputs.py", root / "refstats.py", Path(__file__).resolve()])
    h = hashlib.sha256()
    for p in files:
        h.update(p.relative_to(root).as_posix().encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:16]


def _cache_arg(args: argparse.Namespace):
    """The feature cache of a command (a FeatureCache, counting hits and misses), or False with --no-cache."""
    from .features import FeatureCache

    return False if args.no_cache else FeatureCache(args.cache_dir)


def cmd_metrics(args: argparse.Namespace) -> int:
    from .results import SCHEMA_VERSION, _clean, environment, git_info, metric_row, write_results
    from .run import ensure_writable_dir, new_run_id

    names = parse_metric_names(args.metrics)
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.out:
        _check_writable_target(Path(args.out), "output directory", "--out DIR", is_dir=True)
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

    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    t0 = time.perf_counter()
    cache = _cache_arg(args)
    res = compute_image_metrics(names, real=real, fake=fake, extractor=ext, layer=args.layer,
                                batch_size=args.batch_size, cache=cache,
                                progress=_progress_factory(args.quiet))
    total = time.perf_counter() - t0
    for msg in res["warnings"]:
        print(f"warning: {msg}", file=sys.stderr)
    print(json.dumps(_clean(res["values"]), indent=2))

    desc = ext.describe()
    n_fake = res["inputs"]["n_fake"]
    rows = [metric_row(key, value, higher_is_better=res["specs"][reg]["higher_is_better"], n=n_fake,
                       features=ext.name, layer=layer, resize=ext.resize)
            for key, value, layer, reg in res["rows"]]
    config = {"real": str(args.real), "fake": str(args.fake), "features": ext.name, "weights": args.weights,
              "resize": ext.resize, "layer": args.layer or ext.default_layer, "metrics": names,
              "batch_size": args.batch_size, "image_size": args.image_size, "dtype": args.dtype}
    identity = {"metrics": names, "layer": config["layer"], "image_size": args.image_size,
                "extractor": {k: desc[k] for k in ("extractor", "preprocessing", "implementation", "features_version")},
                "weights_sha256": desc["weights"].get("sha256"),
                "real": res["inputs"]["real_content_sha256"], "fake": res["inputs"]["fake_content_sha256"]}
    results = {
        "schema_version": SCHEMA_VERSION,
        "run_id": new_run_id(EXPERIMENT),
        "experiment": EXPERIMENT,
        "experiment_version": EXPERIMENT_VERSION,
        "description": f"dlc-bench metrics: {', '.join(names)} of --fake against --real under {ext.name}",
        "preset": None,
        "config": config,
        "config_hash": hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16],
        "code_version": _code_version(),
        "git": git_info(),
        "environment": environment(ext.device, ext.dtype),
        "seeds": [],
        "started_at": started,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "timings": {**res["timings"], "total": round(total, 3)},
        "stages": [],
        "cache": {"hits": cache.hits, "misses": cache.misses} if cache else {"hits": 0, "misses": 0},
        "metrics": rows,
        "metric_specs": res["specs"],
        "features": desc,
        "inputs": res["inputs"],
        "figures": [],
        "artifacts": [],
        "notes": [f"features: {ext.name}, resize {ext.resize}, weights sha256 "
                  f"{(desc['weights'].get('sha256') or 'none')[:12]}; n_real={res['inputs']['n_real']}, "
                  f"n_fake={n_fake}", *res["warnings"]],
        "display": {"metric_order": [r[0] for r in res["rows"]]},
    }
    store = None
    if not args.no_store:
        from .store import RunStore

        store = RunStore(args.store)
    out_dir = None
    if args.out:
        from reports.html import render_run

        out_dir = ensure_writable_dir(Path(args.out), "output directory", "--out DIR")
        write_results(out_dir, results)
        render_run(out_dir)
        print(f"results: {out_dir / 'results.json'}", file=sys.stderr)
        print(f"report:  {(out_dir / 'report.html').resolve()}", file=sys.stderr)
    if store is not None:
        store.record(results, str(out_dir.resolve()) if out_dir is not None else None)
    return 0


def cmd_ref_stats(args: argparse.Namespace) -> int:
    from .refstats import build_ref_stats, save_ref_stats

    out = Path(args.out).expanduser()
    if out.suffix != ".npz":
        raise UserError(f"--out {out} must end in .npz (the ADM reference statistics format)")
    _check_writable_target(out, "output file", "--out FILE", is_dir=False)
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

    p.add_argument("--features", default=features_default, required=features_default is None,
                   help="feature extractor: inception-v3-compat, effnet-lite0, dinov2-vitl14, pixels, ...")
    p.add_argument("--weights", default=None, help="local weights file or directory of the extractor")
    p.add_argument("--resize", default=None, choices=[m for m in RESIZE_MODES if m != "none"],
                   help="legacy-tf (TF1 bilinear, as ADM/torch-fidelity) or clean (clean-fid PIL bicubic); "
                        "default: the extractor's")
    p.add_argument("--layer", default=None, help="feature layer for fid/kid/pr/dc/vendi (default: the extractor's)")
    p.add_argument("--image-size", type=int, default=None, metavar="N",
                   help="resize every image of a folder to NxN on reading (mixed-size folders)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:1, ...")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"], help="extractor compute dtype")
    p.add_argument("--cache-dir", default=None, help="feature cache (default: $DLC_BENCH_CACHE or user cache dir)")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the feature cache")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def add_metrics_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("metrics", help="metrics of generated images against real images or reference statistics",
                       description="Compute metrics of --fake against --real; prints JSON, records the run.")
    p.add_argument("--real", required=True, help="image folder, .npz/.npy of uint8 images, or reference stats .npz")
    p.add_argument("--fake", required=True, help="image folder or .npz/.npy of uint8 images")
    p.add_argument("--metrics", required=True, help=f"comma-separated: {', '.join(CLI_METRICS)}")
    _add_extractor_options(p, None)
    p.add_argument("--out", default=None, help="write results.json, results.csv and report.html here")
    p.add_argument("--store", default=None, help="run-store SQLite file (default: $DLC_BENCH_STORE or user data dir)")
    p.add_argument("--no-store", action="store_true", help="do not record the run in the run store")

    p = sub.add_parser("ref-stats", help="build ADM-format reference statistics (.npz: mu, sigma, mu_s, sigma_s)")
    p.add_argument("images", help="image folder or .npz/.npy of uint8 images")
    p.add_argument("--out", required=True, help="output .npz file")
    _add_extractor_options(p, "inception-v3-compat")


METRICS_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {"metrics": cmd_metrics,
                                                                     "ref-stats": cmd_ref_stats}
