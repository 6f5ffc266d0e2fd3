"""The DLC method end to end (paper Sec. 4): SEM encoder → DLCs → SEDD prior → DiT p(x|c) → samples → metrics.

Stages (each cached by content, so a killed run resumes and a changed setting recomputes only what depends on it):

    data        train / test images of a registered data set (shapes by default, generated in code)
    encoder     SEM encoder (backbone + Simplicial Embedding head) trained with DINO + KoLeo
    codes       DLC export of every train and test image: tokens (N, L), soft SEMs, continuous embedding
    sedd        SEDD-absorb prior p(c) on the train DLCs
    prior       c ~ p(c) with the configured sampler (the paper's remasking corrector by default)
    dit-*       DiT trained on the images, conditioned on the DLC (drop 0.1, for CFG) and unconditionally
    samples-*   variants: `dlc` (c ~ SEDD, x ~ DiT(c)), `unconditional`, `dlc-recon` (c = DLC of a held-out
                real image: the encoder–decoder setting of the paper's Table 2) and `real-train` (train images:
                the metric's floor at this sample size)
    features-*  features of every set with one registered extractor (EfficientNet-Lite0 offline by default)

Metrics per variant: the Fréchet distance on the extractor's features against the held-out test images
(labelled by the extractor: `fd_effnet`, `fid`, `fd_dinov2`), precision/recall (k=3), density/coverage (k=5)
and Vendi; for the codes: linear-probe accuracy of factors from one-hot DLCs vs the continuous embedding, the
per-position total variation between prior samples and held-out codes, and the fraction of prior samples that
copy a training code.

Under torchrun every rank runs this function: training is DDP (dlc/), sampling and feature extraction are
split over ranks by global sample index and gathered, and only rank 0 writes.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..experiment import experiment
from ..run import RunContext

VARIANTS = ("dlc", "unconditional", "dlc-recon", "real-train")
GENERATED = ("dlc", "unconditional", "dlc-recon")


#################################################################################
#                                    Config                                     #
#################################################################################

@dataclass(frozen=True)
class DataConfig:
    dataset: str = "shapes"          # shapes | fashion-mnist | digits | imagefolder
    n_train: int = 10_000            # 0: the whole split
    n_test: int = 2_000
    image_size: int = 32
    data_dir: str = ""               # fashion-mnist idx directory / imagefolder root ('' = the loader's default)
    test_split: str = "test"         # imagefolder: the held-out sub-tree name (e.g. 'val')
    seed: int = 0


@dataclass(frozen=True)
class EncoderConfig:
    backbone: str = "vit-mini"       # dlc.encoder.BACKBONES: vit-tiny, vit-mini, ..., efficientnet-lite0, dinov2
    backbone_path: str = ""          # dinov2: hub id or local directory
    input_size: int = 0              # backbone input side (0: the backbone's default)
    L: int = 32
    V: int = 32
    tau: float = 1.0
    steps: int = 1500
    batch_size: int = 64
    lr: float = 5e-4
    warmup_steps: int = 100
    head_out_dim: int = 1024
    koleo_weight: float = 0.1
    freeze_backbone: bool = False
    n_local_crops: int = 2
    export_batch_size: int = 256


@dataclass(frozen=True)
class PriorConfig:
    model: str = "tiny"              # dlc.sedd.SEDD_MODELS
    hidden: int = 0                  # 0: the preset's
    n_blocks: int = 0
    n_heads: int = 0
    steps: int = 2000
    batch_size: int = 256
    lr: float = 1e-3
    warmup: int = 100
    ema: float = 0.999
    sampler: str = "corrector"       # analytic | euler | corrector | maskgit
    sample_steps: int = 64
    eta: float = 0.01                # remasking strength (corrector)
    t0: float = 0.3
    t1: float = 0.55
    sample_batch_size: int = 500


@dataclass(frozen=True)
class DiTStageConfig:
    model: str = "DiT-mini/4"        # dlc.dit.DIT_MODELS
    vae: str = "pixel"               # pixel, or an AutoencoderKL hub id / directory (latent diffusion)
    steps: int = 3000
    batch_size: int = 128
    lr: float = 5e-4
    ema: float = 0.999
    grad_clip: float = 1.0
    drop_prob: float = 0.1           # null-condition probability (DLC conditioner)
    sampler: str = "ddpm"            # ddpm | ddim
    sample_steps: int = 100
    cfg_scale: float = 1.0           # classifier-free guidance on the DLC (1: none)
    guided_channels: int = 0         # 0: all channels (the DLC convention); 3: the DiT/RCG one
    sample_batch_size: int = 250
    encode_batch_size: int = 64


@dataclass(frozen=True)
class EvalConfig:
    n_samples: int = 2_000           # generated images per variant (and real train images for the floor)
    variants: tuple[str, ...] = VARIANTS
    features: str = "effnet-lite0"   # bench.features extractor
    weights: str = ""                # the extractor's weights file ('' = its default source)
    resize: str = ""                 # '' = the extractor's default (legacy-tf / clean)
    feature_batch_size: int = 100
    bootstrap: int = 0               # bootstrap resamples for the Fréchet distance CI (0: none)
    probe_factors: tuple[str, ...] = ("shape", "colour")
    probe_n: int = 3000              # train codes for the probes (test codes are the probe test set)
    n_compose: int = 8               # composition pairs in the figure
    grid: int = 64                   # images per sample grid


@dataclass(frozen=True)
class DLCPipelineConfig:
    data: DataConfig = field(default_factory=DataConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    prior: PriorConfig = field(default_factory=PriorConfig)
    dit: DiTStageConfig = field(default_factory=DiTStageConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self):
        bad = [v for v in self.eval.variants if v not in VARIANTS]
        if bad:
            raise ValueError(f"unknown variant(s) {bad}; choose from {', '.join(VARIANTS)}")
        if self.eval.n_samples > self.data.n_test and "dlc-recon" in self.eval.variants:
            raise ValueError(f"eval.n_samples={self.eval.n_samples} exceeds data.n_test={self.data.n_test}, "
                             f"but dlc-recon needs one held-out image per sample; lower eval.n_samples")


#################################################################################
#                              Distributed helpers                              #
#################################################################################

def _my_range(n: int, ctx: RunContext) -> tuple[int, int]:
    """Contiguous block of global indices [lo, hi) of this rank (the whole range in one process)."""
    per = -(-n // ctx.world_size)
    return min(n, ctx.rank * per), min(n, (ctx.rank + 1) * per)


def _gather(local: torch.Tensor, lo: int, n: int) -> torch.Tensor:
    from dlc import dist as ddist

    return ddist.gather_indexed(local, torch.arange(lo, lo + len(local)), n).cpu()


#################################################################################
#                                    Stages                                     #
#################################################################################

def _load_data(cfg: DataConfig, split: str, n: int):
    from dlc.data import load_dataset

    n = n or None
    d = cfg.dataset
    if d == "shapes":
        opts = {"n": n, "seed": cfg.seed, "image_size": cfg.image_size}
    elif d == "fashion-mnist":
        opts = {"n": n, "image_size": cfg.image_size, "data_dir": cfg.data_dir or None}
    elif d == "digits":
        opts = {"image_size": cfg.image_size}
    elif d == "imagefolder":
        root = Path(cfg.data_dir) / (split if split == "train" else cfg.test_split) if cfg.data_dir else None
        return load_dataset(d, split=split, root=root, resolution=cfg.image_size, max_images=n)
    else:
        opts = {}
    data = load_dataset(d, split=split, **opts)
    if n is not None and len(data) > n:
        data = data.subset(range(n))
    return data


def _train_encoder(ctx: RunContext, cfg: DLCPipelineConfig, train, seed: int):
    from dlc.encoder import MultiCropConfig, SEMTrainConfig, build_sem_encoder, train_sem_encoder

    e = cfg.encoder
    from dlc.encoder import VIT_PRESETS

    opts: dict[str, Any] = {}
    if e.backbone in VIT_PRESETS:   # trained from scratch at the data's resolution
        opts["image_size"] = e.input_size or cfg.data.image_size
    elif e.input_size:
        opts["input_size"] = e.input_size
    torch.manual_seed(seed)
    enc = build_sem_encoder(e.backbone, L=e.L, V=e.V, tau=e.tau, backbone_path=e.backbone_path or None, **opts)
    tc = SEMTrainConfig(steps=e.steps, batch_size=e.batch_size, lr=e.lr, warmup_steps=min(e.warmup_steps, e.steps),
                        warmup_teacher_temp_steps=max(1, e.steps // 3), head_out_dim=e.head_out_dim,
                        koleo_weight=e.koleo_weight, freeze_backbone=e.freeze_backbone,
                        crops=dataclasses.replace(MultiCropConfig(), n_local=e.n_local_crops))
    bar = ctx.progress(total=e.steps, desc="train SEM encoder")

    def cb(step: int, logs: dict) -> None:
        bar.n = step
        bar.set_postfix(loss=f"{logs['loss']:.3f}", codes=f"{logs.get('codes_per_position', 0):.1f}")
        bar.refresh()

    res = train_sem_encoder(enc, train, tc, seed=seed, device=ctx.device, log_every=25, callback=cb)
    bar.close()
    return {"encoder": res.encoder.cpu(), "losses": res.losses, "logs": res.logs[-1] if res.logs else {},
            "seconds": res.seconds}


def _save_encoder(value: dict, d: Path) -> None:
    from dlc.common import atomic_write
    from dlc.encoder import save_sem_encoder

    save_sem_encoder(d / "encoder", value["encoder"])
    with atomic_write(d / "train.pt") as f:
        torch.save({k: v for k, v in value.items() if k != "encoder"}, f)


def _load_encoder(d: Path) -> dict:
    from dlc.encoder import load_sem_encoder

    enc, _ = load_sem_encoder(d / "encoder")
    return {"encoder": enc, **torch.load(d / "train.pt", weights_only=False)}


def _train_sedd(ctx: RunContext, cfg: DLCPipelineConfig, tokens: torch.Tensor, seed: int):
    from dlc.sedd import SEDD_MODELS, SEDDTrainConfig, train_sedd

    p = cfg.prior
    over = {k: getattr(p, k) for k in ("hidden", "n_blocks", "n_heads") if getattr(p, k)}
    if p.model not in SEDD_MODELS:
        raise ValueError(f"unknown SEDD preset prior.model={p.model!r}; choose one of {', '.join(SEDD_MODELS)}")
    mcfg = SEDD_MODELS[p.model](vocab_size=cfg.encoder.V, seq_len=cfg.encoder.L, **over)
    tc = SEDDTrainConfig(steps=p.steps, batch_size=p.batch_size, lr=p.lr, warmup=min(p.warmup, p.steps), ema=p.ema,
                         seed=seed, log_every=25)
    bar = ctx.progress(total=p.steps, desc="train SEDD prior")

    def cb(step: int, logs: dict) -> None:
        bar.n = step
        bar.set_postfix(loss=f"{logs.get('loss', float('nan')):.3f}")
        bar.refresh()

    model, ema = train_sedd(tokens, mcfg, tc, device=ctx.device, callback=cb)
    bar.close()
    return ema.cpu()


def _latents(ctx: RunContext, cfg: DLCPipelineConfig, data) -> torch.Tensor:
    """Images → what the DiT models: pixels in [-1, 1], or scaled VAE latents (posterior sample, per-index seed)."""
    from dlc.common import PerSampleRNG
    from dlc.dit import load_vae

    vae = load_vae(cfg.dit.vae, device=ctx.device)
    out = []
    for idx, x in data.batches(cfg.dit.encode_batch_size):
        x = x.to(ctx.device).float() / 127.5 - 1.0
        with torch.no_grad():
            out.append(vae.encode(x, PerSampleRNG(cfg.data.seed, idx.tolist(), device=ctx.device)).float().cpu())
    return torch.cat(out)


def _train_dit(ctx: RunContext, cfg: DLCPipelineConfig, latents: torch.Tensor, cond, name: str, seed: int):
    from dlc.dit import build_dit, create_diffusion, train_dit

    d = cfg.dit
    kw: dict[str, Any] = {"input_size": latents.shape[-1], "in_channels": latents.shape[1]}
    if cond is None:
        kw["cond"] = "none"
    else:
        kw.update(cond="dlc", dlc_length=cfg.encoder.L, dlc_vocab=cfg.encoder.V, drop_prob=d.drop_prob)
    torch.manual_seed(seed)
    model = build_dit(d.model, **kw)
    bar = ctx.progress(total=d.steps, desc=f"train DiT ({name})")

    def cb(step: int, logs: dict) -> None:
        bar.n = step
        bar.set_postfix(loss=f"{logs['loss']:.4f}")
        bar.refresh()

    res = train_dit(model, create_diffusion(), latents, cond, steps=d.steps, batch_size=d.batch_size, lr=d.lr,
                    ema_decay=d.ema, ema_warmup=True, grad_clip=d.grad_clip or None, seed=seed, device=ctx.device,
                    log_every=25, callback=cb)
    bar.close()
    return {"model": res.ema.cpu(), "losses": res.losses}


def _save_model(value: dict, d: Path) -> None:
    from dlc.common import atomic_write
    from dlc.dit import save_dit

    save_dit(d / "model", value["model"])
    with atomic_write(d / "losses.pt") as f:
        torch.save(value["losses"], f)


def _load_model(d: Path) -> dict:
    from dlc.dit import load_dit

    return {"model": load_dit(d / "model")[0], "losses": torch.load(d / "losses.pt", weights_only=False)}


def _sample_images(ctx: RunContext, cfg: DLCPipelineConfig, model, cond, n: int, seed: int, desc: str) -> torch.Tensor:
    """x ~ DiT(cond) for global sample indices [0, n), split over ranks; uint8 (n, 3, H, W)."""
    from dlc.dit import create_diffusion, load_vae, sample_dit, to_uint8

    d = cfg.dit
    lo, hi = _my_range(n, ctx)
    bar = ctx.progress(total=(hi - lo) * d.sample_steps, desc=desc)
    chunk = []
    for s in range(lo, hi, d.sample_batch_size):
        e = min(hi, s + d.sample_batch_size)
        c = None if cond is None else cond[s:e]
        x = sample_dit(model, create_diffusion(), c, num_samples=None if c is not None else e - s,
                       cfg_scale=d.cfg_scale, guided_channels=d.guided_channels or None, steps=d.sample_steps,
                       seed=seed, indices=range(s, e), batch_size=d.sample_batch_size, device=ctx.device,
                       sampler=d.sampler, clip_denoised=d.vae == "pixel",
                       progress=lambda i, total: bar.update(e - s))
        chunk.append(x)
    bar.close()
    lat = torch.cat(chunk) if chunk else torch.empty(0)
    vae = load_vae(d.vae, device=ctx.device)
    with torch.no_grad():
        imgs = [to_uint8(vae.decode(lat[i:i + 64].to(ctx.device))).permute(0, 3, 1, 2).cpu()
                for i in range(0, len(lat), 64)]
    local = torch.cat(imgs) if imgs else torch.empty(0, 3, 1, 1, dtype=torch.uint8)
    return _gather(local, lo, n)


def _features(ctx: RunContext, extractor, images: torch.Tensor, cfg: EvalConfig) -> np.ndarray:
    lo, hi = _my_range(len(images), ctx)
    f = extractor.extract(images[lo:hi], batch_size=cfg.feature_batch_size)[extractor.default_layer]
    return _gather(torch.from_numpy(f), lo, len(images)).numpy()


#################################################################################
#                                 The experiment                                #
#################################################################################

@experiment("dlc-pipeline", config=DLCPipelineConfig, version="1", code=("dlc",),
            description="DLC end to end: SEM encoder → SEDD prior → DiT; FD of DLC vs unconditional samples")
def run_dlc_pipeline(ctx: RunContext) -> None:
    from bench.features import build_extractor
    from bench.metrics import compute_metrics, linear_probe, metric_ci
    from dlc.encoder import DLCArtifact, export_codes
    from dlc.sedd import load_sedd, sample_sedd, save_sedd

    cfg: DLCPipelineConfig = ctx.config
    ext_kw: dict[str, Any] = {"device": ctx.device}
    if cfg.eval.weights:
        ext_kw["weights"] = cfg.eval.weights
    if cfg.eval.resize:
        ext_kw["resize"] = cfg.eval.resize
    extractor = build_extractor(cfg.eval.features, **ext_kw)   # fail early (missing weights) before training
    desc = extractor.describe()
    fd_key = extractor.metric_label()
    ctx.display(metric_order=[fd_key, "precision", "recall", "density", "coverage", "vendi", "probe_top1",
                              "code_tv", "code_copy_frac", "train_loss"],
                label_order={"variant": list(VARIANTS)})

    with ctx.timer("data"):
        train = _load_data(cfg.data, "train", cfg.data.n_train)
        test = _load_data(cfg.data, "test", cfg.data.n_test)
    ctx.log(f"data: {len(train)} train / {len(test)} test images {tuple(train.image_shape)}")
    dkey = {"data": dataclasses.asdict(cfg.data)}
    n = cfg.eval.n_samples
    figure_sets: dict[str, torch.Tensor] = {"real (test)": test.subset(range(min(cfg.eval.grid, len(test)))).images}

    for seed in ctx.seeds:
        ekey = {**dkey, "encoder": dataclasses.asdict(cfg.encoder), "seed": seed}
        enc = ctx.stage("encoder", ekey, lambda: _train_encoder(ctx, cfg, train, seed), save=_save_encoder,
                        load=_load_encoder, desc=f"SEM encoder seed={seed}")
        encoder = enc["encoder"]

        def export():
            return {s: export_codes(encoder, data, batch_size=cfg.encoder.export_batch_size, device=ctx.device)
                    for s, data in (("train", train), ("test", test))}

        codes = ctx.stage("codes", ekey, export,
                          save=lambda v, d: [a.save(d / s) for s, a in v.items()],
                          load=lambda d: {s: DLCArtifact.load(d / s) for s in ("train", "test")},
                          desc=f"export DLCs seed={seed}")
        tr_codes, te_codes = codes["train"], codes["test"]
        V, L = cfg.encoder.V, cfg.encoder.L
        ctx.add_metric("train_loss", float(np.mean(enc["losses"][-50:])), higher_is_better=None, seed=seed,
                       stage="encoder", n=cfg.encoder.steps)
        usage = [len(torch.unique(tr_codes.tokens[:, j])) for j in range(L)]
        ctx.add_metric("codes_per_position", float(np.mean(usage)), higher_is_better=None, seed=seed, stage="encoder",
                       n=len(tr_codes.tokens))

        # -- what the codes carry: linear probes of the data's factors, DLC one-hot vs continuous embedding
        with ctx.timer("probes"):
            m = min(cfg.eval.probe_n, len(tr_codes.tokens))
            for factor in cfg.eval.probe_factors:
                if factor not in tr_codes.factors:
                    continue
                y = torch.cat([tr_codes.factors[factor][:m], te_codes.factors[factor]]).numpy()
                split = {"train": np.arange(int(m * 0.85)), "val": np.arange(int(m * 0.85), m),
                         "test": np.arange(m, len(y))}
                for rep, x, vocab in (("dlc", torch.cat([tr_codes.tokens[:m], te_codes.tokens]).numpy(), V),
                                      ("embedding", torch.cat([tr_codes.embedding[:m], te_codes.embedding]).numpy(),
                                       None)):
                    r = linear_probe(x, y, vocab_size=vocab, split=split, seed=seed)
                    ctx.add_metric("probe_top1", r.top1, higher_is_better=True, seed=seed, representation=rep,
                                   factor=factor, n=r.n_test)

        # -- prior p(c)
        pkey = {**ekey, "prior": {k: v for k, v in dataclasses.asdict(cfg.prior).items()
                                  if k not in ("sampler", "sample_steps", "eta", "t0", "t1", "sample_batch_size")}}
        sedd = ctx.stage("sedd", pkey, lambda: _train_sedd(ctx, cfg, tr_codes.tokens, seed),
                         save=lambda v, d: save_sedd(d / "model", v), load=lambda d: load_sedd(d / "model")[0],
                         desc=f"SEDD prior seed={seed}")

        def draw_codes():
            lo, hi = _my_range(n, ctx)
            p = cfg.prior
            local = sample_sedd(sedd, hi - lo, sampler=p.sampler, steps=p.sample_steps, eta=p.eta, t0=p.t0, t1=p.t1,
                                seed=seed, start_index=lo, batch_size=p.sample_batch_size, device=ctx.device)
            return _gather(local, lo, n)

        prior_codes = ctx.stage("prior", {**pkey, "sampling": dataclasses.asdict(cfg.prior), "n": n}, draw_codes,
                                desc=f"sample {n} DLCs ({cfg.prior.sampler}) seed={seed}")
        tv = _code_tv(prior_codes, te_codes.tokens, V)
        floor = _code_tv(tr_codes.tokens[:n], te_codes.tokens, V)
        ctx.add_metric("code_tv", tv, higher_is_better=False, seed=seed, variant="dlc", n=n)
        ctx.add_metric("code_tv", floor, higher_is_better=False, seed=seed, variant="real-train", n=n)
        ctx.add_metric("code_copy_frac", _copy_frac(prior_codes, tr_codes.tokens), higher_is_better=None, seed=seed,
                       variant="dlc", n=n)

        # -- DiT p(x|c) and p(x)
        latents = ctx.stage("latents", {**dkey, "vae": cfg.dit.vae, "seed": seed}, lambda: _latents(ctx, cfg, train),
                            desc="images → DiT inputs")
        dkey_dit = {**ekey, "dit": {k: v for k, v in dataclasses.asdict(cfg.dit).items()
                                    if k in ("model", "vae", "steps", "batch_size", "lr", "ema", "grad_clip",
                                             "drop_prob")}}
        needs = set(cfg.eval.variants)
        dits = {}
        if needs & {"dlc", "dlc-recon"}:
            dits["dlc"] = ctx.stage("dit-dlc", dkey_dit,
                                    lambda: _train_dit(ctx, cfg, latents, tr_codes.tokens, "dlc", seed),
                                    save=_save_model, load=_load_model, desc=f"DiT | DLC seed={seed}")
        if "unconditional" in needs:
            ukey = {k: v for k, v in dkey_dit.items() if k != "encoder"}
            dits["unconditional"] = ctx.stage("dit-uncond", ukey,
                                              lambda: _train_dit(ctx, cfg, latents, None, "uncond", seed),
                                              save=_save_model, load=_load_model,
                                              desc=f"DiT unconditional seed={seed}")
        for name, tr in dits.items():
            ctx.add_metric("train_loss", float(np.mean(tr["losses"][-100:])), higher_is_better=None, seed=seed,
                           stage=f"dit-{name}", n=cfg.dit.steps)

        skey = {**dkey_dit, "sampling": {k: getattr(cfg.dit, k) for k in ("sampler", "sample_steps", "cfg_scale",
                                                                            "guided_channels")}, "n": n}
        sets: dict[str, torch.Tensor] = {}
        for variant in cfg.eval.variants:
            if variant == "real-train":
                sets[variant] = train.subset(range(min(n, len(train)))).images
                continue
            model = dits["unconditional" if variant == "unconditional" else "dlc"]["model"]
            cond = {"dlc": prior_codes, "dlc-recon": te_codes.tokens[:n], "unconditional": None}[variant]
            vkey = {**skey, "variant": variant, "prior": pkey["prior"] if variant == "dlc" else None,
                    "prior_sampling": dataclasses.asdict(cfg.prior) if variant == "dlc" else None}
            sets[variant] = ctx.stage(f"samples-{variant}", vkey,
                                      lambda: _sample_images(ctx, cfg, model, cond, n, seed, f"sample {variant}"),
                                      desc=f"{n} samples: {variant} seed={seed}")
            if seed == ctx.seeds[0]:
                figure_sets[variant] = sets[variant][:cfg.eval.grid]

        # -- metrics on features
        fkey = {"extractor": desc, "batch": cfg.eval.feature_batch_size}
        real_f = ctx.stage("features", {**fkey, **dkey, "set": "test"}, lambda: _features(ctx, extractor,
                                                                                        test.images, cfg.eval),
                           desc=f"{cfg.eval.features} features: real test")
        for variant, imgs in sets.items():
            key = {**fkey, "set": variant, "images": (skey if variant != "real-train" else dkey),
                   "prior": pkey if variant == "dlc" else None, "seed": seed}
            fake_f = ctx.stage("features", key, lambda: _features(ctx, extractor, imgs, cfg.eval),
                               desc=f"{cfg.eval.features} features: {variant}")
            vals = compute_metrics(["fd", "precision", "recall", "density", "coverage", "vendi"], real=real_f,
                                   fake=fake_f)
            ci = (None, None)
            if cfg.eval.bootstrap:
                c = metric_ci("fd", real=real_f, fake=fake_f, n_resamples=cfg.eval.bootstrap, seed=seed)
                ci = (c.low, c.high)
            labels = {"variant": variant, "seed": seed, "features": cfg.eval.features}
            ctx.add_metric(fd_key, vals["fd"], higher_is_better=False, ci_low=ci[0], ci_high=ci[1],
                           n=len(fake_f), **labels)
            for k in ("precision", "recall", "density", "coverage", "vendi"):
                ctx.add_metric(k, vals[k], higher_is_better=True, n=len(fake_f), **labels)

        if seed == ctx.seeds[0] and "dlc" in dits and cfg.eval.n_compose:
            figure_sets["_compose"] = ctx.stage(
                "compose", {**skey, "n_compose": cfg.eval.n_compose},
                lambda: _compose(ctx, cfg, dits["dlc"]["model"], te_codes.tokens, test.images, seed),
                desc="composition")

    _figures_and_notes(ctx, cfg, figure_sets, fd_key, desc)


#################################################################################
#                                 Code statistics                               #
#################################################################################

def _code_tv(a: torch.Tensor, b: torch.Tensor, V: int) -> float:
    """Mean over positions of the total variation between the token marginals of two code sets."""
    pa = torch.nn.functional.one_hot(a.long(), V).double().mean(0)     # (L, V)
    pb = torch.nn.functional.one_hot(b.long(), V).double().mean(0)
    return float(0.5 * (pa - pb).abs().sum(-1).mean())


def _copy_frac(samples: torch.Tensor, train: torch.Tensor) -> float:
    """Fraction of sampled codes equal to some training code at every position."""
    seen = {tuple(r) for r in train.tolist()}
    return float(np.mean([tuple(r) in seen for r in samples.tolist()]))


def _compose(ctx: RunContext, cfg: DLCPipelineConfig, model, tokens: torch.Tensor, images: torch.Tensor,
             seed: int) -> torch.Tensor:
    """Rows of [image a | image b | x ~ DiT(compose(c_a, c_b))] for n_compose held-out pairs."""
    from dlc.compose import compose_tokens

    k = cfg.eval.n_compose
    a, b = torch.arange(k), torch.arange(k, 2 * k)
    mixed = torch.cat([compose_tokens(torch.stack([tokens[i], tokens[j]]), indices=[int(i)], seed=seed)
                       for i, j in zip(a, b)])                                         # (k, L)
    x = _sample_images(ctx, cfg, model, mixed, k, seed + 7919, "sample compositions")
    return torch.stack([images[a], images[b], x], dim=1).flatten(0, 1)                # (3k, 3, H, W)


def _figures_and_notes(ctx: RunContext, cfg: DLCPipelineConfig, sets: dict, fd_key: str, desc: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def grid(images: torch.Tensor, cols: int) -> np.ndarray:
        imgs = images.permute(0, 2, 3, 1).numpy()
        rows = -(-len(imgs) // cols)
        h, w = imgs.shape[1:3]
        out = np.full((rows * (h + 1) + 1, cols * (w + 1) + 1, 3), 255, dtype=np.uint8)
        for i, im in enumerate(imgs):
            r, c = divmod(i, cols)
            out[1 + r * (h + 1):1 + r * (h + 1) + h, 1 + c * (w + 1):1 + c * (w + 1) + w] = im
        return out

    with ctx.timer("figures"):
        panels = [k for k in sets if not k.startswith("_")]
        fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.6))
        for ax, name in zip(np.atleast_1d(axes), panels):
            ax.imshow(grid(sets[name], 8), interpolation="nearest")
            ax.set_title(name, fontsize=10)
            ax.axis("off")
        ctx.add_figure(fig, "samples", f"First {cfg.eval.grid} images of each set, seed {ctx.seeds[0]}: held-out "
                       "real images; DiT samples conditioned on DLCs drawn from the SEDD prior (dlc); unconditional "
                       "DiT; DiT conditioned on the DLCs of the held-out images shown first (dlc-recon).")
        if "_compose" in sets:
            fig, ax = plt.subplots(figsize=(3.2, 1.1 * cfg.eval.n_compose))
            ax.imshow(grid(sets["_compose"], 3), interpolation="nearest")
            ax.axis("off")
            ax.set_title("a | b | DiT(mix of DLC a, b)", fontsize=9)
            ctx.add_figure(fig, "composition", "Composition (Sec. 4.3): each row is two held-out images and a DiT "
                           "sample conditioned on a DLC whose positions are taken at random from either image's DLC.")

    rows = {(r["metric"], r.get("variant")): r for r in ctx.metrics
            if r.get("seed") == ctx.seeds[0] and r["metric"] == fd_key}
    fd = {v: rows[(fd_key, v)]["value"] for (_, v) in rows}
    pre = desc["preprocessing"]
    resize = pre["resize"]["mode"] if isinstance(pre.get("resize"), dict) else pre.get("resize")
    ctx.note(f"{fd_key}: Fréchet distance on {desc['extractor']} features ({resize} resize to "
             f"{pre.get('size') or pre['resize'].get('size')} px, {pre['normalize']}) of "
             f"{cfg.eval.n_samples} images per set against the {cfg.data.n_test} held-out test images"
             + (" — EfficientNet-Lite0 features (ImageNet-trained, shipped in a wheel), so not comparable with "
                "published FIDs" if fd_key == "fd_effnet" else "") + ".")
    if "real-train" in fd:
        ctx.note(f"real-train is the floor of the estimator at this sample size: {fd_key} between "
                 f"{cfg.eval.n_samples} train images and the test images = {fd['real-train']:.3g}.")
    if "dlc" in fd and "unconditional" in fd:
        better = fd["dlc"] < fd["unconditional"]
        ctx.note(f"Finding (seed {ctx.seeds[0]}): DLC-conditioned generation (c ~ SEDD, x ~ DiT(c)) reaches "
                 f"{fd_key} = {fd['dlc']:.3g} against {fd['unconditional']:.3g} for the unconditional DiT of the same "
                 f"size and training budget — {'lower, as the paper reports' if better else 'NOT lower here'}"
                 + (f"; with the held-out images' own DLCs (dlc-recon) {fd['dlc-recon']:.3g}" if "dlc-recon" in fd
                    else "") + ".")
    ctx.note(f"Prior: SEDD-{cfg.prior.model} ({cfg.prior.steps} steps), sampled with '{cfg.prior.sampler}' in "
             f"{cfg.prior.sample_steps} steps (η={cfg.prior.eta}, t0={cfg.prior.t0}, t1={cfg.prior.t1}). code_tv is "
             "the mean per-position total variation between token marginals and the held-out codes (real-train: "
             "train codes, the floor); code_copy_frac the fraction of sampled DLCs identical to a training DLC.")
    ctx.note(f"DiT: {cfg.dit.model} on {cfg.dit.vae} inputs, {cfg.dit.steps} steps of batch {cfg.dit.batch_size}; "
             f"{cfg.dit.sample_steps} {cfg.dit.sampler} steps, CFG scale {cfg.dit.cfg_scale}.")
