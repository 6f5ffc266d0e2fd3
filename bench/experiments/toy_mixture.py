"""toy-mixture: unconditional vs conditional diffusion on a grid of N Gaussians (DLC paper, Section 3).

For every N, seed and variant a 4-layer MLP diffusion model (improved-DDPM recipe) is trained on a
finite sample of the mixture: `unconditional`; `oracle` (conditioned on the true component index);
`gmm` (conditioned on the index inferred by a scikit-learn Gaussian mixture fitted to the data).
Conditional variants sample the index from the empirical marginal of their training labels first.

Metrics (nats): `kl_forward` = KL(p_data‖q̂) with q̂ the Silverman-bandwidth Gaussian KDE of model
samples and exact log p_data (the paper's protocol); `kl_floor` = the same estimator applied to true
samples (its bias: not small, because the bandwidth exceeds the mode spacing); `kl_excess` =
kl_forward − kl_floor; `kl_symmetric` = floor-corrected forward + reverse KL; `mode_coverage` and
`in_mode_fraction` measured directly on the samples.

Silverman's rule derives the bandwidth from the global covariance, so at large N it exceeds the
mode spacing and the forward estimate cannot see structure below it. The `_cv` metrics repeat the
forward estimate with one isotropic bandwidth per (N, seed) chosen by likelihood cross-validation on
held-out true samples (the bandwidth that minimises the floor), applied identically to every model.
"""
from __future__ import annotations

import numpy as np

from toy import diffusion as tdiff

from ..experiment import experiment
from ..run import RunContext
from ..stages import toy as st
from .toy_mixture_config import ToyMixtureConfig
from .toy_mixture_report import add_figures, add_notes

@experiment("toy-mixture", config=ToyMixtureConfig, version="1",
            code=("bench.experiments.toy_mixture_config", "bench.experiments.toy_mixture_report"),
            description="Gaussian-mixture toy study (paper §3, Fig. 2/11): unconditional vs oracle- and "
                        "GMM-conditioned diffusion, KDE KL with its floor, mode coverage")
