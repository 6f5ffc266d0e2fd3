"""Figures and report notes of `dlc-pipeline` (no stage depends on this module: editing it retrains nothing)."""
from __future__ import annotations

from typing import Any

import torch

from ..figures import grid_panels, image_grid


def add_figures_and_notes(ctx: Any, cfg: Any, sets: dict, compose: torch.Tensor | None, fd_key: str,
                          desc: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with ctx.timer("figures"):
        ctx.add_figure(grid_panels(sets, 8), "samples",
                       f"First {cfg.eval.grid} images of each set, seed {ctx.seeds[0]}: held-out real images; DiT "
                       "samples conditioned on DLCs drawn from the SEDD prior (dlc); unconditional DiT; DiT "
                       "conditioned on the DLCs of the held-out images shown first (dlc-recon).")
        if "dlc-recon" in sets:   # source row above its reconstruction row, 8 pairs per row
            src, rec = sets["real (test)"], sets["dlc-recon"]
            k = min(len(src), len(rec)) // 8 * 8
            pairs = torch.stack([src[:k].reshape(-1, 8, *src.shape[1:]), rec[:k].reshape(-1, 8, *rec.shape[1:])],
                                dim=1).flatten(0, 2)                            # (2k, 3, H, W)
            fig, ax = plt.subplots(figsize=(3.4, 0.45 * 2 * k // 8 + 0.4))
            ax.imshow(image_grid(pairs, 8), interpolation="nearest")
            ax.axis("off")
            ax.set_title("held-out image (odd rows) | DiT(its DLC) below", fontsize=9)
            ctx.add_figure(fig, "reconstructions", "Encoder–decoder view (dlc-recon): each held-out image with, "
                           "right below it, a DiT sample conditioned on that image's DLC (same noise as the other "
                           "variants' samples).")
        if compose is not None:
            fig, ax = plt.subplots(figsize=(3.2, 1.1 * cfg.eval.n_compose))
            ax.imshow(image_grid(compose, 3), interpolation="nearest")
            ax.axis("off")
            ax.set_title("a | b | DiT(mix of DLC a, b)", fontsize=9)
            ctx.add_figure(fig, "composition", "Composition (Sec. 4.3): each row is two held-out images and a DiT "
                           "sample conditioned on a DLC whose positions are taken at random from either image's DLC.")

    rows = [r for r in ctx.metrics if all(r.get(k) == v for k, v in ctx.row_labels.items())]   # this sweep point
    fd = {r.get("variant"): r["value"] for r in rows if r.get("seed") == ctx.seeds[0] and r["metric"] == fd_key}
    pre = desc["preprocessing"]
    resize = pre["resize"]["mode"] if isinstance(pre.get("resize"), dict) else pre.get("resize")
    ctx.note(f"{fd_key}: Fréchet distance on {desc['extractor']} features ({resize} resize to "
             f"{pre.get('size') or pre['resize'].get('size')} px, {pre['normalize']}) of "
             f"{cfg.eval.n_samples} images per set against the {cfg.data.n_test} held-out test images"
             + (" — EfficientNet-Lite0 features (ImageNet-trained, shipped in a wheel), so not comparable with "
                "published FIDs" if fd_key == "fd_effnet" else "") + ".")
    if cfg.eval.bootstrap:
        ctx.note(f"{fd_key} intervals: 95 % percentile bootstrap over the generated set ({cfg.eval.bootstrap} "
                 "resamples; the reference set fixed). Resampled duplicates inflate a Fréchet distance, so an "
                 "interval can sit above its point value (real-train): compare intervals with intervals. They do "
                 "not cover training-seed noise.")
    if "real-train" in fd:
        ctx.note(f"real-train is the floor of the estimator at this sample size: {fd_key} between "
                 f"{cfg.eval.n_samples} train images and the test images = {fd['real-train']:.3g}.")
    for seed in ctx.seeds:
        for sentence in conditioning_findings(rows, fd_key, seed):
            ctx.note(sentence)
    for sentence in gap_findings(rows, fd_key, cfg.vary):
        ctx.note(sentence)
    ps = cfg.prior_sampling
    ctx.note(f"Prior: SEDD-{cfg.prior.model} ({cfg.prior.train.steps} steps), sampled with '{ps.sampler}' in "
             f"{ps.steps} steps (η={ps.eta}, t0={ps.t0}, t1={ps.t1}). code_tv is the mean per-position total "
             "variation between token marginals and the held-out codes (real-train: train codes, the floor); "
             "code_copy_frac the fraction of sampled DLCs identical to a training DLC.")
    objective = {"eps": "DDPM ε-prediction with learned σ", "velocity": "flow matching, velocity prediction",
                 "x0": "flow matching, x0-prediction with the velocity loss"}[cfg.dit.objective]
    ctx.note(f"DiT: {cfg.dit.model} on {cfg.dit.vae} inputs ({objective}), {cfg.dit.steps} steps of batch "
             f"{cfg.dit.batch_size}; {cfg.dit_sampling.steps} {cfg.dit_sampling.sampler} steps, CFG scale "
             f"{cfg.dit_sampling.cfg_scale}. factor_agreement reads each sample's factors as its nearest exact "
             "render (shapes) and compares them with the factors it was conditioned on (dlc-recon: its source "
             "image's; real-train: its own, the reader's check, 1 when exact); code_swap_ratio is the held-out "
             "clean-image error with another image's code (or the null code) over that with the true code, per "
             "noise bin, at the end of training.")


def _one(rows: list[dict], metric: str, **labels: Any) -> dict | None:
    hits = [r for r in rows if r["metric"] == metric and all(r.get(k) == v for k, v in labels.items())]
    return hits[0] if len(hits) == 1 else None


def _ci(r: dict) -> str:
    return f"{r['value']:.3g}" + (f" [{r['ci_low']:.3g}, {r['ci_high']:.3g}]" if r.get("ci_low") is not None else "")


def conditioning_findings(rows: list[dict], fd_key: str, seed: int) -> list[str]:
    """Computed sentences on whether the DiT obeys its code (seed `seed`): FD of dlc / dlc-recon against the
    unconditional DiT with their 95 % intervals, dlc-recon's agreement with its source against the probe
    ceilings and chance, the code-swap gap at the highest-noise bin, and how many samples draw an object."""
    out = []
    unc = _one(rows, fd_key, variant="unconditional", seed=seed)
    for v in ("dlc", "dlc-recon"):
        r = _one(rows, fd_key, variant=v, seed=seed)
        if r is None or unc is None:
            continue
        lower = r["value"] < unc["value"]
        both = r.get("ci_high") is not None and unc.get("ci_low") is not None
        verdict = ("lower, with non-overlapping 95 % intervals" if lower and both and r["ci_high"] < unc["ci_low"]
                   else "lower, but the 95 % intervals overlap" if lower and both else "lower (no intervals)" if lower
                   else "NOT lower")
        out.append(f"Finding (seed {seed}): {fd_key} of {v} {_ci(r)} against unconditional {_ci(unc)}: {verdict}.")
    agree = [r for r in rows if r["metric"] == "factor_agreement" and r.get("variant") == "dlc-recon"
             and r.get("seed") == seed and r.get("factor") != "all"]
    if agree:
        parts = []
        for r in agree:
            probe = _one(rows, "probe_top1", representation="dlc", factor=r["factor"], seed=seed)
            above = r["ci_low"] is not None and r["ci_low"] > r["chance"]     # the whole interval above chance
            parts.append(f"{r['factor']} {_ci(r)} ({'above' if above else 'NOT above'} chance {r['chance']:.2f}"
                         + (f", probe ceiling {probe['value']:.2f}" if probe else "") + ")")
        out.append(f"Finding (seed {seed}): agreement of dlc-recon samples with their source image's factors — "
                   + "; ".join(parts) + ".")
    gap = [r for r in rows if r["metric"] == "code_swap_ratio" and r.get("seed") == seed
           and r.get("conditioning", "dlc") == "dlc"]
    if gap:
        top = max(r["t_bin"] for r in gap)
        sh = _one(gap, "code_swap_ratio", t_bin=top, against="shuffled")
        nu = _one(gap, "code_swap_ratio", t_bin=top, against="null")
        if sh and nu:
            out.append(f"Finding (seed {seed}): at the highest noise (t in {top}) the held-out clean-image error "
                       f"with another image's code is {sh['value']:.2f}× that with the true code (null code: "
                       f"{nu['value']:.2f}×) — {'the DiT uses its code' if sh['value'] >= 3 else 'a weak gap'} "
                       "(1× = the code is ignored).")
    drawn = [r for r in rows if r["metric"] == "object_frac" and r.get("seed") == seed]
    if drawn:
        out.append(f"Samples drawing an object (seed {seed}): "
                   + ", ".join(f"{r['variant']} {r['value']:.2f}" for r in drawn) + ".")
    return out


def gap_findings(rows: list[dict], fd_key: str, vary: tuple[str, ...]) -> list[str]:
    """With two or more seeds: per conditioned variant, FD(variant) − FD(unconditional) paired by seed — the mean
    with its 95 % t-interval over seeds and a verdict (below / above / undecided: the interval holds 0)."""
    from bench.aggregate import t_interval

    out = []
    for v in dict.fromkeys(r["variant"] for r in rows if r["metric"] == f"{fd_key}_gap"):
        gaps = sorted((r["seed"], r["value"]) for r in rows if r["metric"] == f"{fd_key}_gap"
                      and r.get("variant") == v and r.get("seed") is not None)
        if len(gaps) < 2:
            continue
        m, lo, hi = t_interval([g for _, g in gaps])
        verdict = ("below the unconditional DiT" if hi < 0 else "above the unconditional DiT" if lo > 0
                   else "undecided (the interval holds 0)")
        out.append(f"Finding ({len(gaps)} seeds, each retraining {' + '.join(vary)}): {fd_key}({v}) − "
                   f"{fd_key}(unconditional), paired by seed = {m:+.3g} [95 % t-interval {lo:+.3g}, {hi:+.3g}]: "
                   f"{verdict}; per seed " + ", ".join(f"{s}: {g:+.3g}" for s, g in gaps) + ".")
    return out

