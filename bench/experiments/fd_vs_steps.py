"""FD along training (DLC paper, Figure 4): the Fréchet distance of samples of the DiT's stored checkpoints (the EMA
weights kept every `dit.ckpt_every` steps, and the final ones), per conditioning, without guidance, on the stages
`dlc-pipeline` and `conditioning` train (same configs: the DiTs are cache hits; only samples are computed).

    variant        c drawn from   the DiT
    dlc            the SEDD prior the DLC-conditioned DiT
    label          the labels'    the class-conditional DiT (shapes: the shape)
                   marginal
    unconditional  -              the unconditional DiT (the reference every step is compared with)
    real-train     -              training images: the FD floor, once per seed

Per variant and checkpoint: FD with its bootstrap interval (and the other image metrics); per checkpoint the paired
difference of each conditioned variant to `unconditional` at the same step (`{fd}_gap`: the same sample indices, so
the same DiT noise). The finding — at how many checkpoints a conditioning is significantly below `unconditional`,
and the first step at which it reaches the unconditional DiT's final FD — is computed from these rows
(`fd_vs_steps_report`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from dlc.validate import ConfigError

from ..conditioning import generate
from ..experiment import experiment
from ..image_eval import ImageEvaluation
from ..run import RunContext
from ..stages import dit as sdit
from ..stages.data import DATA, load_split
from .dlc_pipeline import build_extractor, seed_stages
from .dlc_pipeline_config import VARIANTS, DLCPipelineConfig, EvalConfig
from .fd_vs_steps_report import add_figures_and_notes

GENERATED = ("dlc", "label", "rcg", "embedding", "unconditional")     # conditions drawn from a prior, or none


@dataclass(frozen=True)
class FdVsStepsConfig(DLCPipelineConfig):
    eval: EvalConfig = field(default_factory=lambda: EvalConfig(variants=("dlc", "label", "unconditional",
                                                                          "real-train")))

    def __post_init__(self):
        super().__post_init__()
        bad = [v for v in self.eval.variants if v not in GENERATED + ("real-train",)]
        if bad or "unconditional" not in self.eval.variants:
            raise ConfigError("eval.variants", list(self.eval.variants),
                              f"has {bad[0]!r}, which is not generated from a prior" if bad else
                              "must include unconditional (every checkpoint is compared with it)",
                              f"choose from {', '.join(GENERATED)}, real-train, with unconditional")
        if not self.dit.ckpt_every or self.dit.ckpt_every >= self.dit.steps:
            raise ConfigError("dit.ckpt_every", self.dit.ckpt_every, "keeps no checkpoint before the final weights, "
                              "so there is no curve", f"set dit.ckpt_every below dit.steps={self.dit.steps}")
        if self.dit_sampling.cfg_scale != 1.0:
            raise ConfigError("dit_sampling.cfg_scale", self.dit_sampling.cfg_scale, "guides the samples; Figure 4 "
                              "is without guidance", "set dit_sampling.cfg_scale=1")


class _AtStep(dict):
    """A DiT stage value whose 'model' is the checkpoint at `path`, read only when a sample set is computed."""

    def __init__(self, path):
        super().__init__()
        self.path = path

    def __missing__(self, key):
        if key != "model":
            raise KeyError(key)
        self["model"] = sdit.load_checkpoint(self.path)
        return self["model"]


@experiment("fd-vs-steps", config=FdVsStepsConfig, code=("bench.experiments.fd_vs_steps_report",),
            description="FD along training (Fig. 4): samples of the stored DiT checkpoints, dlc vs label vs none")
def run_fd_vs_steps(ctx: RunContext) -> None:
    from ..metrics.frechet import fd_paired_resamples
    from ..metrics.stats import percentile_interval

    cfg: FdVsStepsConfig = ctx.config
    extractor = build_extractor(ctx, cfg.eval)
    fd_key = extractor.metric_label()
    variants = [v for v in cfg.eval.variants if v != "real-train"]
    ctx.display(metric_order=[fd_key, f"{fd_key}_gap", "precision", "recall", "vendi", "object_frac"],
                label_order={"variant": list(cfg.eval.variants)})
    with ctx.timer("data"):
        train, test = load_split(cfg.data, "train"), load_split(cfg.data, "test")
    k_data = ctx.key(DATA, cfg.data)
    n = cfg.eval.n_samples
    evaluate = ImageEvaluation(ctx, cfg.data, cfg.eval, extractor, train, test, k_data)
    curves: dict = {}
    for seed in ctx.seeds:
        src, dits = seed_stages(ctx, cfg, seed, train, test, k_data, [VARIANTS[v][0] for v in variants],
                                encoder_rows=False)
        if "real-train" in cfg.eval.variants:
            evaluate("real-train", train.subset(range(min(n, len(train)))).images,
                     ctx.key(DATA, {"train": n}, upstream=[k_data]), seed, reconstruction=False, conditioned=False)
        steps = sorted(set.intersection(*(set(dits[VARIANTS[v][0]][0]["checkpoints"]) for v in variants)))
        if len(steps) < 2:
            raise ConfigError("dit.ckpt_every", cfg.dit.ckpt_every, f"left {len(steps)} stored checkpoint(s) in the "
                              "cached DiTs", "retrain with dit.ckpt_every below dit.steps (or --force)")
        feats = {}
        for variant in variants:
            cname, source = VARIANTS[variant]
            dit, k_dit = dits[cname]
            for step in steps:
                with ctx.labelled(step=step):
                    imgs, k_imgs = generate(src, cname, source, _AtStep(dit["checkpoints"][step]), k_dit, n,
                                            variant, step=step)
                    feats[variant, step] = evaluate(variant, imgs, k_imgs, seed, reconstruction=False,
                                                    conditioned=cname != "none")
                if seed == ctx.seeds[0] and step in (steps[0], steps[-1]):
                    curves[variant, step] = imgs[:cfg.eval.grid]
        if cfg.eval.bootstrap < 2:
            continue
        with ctx.timer("paired bootstrap"):
            for step in steps:
                (base, *others), res = fd_paired_resamples(
                    real=evaluate.real, fakes=[feats["unconditional", step]] + [feats[v, step] for v in variants
                                                                                if v != "unconditional"],
                    n_resamples=cfg.eval.bootstrap, seed=seed)
                for i, v in enumerate(v for v in variants if v != "unconditional"):
                    d = float(others[i] - base)
                    lo, hi = percentile_interval(res[:, i + 1] - res[:, 0], d, 0.95, recentre=True)
                    with ctx.labelled(step=step):
                        ctx.add_metric(f"{fd_key}_gap", d, higher_is_better=False, ci_low=float(lo), ci_high=float(hi),
                                       seed=seed, variant=v, against="unconditional", n=n)
    add_figures_and_notes(ctx, cfg, curves, fd_key)


__all__ = ["FdVsStepsConfig", "run_fd_vs_steps"]
