"""The DLC method end to end (paper Sec. 4): SEM encoder → DLCs → SEDD prior → DiT p(x|c) → samples → metrics.

The stages live in `bench.stages` and are shared with every other experiment through one stage cache.
Evaluation variants:

    dlc            c ~ SEDD (remasking corrector), x ~ DiT(c): unconditional generation with DLCs
    unconditional  x ~ DiT(∅) of the same size and budget, trained without conditioning
    dlc-recon      c = the DLC of a held-out image, x ~ DiT(c): the encoder–decoder setting of Table 2
    real-train     training images: the metric's floor at this sample size
    rcg, embedding, label (and their -recon): the same with the RCG projection / the continuous embedding (each
                   with an RDM prior) / the class label (its training marginal) in place of the DLC
                   (`bench.conditioning`); not in the default list

Metrics per variant go through `bench.evaluate` (Fréchet distance labelled by the extractor, precision/recall,
density/coverage, Vendi); for the codes: linear probes of factors (DLC one-hot vs continuous embedding), the
per-position total variation between prior samples and held-out codes, the fraction of copied training codes.
Under torchrun every rank runs this function (DDP training, sampling split by global index); rank 0 writes.
"""
from __future__ import annotations

import numpy as np
import torch

from ..codestats import probe_rows
from ..conditioning import Sources, generate, train_dit
from ..errors import UserError
from ..experiment import experiment
from ..image_eval import ImageEvaluation
from ..run import RunContext
from ..stages import dit as sdit, encoder as senc
from ..stages.data import DATA, load_split
from .dlc_pipeline_config import VARIANTS, DLCPipelineConfig, EvalConfig
from .dlc_pipeline_report import add_figures_and_notes

def build_extractor(ctx: RunContext, cfg: EvalConfig):
    from bench.features import build_extractor as build

    kw = {"device": ctx.device, **({"weights": cfg.weights} if cfg.weights else {}),
          **({"resize": cfg.resize} if cfg.resize else {})}
    try:
        return build(cfg.features, **kw)
    except ValueError as e:      # unreadable weights: an input error, before any training
        raise UserError(f"eval.weights={cfg.weights}: {e}", hint=f"set eval.weights to a {cfg.features} weights "
                        "file, or leave it empty for the extractor's default") from None


@experiment("dlc-pipeline", config=DLCPipelineConfig, version="2",
            code=("bench.experiments.dlc_pipeline_config", "bench.experiments.dlc_pipeline_report"),
            description="DLC end to end: SEM encoder → SEDD prior → DiT; FD of DLC vs unconditional samples")
def run_dlc_pipeline(ctx: RunContext) -> None:
    cfg: DLCPipelineConfig = ctx.config
    extractor = build_extractor(ctx, cfg.eval)       # fail early (missing weights) before training
    ctx.display(metric_order=[extractor.metric_label(), "precision", "recall", "density", "coverage", "vendi",
                              "factor_agreement", "object_frac", "source_mse", "render_mse", "nearest_real_mse",
                              "code_swap_ratio", "probe_top1", "code_tv", "code_copy_frac", "train_loss"],
                label_order={"variant": list(VARIANTS)})
    with ctx.timer("data"):
        train, test = load_split(cfg.data, "train"), load_split(cfg.data, "test")
    ctx.log(f"data: {len(train)} train / {len(test)} test images {tuple(train.image_shape)}")
    k_data = ctx.key(DATA, cfg.data)
    n = cfg.eval.n_samples
    figure_sets: dict[str, torch.Tensor] = {"real (test)": test.subset(range(min(cfg.eval.grid, len(test)))).images}
    evaluate = ImageEvaluation(ctx, cfg.data, cfg.eval, extractor, train, test, k_data)
    compose = None
    for seed in ctx.seeds:
        src, dits = seed_stages(ctx, cfg, seed, train, test, k_data,
                                [VARIANTS[v][0] for v in cfg.eval.variants if VARIANTS[v][0]])

        # -- samples and their metrics
        for variant in cfg.eval.variants:
            cname, source = VARIANTS[variant]
            if cname is None:
                imgs, k_imgs = train.subset(range(min(n, len(train)))).images, ctx.key(DATA, {"train": n},
                                                                                         upstream=[k_data])
            else:
                imgs, k_imgs = generate(src, cname, source, *dits[cname], n, variant)
            if seed == ctx.seeds[0]:
                figure_sets[variant] = imgs[:cfg.eval.grid]
            evaluate(variant, imgs, k_imgs, seed, reconstruction=source == "held-out", conditioned=cname is not None)
        add_gaps_to_unconditional(ctx, extractor.metric_label(), seed)
        if seed == ctx.seeds[0] and "dlc" in dits and cfg.eval.n_compose:
            compose = ctx.stage(sdit.IMAGE_SAMPLES, ctx.key(sdit.IMAGE_SAMPLES, {
                "sampling": cfg.dit_sampling, "compose": cfg.eval.n_compose}, upstream=[dits["dlc"][1], src.k_codes],
                seed=seed), lambda: _compose(ctx, cfg, dits["dlc"][0]["model"], src.codes["test"].tokens,
                                             test.images, seed), desc="composition")
    add_figures_and_notes(ctx, cfg, figure_sets, compose, extractor.metric_label(), extractor.describe())


