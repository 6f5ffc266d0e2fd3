"""Token diffusion ("tokenize and diffuse", Zhan & Lou, seed 004): class-conditional discrete diffusion over VQ image
tokens — SEDD with the absorbing graph, the uniform graph, and the absorbing graph with 2-D RoPE — against MaskGIT,
all on one tokenizer, one network size and one training budget (`bench.stages.tokens`).

    variant     p(x | class) over the tokens of a VQ tokenizer, decoded
    absorb      SEDD, absorbing graph, 1-D RoPE over the row-major token sequence, analytic (Tweedie) sampler
    uniform     SEDD, uniform graph, the same network and sampler
    absorb-2d   SEDD, absorbing graph, 2-D (axial) RoPE over the token grid
    maskgit     the absorb network trained with MaskGIT's masked cross-entropy (cosine mask schedule), decoded by
                confidence-based parallel decoding
    vq-recon    the tokenizer's reconstruction of held-out images: the floor every variant is bounded by
    real-train  real training images: the Fréchet floor of the features

Sample i is conditioned on class i mod num_classes (the data set's labels, or one factor of `shapes`,
`class_factor`), with classifier-free guidance w (`sampling.cfg_scale`, s_c^(1+w)·s_u^(−w)). Per variant: the
Fréchet distance with its bootstrap interval, precision / recall / density / coverage / Vendi, class agreement of the
samples with their label read by a classifier trained on real training images (its held-out accuracy is the
ceiling; on shapes also by the nearest exact render), the sampling cost (seconds per image and per step as measured
when the samples were drawn, forward passes and FLOPs per image), FD against the number of sampling steps, and paired
FD differences between the variants (one resample of sample indices shared by all), from which the report states
which of the seed's orderings (Absorb-2D < Absorb < Uniform; MaskGIT vs SEDD) reproduce.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch

from dlc.validate import ConfigError, check, nonempty

from ..experiment import experiment
from ..run import RunContext
from ..stages import tokens as stok
from ..stages.data import DATA, DataConfig, load_split
from .token_diffusion_report import PAIRS, add_figures_and_notes

VARIANTS = tuple(stok.VARIANTS)
FLOORS = ("vq-recon", "real-train")


@dataclass(frozen=True)
class TokenEvalConfig:
    n_samples: int = 1000            # generated images per variant and steps (≤ data.n_test: vq-recon uses them)
    features: str = "effnet-lite0"   # bench.features extractor
    weights: str = ""                # the extractor's weights file ('' = its default source)
    resize: str = ""
    feature_batch_size: int = 100
    bootstrap: int = 200             # resamples of the FD intervals and of the paired differences
    n_classifier: int = 3000         # real training images the class classifier is fitted on (a share held out)
    per_class: int = 8               # images per class in the sample grids
    save_samples: bool = True        # samples/<variant>.npz (ADM format) for the main steps

    def __post_init__(self):
        from bench.features import FEATURE_EXTRACTORS, RESIZE_MODES
        from dlc.validate import choice

        check(self, positive=("n_samples", "feature_batch_size", "n_classifier", "per_class"),
              non_negative=("bootstrap",))
        choice("features", self.features, FEATURE_EXTRACTORS.names())
        if self.resize:
            choice("resize", self.resize, RESIZE_MODES)


def _data() -> DataConfig:
    return DataConfig(dataset="fashion-mnist", n_train=10_000, n_test=2_000, image_size=32)


@dataclass(frozen=True)
class TokenDiffusionConfig:
    data: DataConfig = field(default_factory=_data)
    class_factor: str = ""           # shapes: the factor that is the class (e.g. colour); '' = the data set's labels
    tokenizer: stok.TokenizerConfig = field(default_factory=stok.TokenizerConfig)
    net: stok.TokenNetConfig = field(default_factory=stok.TokenNetConfig)
    sampling: stok.TokenSamplingConfig = field(default_factory=stok.TokenSamplingConfig)
    variants: tuple[str, ...] = VARIANTS
    floors: tuple[str, ...] = FLOORS
    eval: TokenEvalConfig = field(default_factory=TokenEvalConfig)

    def __post_init__(self):
        from ..registry import did_you_mean

        nonempty("variants", self.variants, f"name at least one of {', '.join(VARIANTS)}")
        for group, known in (("variants", VARIANTS), ("floors", FLOORS)):
            for v in getattr(self, group):
                if v not in known:
                    raise ConfigError(group, list(getattr(self, group)), f"has unknown {v!r}."
                                      f"{did_you_mean(v, list(known))}", f"choose from {', '.join(known)}")
        if self.data.dataset == "shapes":
            from dlc.data.shapes import shapes_factor_values

            values = shapes_factor_values()
            if self.class_factor and self.class_factor not in values:
                raise ConfigError("class_factor", self.class_factor, f"is not a shapes factor."
                                  f"{did_you_mean(self.class_factor, list(values))}", f"choose from {', '.join(values)}")
        elif self.class_factor:
            raise ConfigError("class_factor", self.class_factor, f"needs factor labels, which {self.data.dataset} "
                              "does not have", "set class_factor='' (the data set's own labels)")
        if not self.tokenizer.pretrained and self.tokenizer.vq.image_size != self.data.image_size:
            raise ConfigError("tokenizer.vq.image_size", self.tokenizer.vq.image_size, f"differs from "
                              f"data.image_size={self.data.image_size}", "set both to the same size")
        n_test = self.data.sizes()[1]
        if "vq-recon" in self.floors and n_test and self.eval.n_samples > n_test:
            raise ConfigError("eval.n_samples", self.eval.n_samples, f"exceeds data.n_test={n_test}; vq-recon "
                              "reconstructs one held-out image per sample", "lower eval.n_samples")

    @property
    def steps_list(self) -> list[int]:
        """Every number of sampling steps drawn: the grid and the main one."""
        return sorted({*self.sampling.steps_grid, self.sampling.steps})


def class_labels(cfg: TokenDiffusionConfig, data) -> tuple[torch.Tensor, list[str]]:
    """(N,) class of each image and the class names: one shapes factor, or the data set's labels."""
    if cfg.class_factor:
        return data.factors[cfg.class_factor].long(), list(data.factor_values[cfg.class_factor])
    return data.labels.long(), list(data.class_names)


