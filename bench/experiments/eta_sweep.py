"""The remasking sweep (DLC paper, Appendix A, Figure 8): FD of x ~ DiT(c), c ~ SEDD sampled with the remasking
corrector, against the remasking probability η, on the stages `dlc-pipeline` trains (same configs: cache hits).

    variant    dlc at every η of `etas` (0 = remasking off, the baseline); real-train: the FD floor, once per seed

Per η: the Fréchet distance with its bootstrap interval, precision/recall, Vendi, the fraction of samples that
draw an object; the codes' per-position total variation to held-out codes and the fraction of copied training
codes; the paired difference FD(η) − FD(0) with its interval (the same sample indices at every η: the same DiT
noise, the same prior noise, so what the sets share cancels) and the fraction of paired resamples in which η is
the best (`optimum_frac`). The finding — U-shaped or not, the optimum and the values of η within its interval —
is computed from these (`eta_sweep_report`).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from dlc.validate import ConfigError

from ..conditioning import generate
from ..experiment import experiment
from ..image_eval import ImageEvaluation
from ..run import RunContext
from ..stages.data import DATA, load_split
from .dlc_pipeline import build_extractor, seed_stages
from .dlc_pipeline_config import DLCPipelineConfig, EvalConfig
from .eta_sweep_report import add_figures_and_notes

VARIANTS = ("dlc", "real-train")


@dataclass(frozen=True)
class EtaSweepConfig(DLCPipelineConfig):
    """dlc-pipeline's stages and evaluation, with the grid of η; the presets include the pipeline's, so every
    trained stage is the pipeline's own."""
    eval: EvalConfig = field(default_factory=lambda: EvalConfig(variants=VARIANTS))
    etas: tuple[float, ...] = (0.0, 0.003, 0.01, 0.03, 0.1, 0.3)

    def __post_init__(self):
        super().__post_init__()
        bad = [v for v in self.eval.variants if v not in VARIANTS]
        if bad or "dlc" not in self.eval.variants:
            raise ConfigError("eval.variants", list(self.eval.variants), "must be dlc, optionally with real-train "
                              "(η only changes how the SEDD prior is sampled)", "set eval.variants=[dlc, real-train]")
        if self.prior_sampling.sampler != "corrector":
            raise ConfigError("prior_sampling.sampler", self.prior_sampling.sampler, "does not remask, so η changes "
                              "nothing", "set prior_sampling.sampler=corrector")
        etas = list(self.etas)
        if len(etas) < 3 or 0.0 not in etas or etas != sorted(set(etas)) or not all(0.0 <= e < 1.0 for e in etas):
            raise ConfigError("etas", etas, "must be ≥ 3 distinct increasing values in [0, 1) including 0 (remasking "
                              "off, the baseline)", "e.g. etas=[0, 0.01, 0.1]")


@experiment("eta-sweep", config=EtaSweepConfig, code=("bench.experiments.eta_sweep_report",),
            description="remasking sweep (Fig. 8): FD of DiT(c), c ~ SEDD with remasking, against η")
def run_eta_sweep(ctx: RunContext) -> None:
    cfg: EtaSweepConfig = ctx.config
    extractor = build_extractor(ctx, cfg.eval)
    fd_key = extractor.metric_label()
    ctx.display(metric_order=[fd_key, f"{fd_key}_gap", "optimum_frac", "code_tv", "code_copy_frac", "precision",
                              "recall", "vendi", "object_frac"], label_order={"variant": list(VARIANTS)})
    with ctx.timer("data"):
        train, test = load_split(cfg.data, "train"), load_split(cfg.data, "test")
    k_data = ctx.key(DATA, cfg.data)
    n = cfg.eval.n_samples
    evaluate = ImageEvaluation(ctx, cfg.data, cfg.eval, extractor, train, test, k_data)
    grids, optima = {}, {}
    for seed in ctx.seeds:
        src, dits = seed_stages(ctx, cfg, seed, train, test, k_data, ["dlc"], encoder_rows=False)
        if "real-train" in cfg.eval.variants:
            evaluate("real-train", train.subset(range(min(n, len(train)))).images,
                     ctx.key(DATA, {"train": n}, upstream=[k_data]), seed, reconstruction=False, conditioned=False)
        features = []
        for eta in cfg.etas:
            with ctx.labelled(eta=eta):      # one Sources per η, sharing the memo (the SEDD stage is read once)
                at = replace(src, cfg=replace(cfg, prior_sampling=replace(cfg.prior_sampling, eta=eta)))
                imgs, k_imgs = generate(at, "dlc", "prior", *dits["dlc"], n, f"dlc η={eta}")
                features.append(evaluate("dlc", imgs, k_imgs, seed, reconstruction=False, conditioned=True))
                if seed == ctx.seeds[0]:
                    grids[eta] = imgs[:cfg.eval.grid]
        if cfg.eval.bootstrap >= 2:
            optima[seed] = add_grid_rows(ctx, evaluate.real, features, [{"eta": e} for e in cfg.etas], fd_key, seed)
    add_figures_and_notes(ctx, cfg, grids, optima, fd_key)


def add_grid_rows(ctx: RunContext, real, features: list, points: list[dict], fd_key: str, seed: int) -> dict:
    """The paired comparison over a grid of dlc sample sets (one per point, the same sample indices): per point its
    FD difference to the first point with a recentred interval ('{fd_key}_gap') and the fraction of paired
    resamples in which it is best ('optimum_frac'), labelled with the point; returns grid_optimum's result."""
    from ..aggregate import grid_optimum
    from ..metrics.frechet import fd_paired_resamples

    cfg = ctx.config
    with ctx.timer("paired bootstrap"):
        values, res = fd_paired_resamples(real=real, fakes=features, n_resamples=cfg.eval.bootstrap, seed=seed)
    opt = grid_optimum(values, res)
    against = ",".join(f"{k}={v:g}" for k, v in points[0].items())
    for i, point in enumerate(points):
        d, lo, hi = opt["vs_first"][i]
        with ctx.labelled(**point):
            ctx.add_metric(f"{fd_key}_gap", float(d), higher_is_better=False, ci_low=float(lo), ci_high=float(hi),
                           seed=seed, variant="dlc", against=against, n=cfg.eval.n_samples)
            ctx.add_metric("optimum_frac", float(opt["best_frac"][i]), higher_is_better=None, seed=seed,
                           variant="dlc", n=cfg.eval.bootstrap)
    return opt


__all__ = ["EtaSweepConfig", "add_grid_rows", "run_eta_sweep"]
