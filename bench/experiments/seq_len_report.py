"""Figures and findings of `seq-len` (no stage depends on this module: editing it retrains nothing)."""
from __future__ import annotations

from typing import Any, Mapping

from ..figures import grid_panels, interval_panels

COMPUTE_STAGES = ("encoder", "sedd", "prior-samples", "dit")
PAPER = "the paper (ImageNet 256, L·V = 131 072: 32×4096, 128×1024, 512×256) finds FID falling as L grows, at a " \
        "compute cost that grows with L"


def _series(rows: list[dict], metric: str, seed: int, x: str = "L", **labels: Any) -> list[tuple]:
    """[(x, value, ci_low, ci_high)] of one seed's dlc rows (no interval: the value); x is a label (L) or, when
    it names a metric, that metric's value at the same L."""
    def pick(m):
        return [r for r in rows if r["metric"] == m and r.get("seed") == seed and r.get("L") is not None
                and r.get("variant", "dlc") == "dlc" and all(r.get(k) == v for k, v in labels.items())]

    at = {r["L"]: r["value"] for r in pick(x)} if x != "L" else None
    return sorted(((r["L"] if at is None else at[r["L"]]), r["value"],
                   *(r["value"] if r.get(k) is None else r[k] for k in ("ci_low", "ci_high")))
                  for r in pick(metric) if at is None or r["L"] in at)


def seq_len_findings(lengths: list[int], opt: Mapping, rows: list[dict], fd_key: str, seed: int,
                     n_resamples: int) -> list[str]:
    """The finding as sentences computed from `bench.aggregate.grid_optimum`'s result and the compute rows."""
    b, d0 = opt["best"], opt["vs_first"]
    tied = [lengths[i] for i in opt["tied"] if i != b]
    fd = {L: v for L, v, _, _ in _series(rows, fd_key, seed)}
    gflops = {L: v for L, v, _, _ in _series(rows, "sedd_sample_gflops", seed)}
    shape = {"monotone": "lowest at an end of the grid", "U-shaped": "lowest inside the grid, both ends "
             "significantly above", "undecided": "lowest inside the grid, an end within its interval",
             "flat": "flat: every L within the interval of the best"}[opt["shape"]]
    out = [f"Seed {seed}: {fd_key} against L is {shape}; best L = {lengths[b]} ({fd[lengths[b]]:.1f}, best in "
           f"{100 * opt['best_frac'][b]:.0f} % of {n_resamples} paired resamples)"
           + (f", L ∈ {{{', '.join(map(str, tied))}}} not significantly worse" if tied else
              ", every other L significantly worse") + "; against the shortest L = " + f"{lengths[0]}: "
           + ", ".join(f"L = {lengths[i]} {d0[i][0]:+.1f} [{d0[i][1]:+.1f}, {d0[i][2]:+.1f}]"
                       for i in range(1, len(lengths))) + " (paired, 95 %)."]
    if len(gflops) == len(lengths):
        out.append(f"Seed {seed}: sampling one code costs " + ", ".join(f"{gflops[L]:.3g}" for L in lengths)
                   + f" GFLOPs at L = {', '.join(map(str, lengths))} ({gflops[lengths[-1]] / gflops[lengths[0]]:.1f}× "
                   f"from the shortest to the longest).")
    longest = b == len(lengths) - 1 and d0[-1][2] < 0     # the longest L best and significantly below the shortest
    grows = len(gflops) == len(lengths) and all(gflops[a] < gflops[c] for a, c in zip(lengths, lengths[1:]))
    out.append(f"Paper claim (Fig. 5: {PAPER}) — FD falls with L: {'reproduced' if longest else 'not reproduced'} at "
               f"this scale on seed {seed} (best L = {lengths[b]}; the longest against the shortest "
               f"{d0[-1][0]:+.1f} [{d0[-1][1]:+.1f}, {d0[-1][2]:+.1f}]); compute grows with L: "
               f"{'reproduced' if grows else 'not reproduced'}.")
    return out


def add_figures_and_notes(ctx: Any, cfg: Any, grids: Mapping[int, Any], optima: Mapping[int, dict],
                          fd_key: str) -> None:
    rows = [r for r in ctx.metrics if r.get("L") is not None or r.get("variant") == "real-train"]
    lengths = list(cfg.lengths)
    s0 = ctx.seeds[0]
    with ctx.timer("figures"):
        floor = [r["value"] for r in rows if r["metric"] == fd_key and r.get("variant") == "real-train"
                 and r.get("seed") == s0]
        title = f"{fd_key} (95 % bootstrap)" + (f"; real-train floor {floor[0]:.3g}" if floor else "")
        panels = [(title, {f"dlc seed={s}": _series(rows, fd_key, s) for s in ctx.seeds}),
                  (f"{fd_key} against SEDD sampling GFLOPs per code",
                   {f"dlc seed={s}": _series(rows, fd_key, s, x="sedd_sample_gflops") for s in ctx.seeds}),
                  ("linear probe of the DLC (held-out accuracy)",
                   {f: _series(rows, "probe_top1", s0, representation="dlc", factor=f)
                    for f in cfg.eval.probe_factors})]
        fig = interval_panels(panels, xlabel="L (tokens; V = L·V / L)", ylabel="", logx=True)
        for ax in (fig.axes[0], fig.axes[2]):
            ax.set_xticks(lengths, [str(L) for L in lengths])
            ax.minorticks_off()
        fig.axes[1].set_xlabel("SEDD sampling GFLOPs per code")
        ctx.add_figure(fig, "fd_vs_L",
                       f"{fd_key} against the sequence length L at L·V = {cfg.encoder.L * cfg.encoder.V} (log axis), "
                       f"against the measured SEDD compute, and what the code carries (probe accuracy per factor, "
                       f"seed {s0}); error bars are 95 % intervals (bootstrap over samples; Wilson for probes).")
        if grids:
            ctx.add_figure(grid_panels({f"L = {L}, V = {cfg.at(L).encoder.V}": g for L, g in grids.items()}, 8),
                           "samples_by_L", f"First {cfg.eval.grid} samples x ~ DiT(c), c ~ SEDD, per L, seed {s0} "
                           "(the same sample indices in every panel).")
    ctx.note(f"Per L, at equal budgets: SEM encoder {cfg.encoder.backbone} ({cfg.encoder.train.steps} steps), SEDD-"
             f"{cfg.prior.model} ({cfg.prior.train.steps} steps, sampled with '{cfg.prior_sampling.sampler}' in "
             f"{cfg.prior_sampling.steps} steps), DiT {cfg.dit.model} ({cfg.dit.steps} steps), "
             f"{cfg.dit_sampling.steps} {cfg.dit_sampling.sampler} steps without guidance; {cfg.eval.n_samples} "
             "samples per L with the same sample indices. *_seconds rows are what each stage took when it was "
             "computed (cached stages keep their first cost); FLOPs are counted by torch (matmuls and attention).")
    for seed, opt in optima.items():
        for sentence in seq_len_findings(lengths, opt, rows, fd_key, seed, cfg.eval.bootstrap):
            ctx.note(sentence)
    if not optima:
        ctx.note(f"No finding: eval.bootstrap = {cfg.eval.bootstrap} gives no intervals (set it to ≥ 50).")
