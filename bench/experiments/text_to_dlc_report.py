"""Figures and findings of `text-to-dlc` (no stage depends on this module: editing it retrains nothing)."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from ..figures import grid_panels
from .novelty_report import neighbour_panels, similarity_histogram

SHOWN_PROMPTS = 8
PAPER = "the paper (Sec. 6, Figs. 7 and 12) shows images generated from text prompts, including compositions " \
        "outside the training distribution, by hand-picked examples and nearest neighbours"


def _row(rows: list[dict], metric: str, **labels: Any) -> dict | None:
    return next((r for r in rows if r["metric"] == metric and all(r.get(k) == v for k, v in labels.items())), None)


def _pct(r: dict) -> str:
    return f"{r['value']:.2f} [{r['ci_low']:.2f}, {r['ci_high']:.2f}]"


def _paired(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    from ..aggregate import t_interval

    return t_interval(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))


def _welch(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """Difference of means a − b with Welch's 95 % interval (two independent prompt sets)."""
    from scipy.stats import ttest_ind

    if len(a) < 2 or len(b) < 2 or (np.ptp(a) == 0 and np.ptp(b) == 0):
        d = float(np.mean(a) - np.mean(b))
        return d, d, d
    ci = ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    return float(np.mean(a) - np.mean(b)), float(ci.low), float(ci.high)


def _verdict(lo: float, hi: float, more: str, less: str) -> str:
    return more if lo > 0 else less if hi < 0 else "not significantly different"


def text_findings(rows: list[dict], per_prompt: Mapping[tuple, np.ndarray], seed: int, factors: list[str]) -> list[str]:
    """Sentences from the stored rows and per-prompt agreements ({(seed, set, method): (n_prompts,)}) of one seed."""
    out = []
    sets = list(dict.fromkeys(s for (sd, s, _) in per_prompt if sd == seed))
    for set_name in sets:
        for method in dict.fromkeys(m for (sd, s, m) in per_prompt if sd == seed and s == set_name):
            joint = _row(rows, "factor_agreement", seed=seed, set=set_name, method=method, factor="all")
            if joint is None:
                continue
            each = [(f, _row(rows, "factor_agreement", seed=seed, set=set_name, method=method, factor=f))
                    for f in factors]
            out.append(f"Seed {seed}, {set_name} prompts, {method}: every prompted factor right in {_pct(joint)} of "
                       f"samples (chance {joint['chance']:.3f}); "
                       + ", ".join(f"{f} {_pct(r)} (chance {r['chance']:.2f})" for f, r in each if r) + ".")
    gens = [m for m in ("text", "text-prefix") if any((seed, st, m) in per_prompt for st in sets)]
    for g in gens:
        t_in, t_out = per_prompt.get((seed, "in-distribution", g)), per_prompt.get((seed, "held-out", g))
        if t_in is not None and t_out is not None:
            d, lo, hi = _welch(t_in, t_out)
            out.append(f"Seed {seed}, {g}: the in-distribution − held-out gap in whole-combination agreement is "
                       f"{d:+.2f} [{lo:+.2f}, {hi:+.2f}] (per-prompt means, Welch interval): held-out combinations are "
                       + ("drawn less faithfully" if lo > 0 else "drawn more faithfully" if hi < 0 else
                          "not significantly harder") + ".")
    for set_name in sets:
        ret, orc = per_prompt.get((seed, set_name, "retrieval")), per_prompt.get((seed, set_name, "oracle"))
        for g in gens:
            text = per_prompt.get((seed, set_name, g))
            if text is not None and ret is not None:
                d, lo, hi = _paired(text, ret)
                verdict = _verdict(lo, hi, "generation beats lookup", "lookup beats generation")
                out.append(f"Seed {seed}, {set_name} prompts: {g} − retrieval {d:+.2f} [{lo:+.2f}, {hi:+.2f}] "
                           f"(paired over the {len(text)} prompts): {verdict}.")
            if text is not None and orc is not None:
                d, lo, hi = _paired(orc, text)
                out.append(f"Seed {seed}, {set_name} prompts: the DiT given a real image's code (oracle) reaches "
                           f"{np.mean(orc):.2f}; {g}'s codes are "
                           + ("below that ceiling" if lo > 0 else "above it" if hi < 0 else "level with it")
                           + f" ({-d:+.2f} [{-hi:+.2f}, {-lo:+.2f}]).")
        if len(gens) == 2 and all((seed, set_name, g) in per_prompt for g in gens):
            d, lo, hi = _paired(per_prompt[(seed, set_name, gens[1])], per_prompt[(seed, set_name, gens[0])])
            out.append(f"Seed {seed}, {set_name} prompts: {gens[1]} − {gens[0]} {d:+.2f} [{lo:+.2f}, {hi:+.2f}] "
                       f"(paired over prompts): the pretrained text encoder "
                       + _verdict(lo, hi, "helps", "hurts").replace("not significantly different",
                                                                    "makes no significant difference") + ".")
    for r in rows:
        if r["metric"] == "code_valid_frac" and r.get("seed") == seed:
            cp = _row(rows, "code_copy_frac", seed=seed, set=r["set"], method=r["method"])
            out.append(f"Seed {seed}, {r['set']} prompts, {r['method']}: {100 * r['value']:.1f} % of the {r['n']} code "
                       "slots filled hold a code id" + (f"; {100 * cp['value']:.1f} % of the codes copy a training "
                                                        "code" if cp else "") + ".")
    for set_name in sets:                   # are the agreeing images clean renders, or blotches that read right?
        ref = _row(rows, "render_mse", seed=seed, set=set_name, method="oracle")
        for g in gens:
            mse = _row(rows, "render_mse", seed=seed, set=set_name, method=g)
            if mse and ref:
                far = mse["ci_low"] > ref["ci_high"]
                rel = ("farther from a clean render than" if far else "closer to a clean render than"
                       if mse["ci_high"] < ref["ci_low"] else "as close to a clean render as")
                out.append(f"Seed {seed}, {set_name} prompts, {g}: MSE to the nearest exact render {mse['value']:.3f} "
                           f"[{mse['ci_low']:.3f}, {mse['ci_high']:.3f}], {rel} the oracle's images "
                           f"({ref['value']:.3f})" + (": its codes are off the codes the DiT learnt, and its images "
                                                     "show it" if far else "") + ".")
    floor = _row(rows, "nn_max_sim", seed=seed, set="real held-out")
    for set_name in sets:
        for g in gens:
            sim = _row(rows, "nn_max_sim", seed=seed, set=set_name, method=g)
            if sim and floor:
                rel = ("closer to the training images than" if sim["ci_low"] > floor["ci_high"] else
                       "farther from them than" if sim["ci_high"] < floor["ci_low"] else
                       "as close to the training images as")
                out.append(f"Seed {seed}, {set_name} prompts, {g}: nearest-training cosine similarity "
                           f"{sim['value']:.3f} [{sim['ci_low']:.3f}, {sim['ci_high']:.3f}], {rel} held-out real "
                           f"images ({floor['value']:.3f}).")
    ret = per_prompt.get((seed, "held-out", "retrieval"))
    met = []
    for g in gens:
        held = per_prompt.get((seed, "held-out", g))
        joint = _row(rows, "factor_agreement", seed=seed, set="held-out", method=g, factor="all")
        if held is None or joint is None:
            continue
        above = joint["ci_low"] > joint["chance"]
        beats = ret is not None and _paired(held, ret)[1] > 0
        met.append((g, above and beats, f"{g}: whole-combination agreement {joint['value']:.2f} "
                    f"{'above' if above else 'not above'} chance" + ("" if ret is None else
                                                                   f", {'above' if beats else 'not above'} retrieval")))
    if met:
        ok = [g for g, good, _ in met if good]
        out.append(f"Paper claim ({PAPER}): measured here, generation from text of held-out combinations is "
                   + (f"reproduced with {', '.join(ok)}" if ok else "not reproduced")
                   + f" at this scale on seed {seed} — " + "; ".join(t for _, _, t in met) + ".")
    return out


