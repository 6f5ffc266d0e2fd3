"""Conditioning representations compared (DLC paper, Table 2): DLC, RCG, the continuous SSL embedding (the paper's
DINOv2 row), the class label and none, each through the same stages as `dlc-pipeline` (the DLC and unconditional
DiTs are the pipeline's own: cache hits).

Per representation: linear-probe accuracy of every factor (DLC one-hot, the embedding, the RCG vectors, the
one-hot label), generative FD (conditions drawn from the representation's prior: SEDD, RDM, the label marginal),
encoder-decoder FD (conditions of held-out images, the `-recon` variants), precision/recall, Vendi and the
conditioning-fidelity rows — every number with an interval (bootstrap over samples, Wilson for fractions). The
Table-2 claims are checked as computed sentences (`conditioning_report`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..codestats import probe_rows
from ..conditioning import CONDITIONING
from ..experiment import experiment
from ..run import RunContext
from ..stages.data import DATA, load_split
from .conditioning_report import table2_findings
from .dlc_pipeline import build_extractor, run_dlc_pipeline, seed_stages
from .dlc_pipeline_config import VARIANTS, DLCPipelineConfig, EvalConfig

TABLE2 = ("dlc", "dlc-recon", "rcg", "rcg-recon", "embedding", "embedding-recon", "label", "label-recon",
          "unconditional", "real-train")


@dataclass(frozen=True)
class ConditioningConfig(DLCPipelineConfig):
    eval: EvalConfig = field(default_factory=lambda: EvalConfig(variants=TABLE2))


@experiment("conditioning", config=ConditioningConfig,
            code=("bench.experiments.dlc_pipeline", "bench.experiments.dlc_pipeline_config",
                  "bench.experiments.dlc_pipeline_report", "bench.experiments.conditioning_report"),
            description="conditioning representations (Table 2): DLC vs RCG vs embedding vs label vs none")
def run_conditioning(ctx: RunContext) -> None:
    run_dlc_pipeline(ctx)          # every variant of eval.variants through the shared stages, with its findings
    cfg: ConditioningConfig = ctx.config
    train, test = load_split(cfg.data, "train"), load_split(cfg.data, "test")
    k_data = ctx.key(DATA, cfg.data)
    used = {VARIANTS[v][0] for v in cfg.eval.variants}
    for seed in ctx.seeds:
        src, _ = seed_stages(ctx, cfg, seed, train, test, k_data, [], encoder_rows=False)   # cached: loads only
        if src.encoder_seed != seed:
            continue
        extra = {}
        if "rcg" in used:
            extra["rcg"] = tuple(CONDITIONING.get("rcg").conditions(src, split)[0] for split in ("train", "test"))
        if "label" in used and src.codes["train"].labels is not None:
            k = int(max(src.codes[s].labels.max() for s in ("train", "test"))) + 1
            extra["label"] = tuple(torch.nn.functional.one_hot(src.codes[s].labels.long(), k).float()
                                   for s in ("train", "test"))
        with ctx.timer("probes"):
            ctx.add_rows(probe_rows(src.codes["train"], src.codes["test"], cfg.eval.probe_factors, cfg.encoder.V,
                                    cfg.eval.probe_n, seed, extra=extra, include=()))
    fd_key = build_extractor(ctx, cfg.eval).metric_label()
    rows = [r for r in ctx.metrics if all(r.get(k) == v for k, v in ctx.row_labels.items())]   # this sweep point
    for seed in ctx.seeds:
        for sentence in table2_findings(rows, fd_key, seed):
            ctx.note(sentence)


__all__ = ["ConditioningConfig", "TABLE2", "run_conditioning"]
