"""toy-mixture's figures (samples, KL against N, score fields) and its computed notes."""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

from toy import data as tdata, diffusion as tdiff, figures

from ..aggregate import aggregate_over_seeds
from ..figures import interval_panels
from ..run import RunContext

if TYPE_CHECKING:
    from .toy_mixture_config import ToyMixtureConfig


def add_figures(ctx: RunContext, cfg: ToyMixtureConfig, sch: tdiff.Schedule, figure_data: dict, figure_samples: dict,
                score_models: dict) -> None:
    with ctx.timer("figures"):
        ctx.add_figure(figures.samples_grid(figure_data, figure_samples, cfg.variants, cfg.n_modes,
                                            cfg.figure_points), "samples",
                       f"Model samples (colour) over true samples (grey), seed {ctx.seeds[0]} (paper Fig. 2a–c, 11).")
        ctx.add_figure(kl_figure(aggregate_over_seeds(ctx.metrics), cfg.variants), "kl_vs_modes",
                       f"KL against N; mean and 95 % t-interval over {len(ctx.seeds)} seed(s). Left: the paper's "
                       "KDE estimate of KL(p_data‖p_model) with the estimator's floor on true samples (paper Fig. 2d); "
                       "middle: the same after subtracting the floor; right: the floor-corrected symmetric KL "
                       "(forward + reverse), the measure the finding rests on (the forward estimate cannot see "
                       "structure below Silverman's bandwidth; the reverse direction can).")
        if score_models:
            n = cfg.score_n_modes
            centers = tdata.grid_centers(n, cfg.spacing)
            lim = np.abs(centers).max() + 1.5
            ticks = np.linspace(-lim, lim, 120)
            X, Y = np.meshgrid(ticks, ticks)
            fields = []
            for variant, (model, scale) in score_models.items():
                pts = torch.as_tensor(np.stack([X.ravel(), Y.ravel()], 1) / scale, dtype=torch.float32,
                                      device=ctx.device)
                c = None
                title = f"unconditional, N={n}"
                if variant == "oracle":
                    c = torch.full((len(pts),), cfg.score_condition % n, dtype=torch.long, device=ctx.device)
                    title = f"conditional (oracle c={cfg.score_condition % n}), N={n}"
                s = tdiff.score(model, pts, cfg.score_t, sch, c).cpu().numpy() / scale
                fields.append((title + f", t={cfg.score_t}", X, Y, s.reshape(*X.shape, 2)))
            ctx.add_figure(figures.score_fields(fields, centers), "score_field",
                           "Magnitude of the estimated score (log10, heatmap) and its direction (arrows) "
                           "(paper Fig. 2e–f): the conditional field points straight at its mode.")


KL_PANELS = (("kl_forward", "KL(p_data ‖ p_model), KDE estimate"),
             ("kl_excess", "KL excess over the estimator floor"),
             ("kl_symmetric", "symmetric KL (forward + reverse), floor-corrected"))
FLOOR = "floor (true samples)"


def kl_figure(agg: list[dict], variants: Sequence[str]):
    """The KL_PANELS metrics against N from seed-aggregated rows: one line per variant with its 95 % interval,
    the estimator's floor (kl_floor, the data rows) beside the forward estimate."""
    def points(metric: str, variant: str) -> list[tuple]:
        return [(r["n_modes"], r["value"], r["ci_low"], r["ci_high"]) for r in agg
                if r["metric"] == metric and r.get("variant") == variant and r.get("seed") is None]

    panels = [(title, {v: points(metric, v) for v in variants}) for metric, title in KL_PANELS]
    panels[0][1][FLOOR] = points("kl_floor", "data")
    return interval_panels(panels, xlabel="number of modes N", ylabel="nats", dashed=(FLOOR,), logx=True,
                           colors={**figures.VARIANT_COLORS, FLOOR: figures.VARIANT_COLORS["data"]})


def add_notes(ctx: RunContext, cfg: ToyMixtureConfig) -> None:
    agg = {(r["metric"], r.get("variant"), r.get("n_modes")): r for r in aggregate_over_seeds(ctx.metrics)}
    ctx.note("kl_floor is the KDE-KL estimator applied to true samples: its bias, large once Silverman's bandwidth "
             "exceeds the mode spacing. kl_excess = kl_forward − kl_floor (the paper's protocol, floor-corrected); "
             "kl_excess_cv uses one bandwidth per (N, seed) chosen by likelihood cross-validation on held-out true "
             "samples; kl_symmetric adds the floor-corrected reverse KL.")
    lo, hi = min(cfg.n_modes), max(cfg.n_modes)
    for metric in ("kl_excess", "kl_excess_cv", "kl_symmetric"):
        parts = []
        for v in cfg.variants:
            a, b = agg.get((metric, v, lo)), agg.get((metric, v, hi))
            if a and b and lo != hi:
                parts.append(f"{v} {a['value']:.3f} → {b['value']:.3f} [{b['ci_low']:.3f}, {b['ci_high']:.3f}]")
        if parts:
            ctx.note(f"{metric} from N={lo} to N={hi} (mean, and 95 % CI at N={hi}, over {len(ctx.seeds)} "
                     f"seed(s)): " + "; ".join(parts) + ".")
    if "unconditional" in cfg.variants and len(cfg.n_modes) > 1:
        for metric in ("kl_excess", "kl_excess_cv", "kl_symmetric"):
            vals = [agg.get((metric, "unconditional", n)) for n in sorted(cfg.n_modes)]
            if all(vals):
                others = [agg.get((metric, v, hi)) for v in cfg.variants if v != "unconditional"]
                below = all(o and o["ci_high"] < vals[-1]["ci_low"] for o in others) if others else False
                ctx.note(f"Finding ({metric}): unconditional {trend(vals, lo, hi)}; at N={hi} the conditional "
                         f"variants are {'below it with non-overlapping 95 % intervals' if below else 'not all clearly below it'}.")
    ctx.note(f"Sampling: {cfg.sample_steps} respaced ancestral steps of {cfg.diffusion_steps}"
             + (", x̂0 clamped to the training data's bounding box." if cfg.clip_x0 else "."))


def trend(vals: list[dict], lo: int, hi: int) -> str:
    """What the seed-aggregated rows `vals` (one per N, increasing) support about growth with N: a claim of growth
    needs intervals that separate, not only means that increase."""
    steps = list(zip(vals, vals[1:]))
    intervals = all(r.get("ci_low") is not None and r["ci_high"] > r["ci_low"] for r in vals)
    if not all(b["value"] > a["value"] for a, b in steps):
        return "does not grow monotonically with N"
    if not intervals:
        return "grows monotonically with N in its mean (no intervals: one seed)"
    if all(b["ci_low"] > a["ci_high"] for a, b in steps):
        return "grows with N, each N's 95 % interval above the previous one's"
    return ("grows monotonically with N in its mean; the intervals of neighbouring N overlap, "
            + (f"but N={hi} is above N={lo} with non-overlapping 95 % intervals" if vals[-1]["ci_low"] >
               vals[0]["ci_high"] else f"and N={hi} is not clearly above N={lo}"))