def run_toy_mixture(ctx: RunContext) -> None:
    cfg: ToyMixtureConfig = ctx.config
    tcfg, ecfg, scfg = st.split(cfg)
    sch = tdiff.Schedule.cosine(cfg.diffusion_steps)
    sample_sch = sch.respace(cfg.sample_steps)
    total = cfg.n_kde + cfg.n_eval
    figure_data: dict[int, np.ndarray] = {}
    figure_samples: dict[tuple[str, int], np.ndarray] = {}
    score_models: dict[str, tuple] = {}
    overall = ctx.progress(total=len(cfg.n_modes) * len(ctx.seeds) * len(cfg.variants), desc="toy-mixture models")
    ctx.display(metric_order=["kl_forward", "kl_excess", "kl_excess_cv", "kl_symmetric", "mode_coverage",
                              "in_mode_fraction", "kl_floor", "kl_floor_cv", "kl_floor_reverse", "bandwidth_cv",
                              "gmm_ari", "train_loss"],
                label_order={"variant": ["data", *cfg.variants]})

    for n in cfg.n_modes:
        for seed in ctx.seeds:
            x, true_labels = st.training_set(tcfg, n, seed)
            scale = float(x.std())
            x_norm = x / scale
            clip = float(np.abs(x_norm).max() * 1.05) if cfg.clip_x0 else None
            k_floor = ctx.key(st.TOY_FLOOR, {"n_modes": n, "eval": ecfg}, seed=seed)
            floor = ctx.stage(st.TOY_FLOOR, k_floor, lambda: st.floor(ecfg, n, seed), desc=f"KDE floor N={n} seed={seed}")
            data_row = {"variant": "data", "n_modes": n, "seed": seed}
            for metric, key, better, count in (("kl_floor", "kl_forward", False, cfg.n_eval),
                                               ("kl_floor_cv", "kl_forward_cv", False, cfg.n_eval),
                                               ("bandwidth_cv", "bandwidth_cv", None, cfg.n_cv),
                                               ("kl_floor_reverse", "kl_reverse", False, cfg.n_eval),
                                               ("mode_coverage", "mode_coverage", True, total),
                                               ("in_mode_fraction", "in_mode_fraction", True, total)):
                ctx.add_metric(metric, floor[key], higher_is_better=better, n=count, **data_row)
            if seed == ctx.seeds[0]:
                figure_data[n] = floor["ref"][: cfg.figure_points]

            gmm = None
            if "gmm" in cfg.variants:
                gmm = ctx.stage(st.TOY_GMM, ctx.key(st.TOY_GMM, {"n_modes": n, "train": tcfg}, seed=seed),
                                lambda: st.fit_gmm(tcfg, x, n, seed), desc=f"fit GMM N={n} seed={seed}")
                from sklearn.metrics import adjusted_rand_score

                ctx.add_metric("gmm_ari", adjusted_rand_score(true_labels, gmm["labels"]), higher_is_better=True,
                               n=len(x), variant="gmm", n_modes=n, seed=seed)

            for variant in cfg.variants:
                labels = {"unconditional": None, "oracle": true_labels,
                          "gmm": gmm["labels"] if gmm is not None else None}[variant]
                n_classes = 0 if labels is None else n
                desc = f"{variant} N={n} seed={seed}"
                k_train = ctx.key(st.TOY_TRAIN, {"n_modes": n, "variant": variant, "train": tcfg}, seed=seed)
                trained = ctx.stage(st.TOY_TRAIN, k_train, lambda: st.train_model(ctx, tcfg, x_norm, labels, n_classes,
                                                                                 seed, desc), desc=f"train {desc}")
                model = st.load_model(tcfg, trained, n_classes, ctx.device)
                k_samples = ctx.key(st.TOY_SAMPLES, {"sampling": scfg, "n": total}, upstream=[k_train], seed=seed)
                samples = ctx.stage(st.TOY_SAMPLES, k_samples, lambda: st.sample(
                    ctx, model, sample_sch, total, labels, n, clip, scale, seed, n, variant), desc=f"sample {desc}")
                ev = ctx.stage(st.TOY_EVALUATE, ctx.key(st.TOY_EVALUATE, {"eval": ecfg}, upstream=[k_samples, k_floor]),
                               lambda: st.evaluate(ecfg, n, samples, floor["eval"], floor["logp"], floor["bandwidth_cv"]),
                               desc=f"KDE KL {desc}")
                row = {"variant": variant, "n_modes": n, "seed": seed}
                excess, excess_rev = ev["kl_forward"] - floor["kl_forward"], ev["kl_reverse"] - floor["kl_reverse"]
                for metric, value, better, count in (
                        ("kl_forward", ev["kl_forward"], False, cfg.n_eval), ("kl_excess", excess, False, cfg.n_eval),
                        ("kl_symmetric", excess + excess_rev, False, cfg.n_eval),
                        ("kl_excess_cv", ev["kl_forward_cv"] - floor["kl_forward_cv"], False, cfg.n_eval),
                        ("mode_coverage", ev["mode_coverage"], True, total),
                        ("in_mode_fraction", ev["in_mode_fraction"], True, total),
                        ("train_loss", trained["final_loss"], None, tcfg.steps)):
                    ctx.add_metric(metric, value, higher_is_better=better, n=count, **row)
                if seed == ctx.seeds[0]:
                    figure_samples[(variant, n)] = samples[: cfg.figure_points]
                    if n == cfg.score_n_modes and variant in ("unconditional", "oracle"):
                        score_models[variant] = (model, scale)
                overall.update(1)
    overall.close()
    add_figures(ctx, cfg, sch, figure_data, figure_samples, score_models)
    add_notes(ctx, cfg)
