"""Figures and findings of `eta-sweep` (no stage depends on this module: editing it retrains nothing)."""
from __future__ import annotations

from typing import Any, Mapping

from ..figures import grid_panels, interval_panels

PAPER = "the paper (ImageNet 256, DLC 512×256, 4096 SEDD steps, remasking in [0.3, 0.55]) finds a U-shaped curve " \
        "with its optimum at η = 0.01"


def add_figures_and_notes(ctx: Any, cfg: Any, grids: Mapping[float, Any], optima: Mapping[int, dict],
                          fd_key: str) -> None:
    rows = [r for r in ctx.metrics if r.get("eta") is not None or r.get("variant") == "real-train"]

    def series(metric: str, variant: str = "dlc", seed: int | None = None) -> list[tuple]:
        """[(η, value, ci_low, ci_high)] of one seed's rows (no interval: the value)."""
        seed = ctx.seeds[0] if seed is None else seed
        return [(r["eta"], r["value"], *(r["value"] if r.get(k) is None else r[k] for k in ("ci_low", "ci_high")))
                for r in rows if r["metric"] == metric and r.get("variant") == variant and r.get("seed") == seed
                and r.get("eta") is not None]

    etas = list(cfg.etas)
    positive = [e for e in etas if e > 0]
    with ctx.timer("figures"):
        fd_series = {f"dlc seed={s}": series(fd_key, seed=s) for s in ctx.seeds}
        floor = [r["value"] for r in rows if r["metric"] == fd_key and r.get("variant") == "real-train"
                 and r.get("seed") == ctx.seeds[0]]
        title = f"{fd_key} (95 % bootstrap)" + (f"; real-train floor {floor[0]:.3g}" if floor else "")
        panels = [(title, fd_series),            # the floor in the title: drawn, it would flatten the curve
                  ("code_tv: per-position TV to held-out codes",
                   {f"seed={s}": series("code_tv", seed=s) for s in ctx.seeds}
                   | {"train codes (floor)": series("code_tv", "real-train")})]
        if optima:
            panels.append((f"{fd_key}(η) − {fd_key}(0), paired",
                           {f"seed={s}": series(f"{fd_key}_gap", seed=s) for s in optima}))
        ctx.add_figure(interval_panels(panels, xlabel="remasking probability η", ylabel="",
                                       dashed=("train codes (floor)",),
                                       symlog=min(positive) if positive else 0.0),
                       "fd_vs_eta", f"{fd_key}, the codes' total variation and the paired FD difference to η = 0 "
                       f"against η (log axis, linear below {min(positive) if positive else 0}), seed "
                       f"{ctx.seeds[0]} first; error bars are 95 % bootstrap intervals over the generated samples.")
        if grids:
            best = etas[optima[ctx.seeds[0]]["best"]] if optima else None
            shown = dict.fromkeys(e for e in (etas[0], best, etas[-1]) if e is not None)
            ctx.add_figure(grid_panels({f"η = {e}" + (" (best)" if e == best else ""): grids[e] for e in shown}, 8),
                           "samples_by_eta", f"First {cfg.eval.grid} samples x ~ DiT(c), c ~ SEDD with remasking "
                           f"probability η, seed {ctx.seeds[0]} (the same noise in every panel).")

    ps = cfg.prior_sampling
    ctx.note(f"Prior: SEDD-{cfg.prior.model} ({cfg.prior.train.steps} steps), sampled with the remasking corrector in "
             f"{ps.steps} steps, remasking each unmasked token with probability η for {ps.t0} < t < {ps.t1} (about "
             f"{round(ps.steps * (ps.t1 - ps.t0))} steps); DiT {cfg.dit.model}, {cfg.dit_sampling.steps} "
             f"{cfg.dit_sampling.sampler} steps, CFG {cfg.dit_sampling.cfg_scale}; {cfg.eval.n_samples} samples per η "
             "with the same sample indices (the same DiT and prior noise) at every η.")
    for seed, opt in optima.items():
        for sentence in eta_findings(etas, opt, fd_key, seed, cfg.eval.bootstrap,
                                     round(ps.steps * (ps.t1 - ps.t0))):
            ctx.note(sentence)
    if not optima:
        ctx.note(f"No finding: eval.bootstrap = {cfg.eval.bootstrap} gives no intervals (set it to ≥ 50).")


def _fmt(x: float) -> str:
    return f"{x:+.3g}"


def eta_findings(etas: list[float], opt: Mapping, fd_key: str, seed: int, n_resamples: int,
                 window_steps: int = 0) -> list[str]:
    """The sweep's finding as sentences computed from `bench.aggregate.grid_optimum`'s result."""
    b = opt["best"]
    tied = [etas[i] for i in opt["tied"] if i != b]
    d0 = opt["vs_first"]
    ends = "; ".join(f"η = {etas[i]}: {_fmt(opt['vs_best'][i][0])} [{_fmt(opt['vs_best'][i][1])}, "
                     f"{_fmt(opt['vs_best'][i][2])}] above it" for i in dict.fromkeys((0, len(etas) - 1)) if i != b)
    shape = {"U-shaped": f"{fd_key} against η is U-shaped: the lowest value, at η = {etas[b]}, is significantly "
                         f"below both ends of the grid ({ends})",
             "undecided": f"{fd_key} is lowest at η = {etas[b]}, inside the grid, but not significantly below both "
                          f"ends ({ends}): a U-shape is not established",
             "monotone": f"{fd_key} against η is not U-shaped: it is lowest at an end of the grid, η = {etas[b]} "
                         f"({ends})",
             "flat": f"{fd_key} does not depend on η measurably: every η is within the interval of the best, "
                     f"η = {etas[b]} ({ends})"}[opt["shape"]]
    out = [f"Seed {seed}: {shape}; η = {etas[b]} is the best in {100 * opt['best_frac'][b]:.0f} % of "
           f"{n_resamples} paired resamples" + (f", and η = {tied[0]} is not significantly worse" if len(tied) == 1
                                                 else f", and η ∈ {{{', '.join(map(str, tied))}}} are not "
                                                 "significantly worse" if tied else
                                                 ", every other η significantly worse") + "."]
    better = [f"{etas[i]} ({_fmt(d0[i][0])} [{_fmt(d0[i][1])}, {_fmt(d0[i][2])}])" for i in range(1, len(etas))
              if d0[i][2] < 0]
    out.append(f"Seed {seed}: remasking " + (f"lowers {fd_key} significantly against η = 0 at η = " + ", ".join(better)
                                             if better else f"lowers {fd_key} significantly at no η of the grid")
               + " (paired differences, 95 %).")
    u = opt["shape"] == "U-shaped"
    at = u and 0.01 in [etas[i] for i in opt["tied"]]
    out.append(f"Paper claim (Fig. 8: {PAPER}) — a U-shaped curve: {'reproduced' if u else 'not reproduced'} at this "
               f"scale on seed {seed}; its optimum at η = 0.01: {'reproduced' if at else 'not reproduced'} (here "
               f"η = {etas[b]}" + (f", η ∈ {{{', '.join(map(str, tied))}}} within its interval" if tied else "") + ")."
               + (f" Counted in expected remaskings of a token over the window (η × its {window_steps} steps), the "
                  f"optimum here is {etas[b] * window_steps:.3g}; the paper's η = 0.01 over its ~1024 steps is 10."
                  if window_steps else ""))
    return out
