"""Figures and findings of `fd-vs-steps` (no stage depends on this module: editing it retrains nothing)."""
from __future__ import annotations

from typing import Any, Mapping

from ..figures import grid_panels, interval_panels

PAPER = "the paper (ImageNet 256, DiT-XL/2, no guidance) finds the DLC-conditioned DiT below the class-conditional " \
        "and unconditional ones at every checkpoint, reaching their final FID in a fraction of their steps"


def _series(rows: list[dict], metric: str, variant: str, seed: int) -> list[tuple]:
    """[(step, value, ci_low, ci_high)] of one variant and seed (no interval: the value)."""
    return sorted((r["step"], r["value"], *(r["value"] if r.get(k) is None else r[k] for k in ("ci_low", "ci_high")))
                  for r in rows if r["metric"] == metric and r.get("variant") == variant and r.get("seed") == seed
                  and r.get("step") is not None)


def steps_findings(rows: list[dict], variants: list[str], fd_key: str, seed: int) -> list[str]:
    """Per conditioned variant: how many checkpoints are significantly below / above `unconditional` at the same
    step (paired intervals), and the first checkpoint whose FD interval lies below the unconditional DiT's final FD
    (the step budget the condition saves); then the paper's Figure-4 claim, reproduced or not."""
    out, below_all = [], {}
    base = _series(rows, fd_key, "unconditional", seed)
    if not base:
        return [f"Seed {seed}: no {fd_key} rows of unconditional; no finding."]
    final_step, final_fd = base[-1][0], base[-1][1]
    for v in variants:
        gaps = _series(rows, f"{fd_key}_gap", v, seed)
        fd = _series(rows, fd_key, v, seed)
        if not gaps or not fd:
            continue
        below = [s for s, _, _, hi in gaps if hi < 0]
        above = [s for s, _, lo, _ in gaps if lo > 0]
        reach = next((s for s, _, _, hi in fd if hi < final_fd), None)
        below_all[v] = len(below) == len(gaps)
        last = gaps[-1]
        out.append(f"Seed {seed}, {v}: {fd_key} {fd[0][1]:.1f} at step {fd[0][0]} → {fd[-1][1]:.1f} at step "
                   f"{fd[-1][0]}; significantly below unconditional at {len(below)} of {len(gaps)} checkpoints"
                   + (f", above at {len(above)}" if above else "") + f" (paired; at the last {last[1]:+.1f} "
                   f"[{last[2]:+.1f}, {last[3]:+.1f}]); "
                   + (f"its interval is below the unconditional DiT's final {fd_key} ({final_fd:.1f}, step "
                      f"{final_step}) from step {reach} on ({reach / final_step:.0%} of the budget)." if reach else
                      f"no checkpoint's interval is below the unconditional DiT's final {fd_key} ({final_fd:.1f})."))
    if "dlc" in below_all:
        others = {v: _series(rows, fd_key, v, seed) for v in below_all if v != "dlc"}
        dlc = dict((s, (lo, hi)) for s, _, lo, hi in _series(rows, fd_key, "dlc", seed))
        vs = {v: sum(1 for s, _, lo, _ in pts if s in dlc and dlc[s][1] < lo) for v, pts in others.items()}
        holds = below_all["dlc"] and all(n == len(others[v]) for v, n in vs.items())
        out.append(f"Paper claim (Fig. 4: {PAPER}): {'reproduced' if holds else 'not reproduced'} at this scale on "
                   f"seed {seed} — dlc below unconditional at every checkpoint: {'yes' if below_all['dlc'] else 'no'}"
                   + "".join(f"; below {v} (non-overlapping intervals) at {n} of {len(others[v])}"
                             for v, n in vs.items()) + ".")
    return out


def add_figures_and_notes(ctx: Any, cfg: Any, curves: Mapping[tuple, Any], fd_key: str) -> None:
    rows = [r for r in ctx.metrics if r.get("step") is not None or r.get("variant") == "real-train"]
    variants = [v for v in cfg.eval.variants if v != "real-train"]
    conditioned = [v for v in variants if v != "unconditional"]
    s0 = ctx.seeds[0]
    with ctx.timer("figures"):
        floor = [r["value"] for r in rows if r["metric"] == fd_key and r.get("variant") == "real-train"
                 and r.get("seed") == s0]
        title = f"{fd_key} (95 % bootstrap)" + (f"; real-train floor {floor[0]:.3g}" if floor else "")
        panels = [(title, {f"{v} seed={s}": _series(rows, fd_key, v, s) for v in variants for s in ctx.seeds}),
                  (f"{fd_key} − unconditional at the same step, paired",
                   {f"{v} seed={s}": _series(rows, f"{fd_key}_gap", v, s) for v in conditioned for s in ctx.seeds})]
        ctx.add_figure(interval_panels(panels, xlabel="DiT training step", ylabel=""), "fd_vs_steps",
                       f"{fd_key} of samples of the DiT's EMA checkpoints against its training step, per "
                       f"conditioning, no guidance; right: the paired difference to the unconditional DiT at the same "
                       f"step. Error bars: 95 % bootstrap intervals over the {cfg.eval.n_samples} samples.")
        if curves:
            ctx.add_figure(grid_panels({f"{v} step {s}": imgs for (v, s), imgs in curves.items()}, 8),
                           "samples_by_step", f"First {cfg.eval.grid} samples of the first and last checkpoint per "
                           f"conditioning, seed {s0}.")
    ctx.note(f"DiT {cfg.dit.model}, {cfg.dit.steps} steps of batch {cfg.dit.batch_size}, EMA weights kept every "
             f"{cfg.dit.ckpt_every} steps; {cfg.dit_sampling.steps} {cfg.dit_sampling.sampler} steps without guidance; "
             f"{cfg.eval.n_samples} samples per checkpoint with the same sample indices at every checkpoint and "
             "conditioning.")
    if cfg.eval.bootstrap < 2:
        ctx.note(f"No finding: eval.bootstrap = {cfg.eval.bootstrap} gives no intervals (set it to ≥ 50).")
        return
    for seed in ctx.seeds:
        for sentence in steps_findings(rows, conditioned, fd_key, seed):
            ctx.note(sentence)