@experiment("token-diffusion", config=TokenDiffusionConfig, code=("bench.experiments.token_diffusion_report",),
            description="seed 004: class-conditional SEDD (absorb, uniform, absorb-2D) over VQ tokens vs MaskGIT")
def run_token_diffusion(ctx: RunContext) -> None:
    from dlc.tokens.vq import codebook_stats, psnr

    from ..aggregate import t_interval
    from ..flops import count_flops
    from ..image_eval import ImageEvaluation
    from ..metrics.factors import FactorClassifier, ShapesRenderReader, agreement_rows, factor_agreement
    from .dlc_pipeline import build_extractor

    cfg: TokenDiffusionConfig = ctx.config
    extractor = build_extractor(ctx, cfg.eval)
    fd_key = extractor.metric_label()
    ctx.display(metric_order=[fd_key, f"{fd_key}_gap", "best_frac", "class_agreement", "precision", "recall",
                              "density", "coverage", "vendi", "psnr", "codebook_usage", "codebook_perplexity",
                              "sample_seconds_per_image", "sample_seconds_per_step", "forwards_per_image",
                              "forward_mflops", "train_loss"],
                label_order={"variant": [*VARIANTS, *FLOORS]})
    with ctx.timer("data"):
        train, test = load_split(cfg.data, "train"), load_split(cfg.data, "test")
    y_train, class_names = class_labels(cfg, train)
    y_test = class_labels(cfg, test)[0]
    K = len(class_names)
    ctx.log(f"data: {len(train)} train / {len(test)} test images {tuple(train.image_shape)}, {K} classes")
    k_data = ctx.key(DATA, cfg.data)
    n = min(cfg.eval.n_samples, len(test))
    evaluate = ImageEvaluation(ctx, cfg.data, cfg.eval, extractor, train, test, k_data)
    quiet = ImageEvaluation(ctx, cfg.data, replace(cfg.eval, save_samples=False), extractor, train, test, k_data)
    n_cls = min(cfg.eval.n_classifier, len(train))
    k_cls = ctx.key(DATA, {"train": n_cls}, upstream=[k_data])
    with ctx.timer("class classifier"):
        cls_feats = evaluate.features(train.images[:n_cls], k_cls, f"{n_cls} training images")
        clf = FactorClassifier().fit(cls_feats, {"class": y_train[:n_cls].numpy()}, seed=cfg.data.seed)
    reader = ShapesRenderReader(cfg.data.image_size) if cfg.data.dataset == "shapes" and cfg.class_factor else None

    def agreement(feats, images, labels, **lab):
        rows = agreement_rows(factor_agreement(clf.read(feats), {"class": labels.numpy()}), metric="class_agreement",
                              reader="classifier", **lab)
        if reader is not None:
            read = reader.read(images)
            rows += agreement_rows(factor_agreement(read, {cfg.class_factor: labels.numpy()}),
                                   metric="class_agreement", reader="render", **lab)
        ctx.add_rows(rows)

    grids, main_feats, fd_steps = {}, {}, {}
    for seed in ctx.seeds:
        if "real-train" in cfg.floors:
            evaluate("real-train", train.images[:n], ctx.key(DATA, {"train": n}, upstream=[k_data]), seed,
                     reconstruction=False, conditioned=False)
        agreement(evaluate.real[:n], test.images[:n], y_test[:n], variant="real-test", seed=seed)
        k_vq = ctx.key(stok.TOKENIZER, cfg.tokenizer, upstream=[k_data], seed=seed)
        vq = ctx.stage(stok.TOKENIZER, k_vq, lambda: stok.train_tokenizer(ctx, cfg.tokenizer, train.images, seed),
                       desc=f"VQ tokenizer seed={seed}")
        k_grid = ctx.key(stok.TOKEN_GRIDS, {"n_test": n}, upstream=[k_vq, k_data])
        tok = ctx.stage(stok.TOKEN_GRIDS, k_grid, lambda: stok.encode_sets(
            ctx, vq, {"train": train.images, "test": test.images[:n]}), desc=f"VQ tokens seed={seed}")
        V, L = int(vq.config.num_vq_embeddings), tok["train"].shape[1]
        recon = tok["recon:test"]
        m, lo, hi = t_interval(psnr(test.images[:n], recon).astype(np.float64))
        ctx.add_metric("psnr", m, higher_is_better=True, ci_low=lo, ci_high=hi, n=n, seed=seed, variant="vq-recon")
        stats = codebook_stats(tok["train"], V)
        ctx.add_metric("codebook_usage", stats["usage"], higher_is_better=True, seed=seed, variant="vq-recon", n=V)
        ctx.add_metric("codebook_perplexity", stats["perplexity"], higher_is_better=True, seed=seed,
                       variant="vq-recon", n=V)
        if "vq-recon" in cfg.floors:
            feats = evaluate("vq-recon", recon, k_grid, seed, reconstruction=True, conditioned=True)
            agreement(feats, recon, y_test[:n], variant="vq-recon", seed=seed)
        for variant in cfg.variants:
            spec = {"net": cfg.net, "variant": variant, "spec": stok.VARIANTS[variant], "classes": K}
            k_model = ctx.key(stok.TOKEN_MODEL, spec, upstream=[k_grid], seed=seed)
            trained = ctx.stage(stok.TOKEN_MODEL, k_model, lambda: stok.train_variant(
                ctx, cfg.net, variant, tok["train"], y_train, V, K, seed), desc=f"{variant} seed={seed}")
            model = trained["model"]
            ctx.add_metric("train_loss", float(trained["losses"][-4:].mean()), higher_is_better=None, seed=seed,
                           variant=variant, n=cfg.net.train.steps)
            x1, s1, y1 = torch.zeros(1, L, dtype=torch.long), torch.ones(1), torch.zeros(1, dtype=torch.long)
            ctx.add_metric("forward_mflops", count_flops(model, x1, s1, y1) / 1e6, higher_is_better=None, seed=seed,
                           variant=variant)
            for steps in cfg.steps_list:
                main = steps == cfg.sampling.steps
                scfg = replace(cfg.sampling, steps=steps, steps_grid=(steps,))
                k_s = ctx.key(stok.TOKEN_SAMPLES, {"sampling": scfg, "n": n, "classes": K},
                              upstream=[k_model, k_vq], seed=seed)
                out = ctx.stage(stok.TOKEN_SAMPLES, k_s, lambda: stok.sample_class_images(
                    ctx, scfg, model, vq, variant, steps, n, K, seed), desc=f"{n} samples {variant} steps={steps}")
                imgs, labels = out["images"], out["labels"]
                with ctx.labelled(steps=steps):
                    feats = quiet(variant, imgs, k_s, seed, reconstruction=False, conditioned=True)
                    agreement(feats, imgs, labels, variant=variant, seed=seed)
                    per_image = out["seconds"] / max(out["n_local"], 1)
                    ctx.add_metric("sample_seconds_per_image", per_image, higher_is_better=False, seed=seed,
                                   variant=variant, n=out["n_local"])
                    ctx.add_metric("sample_seconds_per_step", per_image / steps, higher_is_better=False, seed=seed,
                                   variant=variant, n=out["n_local"])
                    denoise = stok.VARIANTS[variant]["sampler"] != "maskgit"
                    ctx.add_metric("forwards_per_image", (steps + denoise) * (2 if cfg.sampling.cfg_scale else 1),
                                   higher_is_better=False, seed=seed, variant=variant)
                if main:
                    main_feats[(seed, variant)] = feats
                    if seed == ctx.seeds[0]:
                        grids[variant] = (imgs, labels)
                        if cfg.eval.save_samples:
                            ctx.add_samples(variant, imgs, f"{variant} samples, {steps} steps (ADM npz: arr_0 N×H×W×3 "
                                            f"uint8; sample i conditioned on class i mod {K})")
        if seed == ctx.seeds[0] and "vq-recon" in cfg.floors:
            grids["vq-recon"] = (recon, y_test[:n])
        if cfg.eval.bootstrap >= 2 and len(cfg.variants) >= 2:
            fd_steps[seed] = paired_gaps(ctx, evaluate.real, {v: main_feats[(seed, v)] for v in cfg.variants},
                                         fd_key, seed)
    add_figures_and_notes(ctx, cfg, grids, class_names, fd_steps, fd_key)


