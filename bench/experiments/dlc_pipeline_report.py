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
        if compose is not None:
            fig, ax = plt.subplots(figsize=(3.2, 1.1 * cfg.eval.n_compose))
            ax.imshow(image_grid(compose, 3), interpolation="nearest")
            ax.axis("off")
            ax.set_title("a | b | DiT(mix of DLC a, b)", fontsize=9)
            ctx.add_figure(fig, "composition", "Composition (Sec. 4.3): each row is two held-out images and a DiT "
                           "sample conditioned on a DLC whose positions are taken at random from either image's DLC.")

    fd = {r.get("variant"): r["value"] for r in ctx.metrics if r.get("seed") == ctx.seeds[0] and r["metric"] == fd_key}
    pre = desc["preprocessing"]
    resize = pre["resize"]["mode"] if isinstance(pre.get("resize"), dict) else pre.get("resize")
    ctx.note(f"{fd_key}: Fréchet distance on {desc['extractor']} features ({resize} resize to "
             f"{pre.get('size') or pre['resize'].get('size')} px, {pre['normalize']}) of "
             f"{cfg.eval.n_samples} images per set against the {cfg.data.n_test} held-out test images"
             + (" — EfficientNet-Lite0 features (ImageNet-trained, shipped in a wheel), so not comparable with "
                "published FIDs" if fd_key == "fd_effnet" else "") + ".")
    if "real-train" in fd:
        ctx.note(f"real-train is the floor of the estimator at this sample size: {fd_key} between "
                 f"{cfg.eval.n_samples} train images and the test images = {fd['real-train']:.3g}.")
    if "dlc" in fd and "unconditional" in fd:
        better = fd["dlc"] < fd["unconditional"]
        ctx.note(f"Finding (seed {ctx.seeds[0]}): DLC-conditioned generation (c ~ SEDD, x ~ DiT(c)) reaches "
                 f"{fd_key} = {fd['dlc']:.3g} against {fd['unconditional']:.3g} for the unconditional DiT of the same "
                 f"size and training budget — {'lower, as the paper reports' if better else 'NOT lower here'}"
                 + (f"; with the held-out images' own DLCs (dlc-recon) {fd['dlc-recon']:.3g}" if "dlc-recon" in fd
                    else "") + ".")
    ps = cfg.prior_sampling
    ctx.note(f"Prior: SEDD-{cfg.prior.model} ({cfg.prior.train.steps} steps), sampled with '{ps.sampler}' in "
             f"{ps.steps} steps (η={ps.eta}, t0={ps.t0}, t1={ps.t1}). code_tv is the mean per-position total "
             "variation between token marginals and the held-out codes (real-train: train codes, the floor); "
             "code_copy_frac the fraction of sampled DLCs identical to a training DLC.")
    ctx.note(f"DiT: {cfg.dit.model} on {cfg.dit.vae} inputs, {cfg.dit.steps} steps of batch {cfg.dit.batch_size}; "
             f"{cfg.dit_sampling.steps} {cfg.dit_sampling.sampler} steps, CFG scale {cfg.dit_sampling.cfg_scale}.")
