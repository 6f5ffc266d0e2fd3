"""Figures and findings of `composition` (no stage depends on this module: editing it retrains nothing)."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch

from ..figures import grid_panels

SHOWN_PAIRS, SHOWN_SAMPLES = 6, 8
PAPER = "DLC compositions are more diverse (Vendi) than averaged continuous embeddings (Table 3)"


def add_figures_and_notes(ctx: Any, cfg: Any, grids: Mapping[str, torch.Tensor],
                          per_pair: Mapping[tuple, Mapping[str, np.ndarray]]) -> None:
    K = cfg.k_samples
    with ctx.timer("figures"):
        if "sources" in grids:
            src = grids["sources"][:SHOWN_PAIRS]                                  # (p, 2, 3, H, W)
            k = min(K, SHOWN_SAMPLES)
            panels = {}
            for method in cfg.methods:
                s = grids[method].reshape(cfg.n_pairs, K, *grids[method].shape[1:])[:SHOWN_PAIRS, :k]
                panels[f"{method}: a | b | samples"] = torch.cat([src, s], 1).flatten(0, 1)   # (p·(2+k), 3, H, W)
            ctx.add_figure(grid_panels(panels, 2 + k), "compositions",
                           f"Per method, the first {SHOWN_PAIRS} held-out pairs (a, b: first two columns) and "
                           f"{k} of the {K} samples of the DiT conditioned on their composition; seed "
                           f"{ctx.seeds[0]}, the same noise in every panel.")
    named = ", ".join(cfg.factors) if cfg.factors else "every factor"
    ctx.note(f"{cfg.n_pairs} pairs of held-out images differing in ≥ {cfg.min_differ} of the factors read ({named}), "
             f"{K} samples per pair "
             f"and method; dlc-soft averages the soft SEMs at temperature {cfg.soft_temperature}. Every measure is a "
             "mean over pairs with a Student-t 95 % interval; factors are read as the nearest exact render. "
             "mix_frac: every factor is a's or b's, with at least one of a's and one of b's where they differ; "
             "copy_source_frac: the sample is a or b in every factor; novel_combo_frac: no training image has its "
             "combination of factors.")
    for seed in ctx.seeds:
        for sentence in composition_findings({m: v for (s, m), v in per_pair.items() if s == seed}, seed):
            ctx.note(sentence)


def _ci(values: np.ndarray) -> str:
    from ..aggregate import t_interval

    m, lo, hi = t_interval(values)
    return f"{m:.2f} [{lo:.2f}, {hi:.2f}]"


def _paired(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    from ..aggregate import t_interval

    return t_interval(np.asarray(a) - np.asarray(b))


def composition_findings(by_method: Mapping[str, Mapping[str, np.ndarray]], seed: int) -> list[str]:
    """Sentences from the per-pair measures of one seed ({method: {measure: (n_pairs,)}})."""
    out = []
    for method, m in by_method.items():
        parts = [f"Vendi per pair {_ci(m['vendi_pair'])}"]
        if "mix_frac" in m:
            parts = [f"{_ci(m['mix_frac'])} of samples mix the two sources (every factor from one of them, some "
                     f"from each)", f"{_ci(m['copy_source_frac'])} copy one source",
                     f"{_ci(m['novel_combo_frac'])} realise a factor combination no training image has"] + parts
        out.append(f"Seed {seed}, {method}: " + "; ".join(parts) + ".")
    if "dlc" in by_method:
        ref = by_method["dlc"]
        for method, m in by_method.items():
            if method == "dlc":
                continue
            said = []
            for measure in ("vendi_pair", "mix_frac"):
                if measure not in m:
                    continue
                d, lo, hi = _paired(ref[measure], m[measure])
                verdict = "higher" if lo > 0 else "lower" if hi < 0 else "not significantly different"
                said.append(f"{measure} {verdict} ({d:+.2f} [{lo:+.2f}, {hi:+.2f}])")
            out.append(f"Seed {seed}: dlc against {method}, paired over the same pairs: " + "; ".join(said) + ".")
    continuous = [c for c in ("embedding", "rcg") if c in by_method]
    if "dlc" in by_method and continuous:
        lows = {c: _paired(by_method["dlc"]["vendi_pair"], by_method[c]["vendi_pair"])[1] for c in continuous}
        ok = all(v > 0 for v in lows.values())
        out.append(f"Paper claim ({PAPER}): {'reproduced' if ok else 'not reproduced'} at this scale on seed {seed} "
                   f"(dlc against {', '.join(continuous)}: "
                   + ", ".join(f"{c}'s Vendi {'significantly' if lows[c] > 0 else 'not significantly'} lower"
                               for c in continuous)
                   + ").")
    return out
