"""Novelty (DLC paper, Figure 12, Appendix D): are generated images new, or near-copies of training images? For
each set, the k nearest training images in a feature space (cosine similarity, exact faiss search), against the
floor that needs no model: held-out real images, which are new by construction.

    set            images
    dlc            x ~ DiT(c), c ~ SEDD: dlc-pipeline's samples (cache hits after its run)
    <method>       compositions of held-out pairs (composition's methods, e.g. dlc: tokens of two images mixed),
                   composition's samples (cache hits after its run)
    training       the first searched training images themselves: a control with a known answer (every one a
    (copies)       near-copy: copy rate 1), shown beside the sets
    held-out       the test images: the floor (their similarity to the nearest training image is what a
                   generator of new images from the data distribution would show)

The feature space is the evaluation extractor's (`eval.features`: DINOv2 when it is available, as in the paper;
the offline EfficientNet-Lite0 otherwise), over the first `n_train` training images (0: all). Per set: the mean
nearest-training similarity (`nn_max_sim`, Student-t interval) and the copy rate (`nn_copy_frac`: the fraction
closer to a training image than `copy_quantile` of held-out images are, Wilson interval; a generator that does not
copy shows the held-out images' own rate: 1 − copy_quantile, or more where held-out images duplicate training
images, as in a world of discrete factors; `nn_duplicate_frac` is the fraction at similarity 1). Figures: the
similarity distributions against the floor and image rows of sample | nearest training images. The finding is
computed from these rows (`novelty_report`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dlc.validate import ConfigError, check, in_range

from ..conditioning import generate
from ..experiment import experiment
from ..run import RunContext
from ..stages.data import DATA, load_split
from .composition import CompositionConfig, choose_pairs, composed_samples
from .composition import METHODS as COMPOSE
from .dlc_pipeline import build_extractor, seed_stages
from .novelty_report import COPIES, add_figures_and_notes

DUPLICATE = 1 - 1e-5     # cosine similarity of a duplicate (identical images' float32 features agree to ~1e-7)


def near_copies(max_sim: np.ndarray, threshold: float) -> np.ndarray:
    """A near-copy is above the held-out threshold, or a duplicate: in a finite world (shapes: discrete factors) some
    held-out images are renders also in the training set, the threshold sits at similarity 1, and a duplicate must
    still count."""
    return (max_sim > threshold) | (max_sim >= DUPLICATE)


@dataclass(frozen=True)
class NoveltyConfig(CompositionConfig):
    """composition's pairs and methods (its samples are cache hits), and the nearest-neighbour search."""
    methods: tuple[str, ...] = ("dlc",)
    k_neighbours: int = 5            # nearest training images per sample (shown in the figure)
    n_train: int = 0                 # training images searched (the first n_train; 0: all)
    copy_quantile: float = 0.99      # a sample is a near-copy above this quantile of the held-out similarities
    grid_rows: int = 8               # samples per set in the image-pair figure

    def __post_init__(self):
        super().__post_init__()
        check(self, positive=("k_neighbours", "grid_rows"), non_negative=("n_train",))
        in_range("copy_quantile", self.copy_quantile, 0.5, 1.0, hi_open=True)
        n = self.n_train or self.data.sizes()[0]
        if 0 < n < self.k_neighbours:
            raise ConfigError("k_neighbours", self.k_neighbours, f"exceeds the {n} training images searched",
                              "lower k_neighbours or raise n_train")


@experiment("novelty", config=NoveltyConfig, code=("bench.experiments.novelty_report",),
            description="novelty (Fig. 12): nearest training images of generated samples, against held-out images")
def run_novelty(ctx: RunContext) -> None:
    from ..aggregate import t_interval
    from ..image_eval import ImageEvaluation
    from ..metrics import novelty
    from ..metrics.factors import wilson_interval

    cfg: NoveltyConfig = ctx.config
    extractor = build_extractor(ctx, cfg.eval)
    ctx.display(metric_order=["nn_max_sim", "nn_copy_frac", "nn_duplicate_frac"],
                label_order={"set": ["held-out", "dlc", *(f"{m} compositions" for m in cfg.methods), COPIES]})
    with ctx.timer("data"):
        train, test = load_split(cfg.data, "train"), load_split(cfg.data, "test")
    k_data = ctx.key(DATA, cfg.data)
    evaluate = ImageEvaluation(ctx, cfg.data, cfg.eval, extractor, train, test, k_data)
    n_train = cfg.n_train or len(train)
    searched = train.subset(range(min(n_train, len(train))))
    train_feats = evaluate.features(searched.images, ctx.key(DATA, {"train": n_train}, upstream=[k_data]),
                                    f"{len(searched)} training images")
    floor = novelty(train=train_feats, generated=evaluate.real, k=cfg.k_neighbours)
    threshold = float(np.quantile(floor.max_sim, cfg.copy_quantile))
    results, images = {"held-out": floor}, {"held-out": test.images}
    n_copies = min(cfg.eval.n_samples, len(searched))       # the control with a known answer: copy rate 1
    copies = novelty(train=train_feats, generated=np.asarray(train_feats)[:n_copies], k=cfg.k_neighbours)
    for seed in ctx.seeds:
        src, dits = seed_stages(ctx, cfg, seed, train, test, k_data, ["dlc", *(COMPOSE[m] for m in cfg.methods)],
                                encoder_rows=False)
        sets = {"dlc": generate(src, "dlc", "prior", *dits["dlc"], cfg.eval.n_samples, "dlc")}
        if cfg.methods:
            pairs = choose_pairs({f: v for f, v in test.factors.items() if not cfg.factors or f in cfg.factors},
                                 len(test), cfg.n_pairs, cfg.min_differ, cfg.data.seed)
            sets |= {f"{m} compositions": composed_samples(ctx, cfg, src, dits, m, pairs, seed) for m in cfg.methods}
        for name, (imgs, key) in {**sets, COPIES: (searched.images[:n_copies], None)}.items():
            res = copies if key is None else novelty(train=train_feats, k=cfg.k_neighbours,
                                                     generated=evaluate.features(imgs, key, f"{name} seed={seed}"))
            if seed == ctx.seeds[0]:
                results[name], images[name] = res, imgs
            for set_name, r in ((name, res),) + ((("held-out", floor),) if name == "dlc" else ()):
                m, lo, hi = t_interval(r.max_sim.astype(np.float64))
                n = len(r.max_sim)
                ctx.add_metric("nn_max_sim", m, higher_is_better=None, ci_low=lo, ci_high=hi, n=n,
                               seed=seed, set=set_name, k=cfg.k_neighbours, n_train=len(searched))
                for metric, hits in (("nn_copy_frac", near_copies(r.max_sim, threshold)),
                                     ("nn_duplicate_frac", r.max_sim >= DUPLICATE)):
                    lo, hi = wilson_interval(int(hits.sum()), n)
                    ctx.add_metric(metric, float(hits.mean()), higher_is_better=False, ci_low=lo, ci_high=hi, n=n,
                                   seed=seed, set=set_name, threshold=round(threshold, 6))
    add_figures_and_notes(ctx, cfg, results, images, searched.images, threshold, len(searched))


__all__ = ["NoveltyConfig", "run_novelty"]