def paired_gaps(ctx: RunContext, real, feats: dict, fd_key: str, seed: int) -> dict:
    """Paired FD differences between the variants (one resample of sample indices shared by all: sample i has
    class i mod K in every set): a '{fd_key}_gap' row per pair of PAIRS present (variant − against, recentred 95 %
    interval) and 'best_frac' per variant (the fraction of resamples in which it has the lowest FD)."""
    from ..aggregate import grid_optimum
    from ..metrics.frechet import fd_paired_resamples
    from ..metrics.stats import percentile_interval

    names = list(feats)
    with ctx.timer("paired bootstrap"):
        values, res = fd_paired_resamples(real=real, fakes=[feats[v] for v in names],
                                          n_resamples=ctx.config.eval.bootstrap, seed=seed)
    opt = grid_optimum(values, res)
    for i, v in enumerate(names):
        ctx.add_metric("best_frac", float(opt["best_frac"][i]), higher_is_better=None, seed=seed, variant=v,
                       n=ctx.config.eval.bootstrap)
    gaps = {}
    for a, b in PAIRS:
        if a in names and b in names:
            i, j = names.index(a), names.index(b)
            d = float(values[i] - values[j])
            lo, hi = percentile_interval(res[:, i] - res[:, j], d, 0.95, recentre=True)
            ctx.add_metric(f"{fd_key}_gap", d, higher_is_better=False, ci_low=float(lo), ci_high=float(hi), seed=seed,
                           variant=a, against=b, n=len(feats[a]))
            gaps[(a, b)] = (d, float(lo), float(hi))
    return {"gaps": gaps, "best": names[opt["best"]], "values": dict(zip(names, map(float, values)))}


__all__ = ["TokenDiffusionConfig", "TokenEvalConfig", "VARIANTS", "class_labels", "paired_gaps",
           "run_token_diffusion"]
