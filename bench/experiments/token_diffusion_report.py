"""Figures and findings of `token-diffusion` (no stage depends on this module: editing it retrains nothing)."""
from __future__ import annotations

from typing import Any, Mapping

import torch

from ..figures import grid_panels, interval_panels

# the seed's Table 1 (ImageNet 256, VQGAN tokens, ~200k iterations, FID)
SEED_FID = {"absorb": 16.2, "uniform": 20.7, "absorb-2d": 14.4, "maskgit": 6.2}
# (variant, against): the differences FD(variant) − FD(against) the report decides on
PAIRS = (("absorb-2d", "absorb"), ("absorb", "uniform"), ("absorb-2d", "uniform"), ("maskgit", "absorb"),
         ("maskgit", "uniform"), ("maskgit", "absorb-2d"))
# the seed's orderings: each is a list of pairs whose FD difference the seed finds negative
CLAIMS = (("Absorb-2D < Absorb (2-D RoPE helps; seed 14.4 vs 16.2)", (("absorb-2d", "absorb"),)),
          ("Absorb < Uniform (the absorbing graph beats the uniform one; seed 16.2 vs 20.7)", (("absorb", "uniform"),)),
          ("MaskGIT < every SEDD variant (seed 6.2 vs 14.4–20.7)",
           (("maskgit", "absorb"), ("maskgit", "uniform"), ("maskgit", "absorb-2d"))))


def verdict(gaps: Mapping[tuple[str, str], tuple[float, float, float]], pairs) -> str:
    """'reproduced' when every difference's interval lies below 0, 'contradicted' when one lies above 0,
    'not reproduced (undecided)' otherwise, 'not measured' when a pair is missing."""
    if any(p not in gaps for p in pairs):
        return "not measured"
    if any(gaps[p][1] > 0 for p in pairs):
        return "contradicted"
    if all(gaps[p][2] < 0 for p in pairs):
        return "reproduced"
    return "not reproduced (undecided: an interval contains 0)"


def token_findings(fd_steps: Mapping[int, dict], fd_key: str) -> list[str]:
    """Per seed, each claim of the seed with its verdict and the paired differences behind it."""
    out = []
    for seed, res in fd_steps.items():
        gaps = res["gaps"]
        for claim, pairs in CLAIMS:
            shown = "; ".join(f"{a} − {b} {gaps[(a, b)][0]:+.2f} [{gaps[(a, b)][1]:+.2f}, {gaps[(a, b)][2]:+.2f}]"
                              for a, b in pairs if (a, b) in gaps)
            out.append(f"Seed {seed}: {claim} — {verdict(gaps, pairs)} at this scale"
                       + (f" ({fd_key}, paired, 95 %: {shown})." if shown else "."))
        order = sorted(res["values"], key=res["values"].get)
        out.append(f"Seed {seed}: {fd_key} ordering " + " < ".join(f"{v} {res['values'][v]:.2f}" for v in order)
                   + f"; the seed's: " + " < ".join(f"{v} {SEED_FID[v]}" for v in sorted(SEED_FID, key=SEED_FID.get))
                   + ".")
    return out


def _series(rows: list[dict], metric: str, seed: int, variant: str) -> list[tuple]:
    return sorted((r["steps"], r["value"], *(r["value"] if r.get(k) is None else r[k] for k in ("ci_low", "ci_high")))
                  for r in rows if r["metric"] == metric and r.get("seed") == seed and r.get("variant") == variant
                  and r.get("steps") is not None and r.get("reader", "classifier") == "classifier")


def by_class(images: torch.Tensor, labels: torch.Tensor, n_classes: int, per_class: int) -> torch.Tensor:
    """The first `per_class` images of each of the first ten classes, class after class (one row per class)."""
    rows = []
    for k in range(min(n_classes, 10)):                       # at most ten rows
        idx = torch.nonzero(labels == k).flatten()[:per_class]
        pad = torch.full((per_class - len(idx), *images.shape[1:]), 255, dtype=torch.uint8)
        rows.append(torch.cat([images[idx], pad]))
    return torch.cat(rows)


def add_figures_and_notes(ctx: Any, cfg: Any, grids: Mapping[str, tuple], class_names: list[str],
                          fd_steps: Mapping[int, dict], fd_key: str) -> None:
    rows = list(ctx.metrics)
    s0 = ctx.seeds[0]
    with ctx.timer("figures"):
        if len(cfg.steps_list) > 1:
            floors = {r["variant"]: r["value"] for r in rows if r["metric"] == fd_key and r.get("seed") == s0
                      and r.get("variant") in ("vq-recon", "real-train")}
            title = f"{fd_key} (95 % bootstrap)" + "".join(f"; {k} {v:.3g}" for k, v in floors.items())
            panels = [(title, {v: _series(rows, fd_key, s0, v) for v in cfg.variants}),
                      ("class agreement (classifier)", {v: _series(rows, "class_agreement", s0, v)
                                                        for v in cfg.variants})]
            fig = interval_panels(panels, xlabel="sampling steps", ylabel="", logx=True)
            for ax in fig.axes:
                ax.set_xticks(cfg.steps_list, [str(s) for s in cfg.steps_list])
                ax.minorticks_off()
            ctx.add_figure(fig, "fd_vs_steps", f"{fd_key} and class agreement against the number of sampling steps "
                           f"per variant (seed {s0}, CFG w = {cfg.sampling.cfg_scale}); error bars are 95 % intervals "
                           "(bootstrap over samples; Wilson for agreement).")
        if grids:
            K = len(class_names)
            sets = {name: by_class(imgs, labels, K, cfg.eval.per_class) for name, (imgs, labels) in grids.items()}
            ctx.add_figure(grid_panels(sets, cfg.eval.per_class, panel_width=4.0), "samples_by_class",
                           f"Samples per class (one row per class: {', '.join(class_names)}), "
                           f"{cfg.sampling.steps} steps, seed {s0}; vq-recon: the tokenizer's reconstructions of "
                           "held-out images of each class.")
    tk = cfg.tokenizer
    source = (f"pretrained {tk.pretrained}" + (f"/{tk.subfolder}" if tk.subfolder else "") if tk.pretrained else
              f"VQModel trained here ({tk.train.steps} steps; {tk.vq.grid}×{tk.vq.grid} tokens, codebook "
              f"{tk.vq.num_vq_embeddings})")
    ctx.note(f"Tokenizer: {source}. Every variant: SEDD-{cfg.net.model} network"
             + (f" (hidden {cfg.net.hidden}, {cfg.net.n_blocks} blocks)" if cfg.net.hidden else "")
             + f", {cfg.net.train.steps} steps of batch {cfg.net.train.batch_size}, label dropout "
             f"{cfg.net.train.label_dropout}; sampled in {cfg.sampling.steps} steps with guidance w = {cfg.sampling.cfg_scale}"
             f" (s_c^(1+w)·s_u^(−w)); {cfg.eval.n_samples} samples per variant, sample i of class i mod "
             f"{len(class_names)}. Class agreement is read by a logistic-regression classifier on {cfg.eval.features} "
             "features of real training images (its held-out accuracy is the ceiling row label). Sampling seconds are "
             "what the samples took when they were drawn (cached samples keep their first cost).")
    for sentence in token_findings(fd_steps, fd_key):
        ctx.note(sentence)
    if not fd_steps:
        ctx.note(f"No finding: eval.bootstrap = {cfg.eval.bootstrap} gives no paired intervals (set it to ≥ 50) or "
                 "fewer than two variants ran.")
