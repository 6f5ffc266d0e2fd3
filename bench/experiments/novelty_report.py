"""Figures and findings of `novelty` (no stage depends on this module: editing it retrains nothing)."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

COPIES = "training (copies)"
PAPER = "the paper (ImageNet 256, DINOv2 nearest neighbours) shows generated images, compositions included, that " \
        "are not copies of their nearest training images"


def novelty_findings(rows: list[dict], sets: list[str], seed: int, quantile: float) -> list[str]:
    """Per set: its mean nearest-training similarity against the held-out floor, and its near-copy rate against
    the held-out images' own (what a generator that does not copy shows: 1 − quantile, or the held-out duplicate
    rate where held-out images duplicate training images); then the paper's claim, reproduced or not."""
    def one(metric: str, name: str) -> dict | None:
        return next((r for r in rows if r["metric"] == metric and r.get("set") == name and r.get("seed") == seed),
                    None)

    floor, floor_cp, floor_dup = (one(m, "held-out") for m in ("nn_max_sim", "nn_copy_frac", "nn_duplicate_frac"))
    out, verdicts, farther = [], [], []
    if floor is None or floor_cp is None:
        return out
    expected = floor_cp["value"]
    if floor_dup is not None and floor_dup["value"] > 1 - quantile:
        out.append(f"Seed {seed}: {100 * floor_dup['value']:.1f} % of held-out images duplicate a training image "
                   f"(similarity 1: the world is finite), so the held-out {100 * quantile:g}th percentile is a "
                   f"duplicate; a near-copy here is a duplicate, and a generator of the data distribution shows "
                   f"{100 * expected:.1f} %.")
    for name in sets:
        sim, cp = one("nn_max_sim", name), one("nn_copy_frac", name)
        if sim is None or cp is None:
            continue
        rel = ("closer to the training images than" if sim["ci_low"] > floor["ci_high"] else "farther from them than"
               if sim["ci_high"] < floor["ci_low"] else "as close to the training images as (intervals overlap)")
        copies = ("more near-copies than held-out images" if cp["ci_low"] > expected else
                  "no more near-copies than held-out images")
        verdicts.append(cp["ci_low"] <= expected)
        farther.append(sim["ci_high"] < floor["ci_low"])
        out.append(f"Seed {seed}, {name}: mean nearest-training cosine similarity {sim['value']:.3f} "
                   f"[{sim['ci_low']:.3f}, {sim['ci_high']:.3f}], {rel} held-out images "
                   f"({floor['value']:.3f} [{floor['ci_low']:.3f}, {floor['ci_high']:.3f}]); "
                   f"{100 * cp['value']:.1f} % [{100 * cp['ci_low']:.1f}, {100 * cp['ci_high']:.1f}] of samples are "
                   f"near-copies (above the held-out {100 * quantile:g}th percentile, {cp['threshold']:.3f}, or "
                   f"duplicates): {copies} ({100 * expected:.1f} %).")
    control = one("nn_copy_frac", COPIES)
    if control is not None:
        out.append(f"Control (seed {seed}): training images searched against themselves are near-copies at rate "
                   f"{control['value']:.2f} (known answer 1.00)" + ("." if control["value"] == 1.0 else
                                                                    ": the search or the threshold is broken."))
    if verdicts:
        out.append(f"Paper claim (Fig. 12, App. D: {PAPER}): {'reproduced' if all(verdicts) else 'not reproduced'} "
                   f"at this scale on seed {seed} — the near-copy rate is above that of held-out images in "
                   f"{sum(not v for v in verdicts)} of {len(verdicts)} sets."
                   + (" But every set is farther from the training images than held-out real images are: these "
                      "samples are not copies, and not close to any real image either, so the result says as much "
                      "about sample quality (read it with the FD) as about memorisation." if all(farther) else ""))
    return out


def similarity_histogram(max_sims: Mapping[str, np.ndarray], floor: str, line: tuple[float, str] | None = None):
    """Step histograms of nearest-training similarity per set; the floor set dashed; an optional marked value."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.8))
    bins = np.linspace(min(float(v.min()) for v in max_sims.values()), 1.0, 40)
    for name, v in max_sims.items():
        ax.hist(v, bins=bins, density=True, histtype="step", lw=2 if name == floor else 1.2,
                ls="--" if name == floor else "-", label=f"{name} (n={len(v)})")
    if line is not None:
        ax.axvline(line[0], color="k", lw=0.8, ls=":", label=line[1])
    ax.set_xlabel("cosine similarity to the nearest training image")
    ax.set_ylabel("density")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def neighbour_panels(sets: Mapping[str, tuple[Any, np.ndarray]], train_images: Any):
    """One panel per set: each row a sample, then its nearest training images ({name: (samples, (n, k) indices)})."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..metrics import nearest_neighbour_grid

    rows = max(len(idx) for _, idx in sets.values())
    fig, axes = plt.subplots(1, len(sets), figsize=(2.6 * len(sets), 0.45 * rows + 0.8), squeeze=False)
    for ax, (name, (samples, idx)) in zip(axes[0], sets.items()):
        ax.imshow(nearest_neighbour_grid(samples, train_images, idx), interpolation="nearest")
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    return fig


def add_figures_and_notes(ctx: Any, cfg: Any, results: Mapping[str, Any], images: Mapping[str, Any],
                          train_images: Any, threshold: float, n_train: int) -> None:
    s0 = ctx.seeds[0]
    with ctx.timer("figures"):
        fig = similarity_histogram({name: r.max_sim for name, r in results.items()}, "held-out",
                                   (threshold, f"held-out q{cfg.copy_quantile:g} = {threshold:.3f}"))
        ctx.add_figure(fig, "nn_similarity", f"Nearest-training-image similarity ({cfg.eval.features} features, "
                       f"{n_train} training images) per set, seed {s0}; dashed: held-out real images, the floor.")
        fig = neighbour_panels({name: (images[name][:cfg.grid_rows], r.indices[:cfg.grid_rows, :cfg.k_neighbours])
                                for name, r in results.items()}, train_images)
        ctx.add_figure(fig, "nearest_neighbours", f"Each row: a sample, then its {cfg.k_neighbours} nearest training "
                       f"images (most similar first), seed {s0}.")
    ctx.note(f"Nearest neighbours: exact cosine search (faiss) over {n_train} training images in "
             f"{cfg.eval.features} features; a near-copy is a sample more similar to its nearest training image than "
             f"{100 * cfg.copy_quantile:g} % of held-out images are.")
    sets = [n for n in results if n not in ("held-out", COPIES)]
    for seed in ctx.seeds:
        for sentence in novelty_findings(ctx.metrics, sets, seed, cfg.copy_quantile):
            ctx.note(sentence)