def add_figures_and_notes(ctx: Any, cfg: Any, grids: Mapping[tuple, tuple], per_prompt: Mapping[tuple, np.ndarray],
                          nn: Mapping[str, tuple], train_images: Any) -> None:
    K, s0 = cfg.k_samples, ctx.seeds[0]
    with ctx.timer("figures"):
        for set_name in dict.fromkeys(s for s, _ in grids):
            methods = [m for s, m in grids if s == set_name]
            prompts = grids[(set_name, methods[0])][0][:SHOWN_PROMPTS]
            panels = {m: grids[(set_name, m)][1][:len(prompts) * K] for m in methods}
            listing = "; ".join(f"row {i + 1}: “{p}”" for i, p in enumerate(prompts))
            ctx.add_figure(grid_panels(panels, K), f"samples_{set_name.replace(' ', '_').replace('-', '_')}",
                           f"{set_name} prompts, seed {s0}: per method, one row of {K} samples per prompt ({listing}).")
        if len(nn) > 1:
            fig = similarity_histogram({name: res.max_sim for name, (res, _) in nn.items()}, "real held-out")
            ctx.add_figure(fig, "nn_similarity", f"Nearest-training-image similarity ({cfg.eval.features} features) "
                           f"of the text samples per prompt set, seed {s0}; dashed: held-out real images, the floor.")
            fig = neighbour_panels({name: (imgs[:SHOWN_PROMPTS * K:K], res.indices[:SHOWN_PROMPTS * K:K,
                                                                                :cfg.k_neighbours])
                                    for name, (res, imgs) in nn.items() if name != "real held-out"}, train_images)
            ctx.add_figure(fig, "nearest_neighbours", f"Each row: the first text sample of a prompt, then its "
                           f"{cfg.k_neighbours} nearest training images, seed {s0}.")
    ctx.note(f"Held out of every training set (images, codes, captions): {', '.join(cfg.holdout) or 'nothing'}. "
             f"{cfg.n_prompts} prompts per set stating {', '.join(cfg.prompt_factors)}, {K} samples each; factors read "
             "as the nearest exact render; 'all' = every prompted factor right. Text model: "
             f"{cfg.text.backbone or cfg.text.model} ({cfg.text.text_encoder + ' prefix' if cfg.text.text_encoder else cfg.text.tokenizer + ' tokens'}), "
             f"{cfg.text.train.steps} steps; sampling {cfg.text_sampling.steps} steps, temperature "
             f"{cfg.text_sampling.temperature}, {cfg.text_sampling.order} order, CFG {cfg.text_sampling.cfg_scale}. "
             "Retrieval: the codes of the k training images whose captions are nearest to the prompt (TF-IDF).")
    rows = [r for r in ctx.metrics if all(r.get(k) == v for k, v in ctx.row_labels.items())]   # this sweep point
    for seed in ctx.seeds:
        for sentence in text_findings(rows, per_prompt, seed, list(cfg.prompt_factors)):
            ctx.note(sentence)
