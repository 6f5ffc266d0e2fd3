"""Sequence length (DLC paper, Figure 5): the trade-off between the number of tokens L and the vocabulary V at a
fixed SEM dimension L·V. Per L of `lengths`, the whole method at equal budgets — SEM encoder (L, V = L·V / L),
DLCs, SEDD prior, DLC-conditioned DiT — and x ~ DiT(c), c ~ SEDD, without guidance.

    variant    dlc at every L (the pipeline's own stages at the preset's L: cache hits); real-train: the FD floor

Per L: the Fréchet distance with its bootstrap interval, precision/recall, Vendi, the fraction of samples that
draw an object; linear probes of every factor from the DLC (what the code carries); the codes' per-position TV
and copy fraction; and the compute, measured: FLOPs of one SEDD forward and of sampling one code with the
configured sampler (`bench.flops`: counted by torch's dispatcher, machine-independent), and the seconds the
encoder, SEDD and DiT stages took when they were computed (from the stage cache's manifests, so a cached stage
still reports its cost). The paired difference FD(L) − FD(shortest L) (one resample of sample indices shared by
every L) and the fraction of resamples in which each L is best; the finding (monotone / U-shaped / flat, the best
L) is computed by `bench.aggregate.grid_optimum` (`seq_len_report`).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch

from dlc.validate import ConfigError

from ..conditioning import generate, sedd_prior
from ..experiment import experiment
from ..image_eval import ImageEvaluation
from ..run import RunContext
from ..stages.data import DATA, load_split
from .dlc_pipeline import build_extractor, seed_stages
from .dlc_pipeline_config import DLCPipelineConfig, EvalConfig
from .eta_sweep import add_grid_rows
from .seq_len_report import COMPUTE_STAGES, add_figures_and_notes

VARIANTS = ("dlc", "real-train")


@dataclass(frozen=True)
class SeqLenConfig(DLCPipelineConfig):
    """dlc-pipeline's stages and evaluation with a grid of sequence lengths; L·V is the encoder's own (the preset's
    L × V), so at the preset's L every stage is the pipeline's."""
    eval: EvalConfig = field(default_factory=lambda: EvalConfig(variants=VARIANTS))
    lengths: tuple[int, ...] = (8, 16, 32, 64)

    def __post_init__(self):
        super().__post_init__()
        bad = [v for v in self.eval.variants if v not in VARIANTS]
        if bad or "dlc" not in self.eval.variants:
            raise ConfigError("eval.variants", list(self.eval.variants), "must be dlc, optionally with real-train",
                              "set eval.variants=[dlc, real-train]")
        lengths, dim = list(self.lengths), self.encoder.L * self.encoder.V
        if len(lengths) < 2 or lengths != sorted(set(lengths)) or not all(isinstance(L, int) and L > 0
                                                                         for L in lengths):
            raise ConfigError("lengths", lengths, "must be ≥ 2 distinct increasing positive integers",
                              "e.g. lengths=[8, 16, 32, 64]")
        odd = [L for L in lengths if dim % L or dim // L < 2]
        if odd:
            raise ConfigError("lengths", lengths, f"{odd} do not divide L·V = {dim} (encoder.L × encoder.V) into a "
                              "vocabulary of ≥ 2", f"use divisors of {dim} up to {dim // 2}")
        if self.dit_sampling.cfg_scale != 1.0:
            raise ConfigError("dit_sampling.cfg_scale", self.dit_sampling.cfg_scale, "is not 1: the paper's "
                              "Figure 5 is without guidance", "set dit_sampling.cfg_scale=1")

    def at(self, L: int) -> "SeqLenConfig":
        """This config with the encoder's SEM at L tokens of V = L·V / L values."""
        return replace(self, encoder=replace(self.encoder, L=L, V=self.encoder.L * self.encoder.V // L))


@experiment("seq-len", config=SeqLenConfig, code=("bench.experiments.seq_len_report",),
            description="sequence length (Fig. 5): FD, probes and compute against L at fixed L·V")
def run_seq_len(ctx: RunContext) -> None:
    from dlc.sedd import sample_sedd

    from ..flops import count_flops

    cfg: SeqLenConfig = ctx.config
    extractor = build_extractor(ctx, cfg.eval)
    fd_key = extractor.metric_label()
    ctx.display(metric_order=[fd_key, f"{fd_key}_gap", "optimum_frac", "probe_top1", "sedd_sample_gflops",
                              "sedd_forward_mflops", *(f"{s}_seconds" for s in COMPUTE_STAGES), "code_tv",
                              "code_copy_frac", "precision", "recall", "vendi", "object_frac"],
                label_order={"variant": list(VARIANTS)})
    with ctx.timer("data"):
        train, test = load_split(cfg.data, "train"), load_split(cfg.data, "test")
    k_data = ctx.key(DATA, cfg.data)
    n = cfg.eval.n_samples
    evaluate = ImageEvaluation(ctx, cfg.data, cfg.eval, extractor, train, test, k_data)
    grids, optima = {}, {}
    for seed in ctx.seeds:
        if "real-train" in cfg.eval.variants:
            evaluate("real-train", train.subset(range(min(n, len(train)))).images,
                     ctx.key(DATA, {"train": n}, upstream=[k_data]), seed, reconstruction=False, conditioned=False)
        features = []
        for L in cfg.lengths:
            at = cfg.at(L)
            with ctx.labelled(L=L, V=at.encoder.V):
                start = len(ctx.stage_log)
                src, dits = seed_stages(ctx, at, seed, train, test, k_data, ["dlc"])
                imgs, k_imgs = generate(src, "dlc", "prior", *dits["dlc"], n, f"dlc L={L}")
                features.append(evaluate("dlc", imgs, k_imgs, seed, reconstruction=False, conditioned=True))
                if seed == ctx.seeds[0]:
                    grids[L] = imgs[:cfg.eval.grid]
                sedd = sedd_prior(src)[0].eval()
                ps = at.prior_sampling
                ctx.add_metric("sedd_forward_mflops", count_flops(sedd, torch.zeros(1, L, dtype=torch.long),
                                                                  torch.ones(1)) / 1e6,
                               higher_is_better=None, seed=seed, variant="dlc")
                ctx.add_metric("sedd_sample_gflops", count_flops(
                    sample_sedd, sedd, 1, sampler=ps.sampler, steps=ps.steps, eta=ps.eta, t0=ps.t0, t1=ps.t1,
                    seed=seed, batch_size=1, device="cpu") / 1e9, higher_is_better=None, seed=seed, variant="dlc",
                    n=ps.steps)
                for stage in COMPUTE_STAGES:      # what each stage of this L cost when it was computed
                    secs = [s["compute_seconds"] for s in ctx.stage_log[start:]
                            if s["stage"] == stage and s.get("compute_seconds") is not None]
                    if secs:
                        ctx.add_metric(f"{stage}_seconds", float(sum(secs)), higher_is_better=None, seed=seed,
                                       variant="dlc")
        if cfg.eval.bootstrap >= 2:
            optima[seed] = add_grid_rows(ctx, evaluate.real, features, [{"L": L, "V": cfg.at(L).encoder.V}
                                                                         for L in cfg.lengths], fd_key, seed)
    add_figures_and_notes(ctx, cfg, grids, optima, fd_key)


__all__ = ["SeqLenConfig", "run_seq_len"]