def seed_stages(ctx: RunContext, cfg: DLCPipelineConfig, seed: int, train, test, k_data,
                conditionings: list[str], encoder_rows: bool = True) -> tuple[Sources, dict]:
    """One seed's trained stages, shared through the stage cache by every experiment built on them: SEM encoder →
    DLCs (with the encoder's rows and the probes when `encoder_rows`), the DiT inputs, and one DiT per
    conditioning in `conditionings` (bench.conditioning names). The stage groups `cfg.vary` does not name are the
    first seed's. Returns the seed's `Sources` (which draws from the priors on demand) and {conditioning: (DiT
    stage value, key)}."""
    ps = seed if "prior" in cfg.vary else ctx.seeds[0]
    enc, k_enc, es = encoder_stage(ctx, cfg, seed, train, k_data)
    k_codes = ctx.key(senc.CODES, cfg.encoder, upstream=[k_enc, k_data], seed=es)
    codes = ctx.stage(senc.CODES, k_codes, lambda: senc.export_codes(ctx, cfg.encoder, enc["encoder"],
                                                                     {"train": train, "test": test}),
                      desc=f"export DLCs seed={es}")
    tr, te = codes["train"], codes["test"]
    if es == seed and encoder_rows:      # the encoder's own rows, once per encoder
        ctx.add_metric("train_loss", float(np.mean(enc["losses"][-50:])), higher_is_better=None, seed=seed,
                       stage="encoder", n=cfg.encoder.train.steps)
        usage = [len(torch.unique(tr.tokens[:, j])) for j in range(cfg.encoder.L)]
        ctx.add_metric("codes_per_position", float(np.mean(usage)), higher_is_better=None, seed=seed,
                       stage="encoder", n=len(tr.tokens))
        with ctx.timer("probes"):   # what the codes carry: DLC one-hot vs the continuous embedding
            ctx.add_rows(probe_rows(tr, te, cfg.eval.probe_factors, cfg.encoder.V, cfg.eval.probe_n, seed))
    src = Sources(ctx, cfg, seed, codes, k_codes, encoder_seed=es, prior_seed=ps)

    # -- DiTs p(x|c) and p(x), one per conditioning
    k_lat = sdit.latents_key(ctx, cfg.dit, k_data, cfg.data.seed)
    latents = ctx.stage(sdit.LATENTS, k_lat, lambda: sdit.encode_latents(ctx, cfg.dit, train, cfg.data.seed),
                        desc="images → DiT inputs")
    k_hlat = sdit.latents_key(ctx, cfg.dit, k_data, cfg.data.seed, split="held-out")
    held = ctx.stage(sdit.LATENTS, k_hlat, lambda: sdit.encode_latents(
        ctx, cfg.dit, test.subset(range(min(cfg.dit.monitor_n, len(test)))), cfg.data.seed),
        desc="held-out images → DiT inputs (code-swap gap)")
    return src, {cname: train_dit(src, cname, latents, held, k_lat, k_hlat) for cname in dict.fromkeys(conditionings)}


def encoder_stage(ctx: RunContext, cfg: DLCPipelineConfig, seed: int, train, k_data) -> tuple[dict, object, int]:
    """(the SEM encoder stage's value, its key, its seed) for run seed `seed`: the first seed's encoder unless
    `cfg.vary` names 'encoder'."""
    es = seed if "encoder" in cfg.vary else ctx.seeds[0]
    k_enc = ctx.key(senc.ENCODER, cfg.encoder, upstream=[k_data], seed=es)
    enc = ctx.stage(senc.ENCODER, k_enc, lambda: senc.train_encoder(ctx, cfg.encoder, cfg.data.image_size, train,
                                                                    es), desc=f"SEM encoder seed={es}")
    return enc, k_enc, es


def add_gaps_to_unconditional(ctx: RunContext, fd_key: str, seed: int) -> None:
    """Per generated variant, FD(variant) − FD(unconditional) of this seed as a row ('{fd_key}_gap'): its
    across-seed aggregate is the paired comparison (mean difference with a t-interval over seeds), which an
    interval on each FD alone cannot give when training noise dominates."""
    fd = {r["variant"]: r["value"] for r in ctx.metrics if r["metric"] == fd_key and r.get("seed") == seed
          and all(r.get(k) == v for k, v in ctx.row_labels.items())}
    if "unconditional" not in fd:
        return
    for variant, value in fd.items():
        if VARIANTS[variant][0] not in (None, "none"):
            ctx.add_metric(f"{fd_key}_gap", value - fd["unconditional"], higher_is_better=False, seed=seed,
                           variant=variant, against="unconditional", n=ctx.config.eval.n_samples)


def _compose(ctx: RunContext, cfg: DLCPipelineConfig, model, tokens: torch.Tensor, images: torch.Tensor,
             seed: int) -> torch.Tensor:
    """Rows of [image a | image b | x ~ DiT(compose(c_a, c_b))] for n_compose held-out pairs."""
    from dlc.compose import compose_tokens

    k = cfg.eval.n_compose
    a, b = torch.arange(k), torch.arange(k, 2 * k)
    mixed = torch.cat([compose_tokens(torch.stack([tokens[i], tokens[j]]), indices=[int(i)], seed=seed)
                       for i, j in zip(a, b)])                                         # (k, L)
    x = sdit.sample_images(ctx, cfg.dit, cfg.dit_sampling, model, mixed, k, seed + 7919, "sample compositions")
    return torch.stack([images[a], images[b], x], dim=1).flatten(0, 1)                # (3k, 3, H, W)
