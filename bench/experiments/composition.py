"""Composition (DLC paper, Sec. 5.2, Table 3, Figure 6): K samples of the DiT conditioned on a composition of two
held-out images' representations, per pair and per method, on the stages `dlc-pipeline` trains (cache hits).

    method       condition of sample k of pair (a, b)
    dlc          each DLC position taken from a or b at random (`dlc.compose.compose_tokens`, the paper's)
    dlc-soft     the average of a's and b's soft SEMs (re-tempered to `soft_temperature`), each position sampled
    embedding    the average of a's and b's continuous embeddings (the paper's DINOv2 row), the embedding DiT
    rcg          the average of their RCG vectors, the RCG DiT
    dlc-single   a's DLC alone, no composition: the reference diversity of one code and a check with a known
                 answer (its samples should take every factor from a, none from b alone)

Pairs are held-out images that differ in at least `min_differ` of `factors`. Per method, means over pairs with a
Student-t interval: Vendi of each pair's K samples (`vendi_pair`) and, with each sample's `factors` read as its
nearest exact render (shapes; a factor the DiT cannot draw at a scale makes every measure over it chance, so the
laptop preset names the factors its reconstructions show), `mix_frac` (every factor is a's or b's, at least one of a's where they differ and
at least one of b's), `from_sources_frac` (every factor is a's or b's), `copy_source_frac` (all of a's or all of
b's) and `novel_combo_frac` (a combination of factors no training image has). The finding compares each method
with `dlc` over the same pairs (paired differences).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from dlc.validate import ConfigError, check

from ..conditioning import CONDITIONING
from ..experiment import experiment
from ..run import RunContext
from ..stages import dit as sdit
from ..stages.data import DATA, load_split
from .composition_report import add_figures_and_notes
from .dlc_pipeline import build_extractor, seed_stages
from .dlc_pipeline_config import DLCPipelineConfig

# method → (the DiT's conditioning in bench.conditioning, how a pair's K conditions are made)
METHODS = {"dlc": "dlc", "dlc-soft": "dlc", "dlc-single": "dlc", "embedding": "embedding", "rcg": "rcg"}
MEASURES = ("mix_frac", "from_sources_frac", "copy_source_frac", "novel_combo_frac")


@dataclass(frozen=True)
class CompositionConfig(DLCPipelineConfig):
    methods: tuple[str, ...] = ("dlc", "dlc-soft", "embedding", "dlc-single")
    n_pairs: int = 50                # held-out pairs
    k_samples: int = 10              # samples per pair and method
    min_differ: int = 3              # factors (of `factors`) in which the two images of a pair differ, at least
    factors: tuple[str, ...] = ()    # the factors pairs are chosen by and samples are read on ('' = every factor)
    soft_temperature: float = 1.0    # dlc-soft: the soft SEMs' temperature before averaging

    def __post_init__(self):
        super().__post_init__()
        from ..registry import did_you_mean

        bad = [m for m in self.methods if m not in METHODS]
        if bad or not self.methods:
            raise ConfigError("methods", list(self.methods), "names no method" if not bad else
                              f"has unknown {bad[0]!r}.{did_you_mean(bad[0], list(METHODS))}",
                              f"choose from {', '.join(METHODS)}")
        check(self, positive=("n_pairs", "min_differ", "soft_temperature"))
        if self.factors and self.min_differ > len(self.factors):
            raise ConfigError("min_differ", self.min_differ, f"exceeds the {len(self.factors)} factors named in "
                              "factors", "lower min_differ or name more factors")
        if self.k_samples < 2:
            raise ConfigError("k_samples", self.k_samples, "gives no diversity to measure", "set k_samples ≥ 2")
        if 2 * self.n_pairs > self.data.sizes()[1] > 0:
            raise ConfigError("n_pairs", self.n_pairs, f"needs {2 * self.n_pairs} held-out images, more than "
                              f"data.n_test={self.data.n_test}", "lower n_pairs or raise data.n_test")


def choose_pairs(factors: dict[str, torch.Tensor], n_images: int, n_pairs: int, min_differ: int,
                 seed: int) -> np.ndarray:
    """(n_pairs, 2) indices of held-out images: consecutive images of one seeded permutation of [0, n_images), kept
    when they differ in ≥ min_differ factors, each image in one pair at most. Without factor labels (e.g.
    imagefolder) the first 2·n_pairs images of the permutation, paired in order."""
    order = np.random.default_rng(seed).permutation(n_images)
    if not factors:
        return order[:2 * n_pairs].reshape(-1, 2)
    f = np.stack([v.numpy() for v in factors.values()], 1)                   # (N, F)
    pairs, free = [], list(order)
    while free and len(pairs) < n_pairs:
        a = free.pop(0)
        j = next((i for i, b in enumerate(free) if (f[a] != f[b]).sum() >= min_differ), None)
        if j is not None:
            pairs.append((a, free.pop(j)))
    if len(pairs) < n_pairs:
        raise ConfigError("n_pairs", n_pairs, f"only {len(pairs)} held-out pairs differ in ≥ {min_differ} factors",
                          "lower n_pairs or min_differ")
    return np.array(pairs)


def conditions(method: str, src, pairs: np.ndarray, k: int, cfg: CompositionConfig, seed: int):
    """(conditions of the n_pairs·k samples, pair-major, sample i = pair i // k; their stage keys)."""
    from dlc.compose import compose_continuous, compose_soft, compose_tokens

    te = src.codes["test"]
    idx = [range(p * k, (p + 1) * k) for p in range(len(pairs))]              # global sample indices
    if method == "dlc":
        return torch.cat([compose_tokens(te.tokens[list(ab)], indices=i, seed=seed) for ab, i in zip(pairs, idx)]), \
            [src.k_codes]
    if method == "dlc-soft":
        if te.soft is None:
            raise ConfigError("methods", "dlc-soft", "needs soft SEMs, which these codes do not hold",
                              "drop dlc-soft from methods")
        return torch.cat([compose_soft(te.soft[list(ab)], temperature=cfg.soft_temperature,
                                       source_temperature=cfg.encoder.tau, indices=i, seed=seed)
                          for ab, i in zip(pairs, idx)]), [src.k_codes]
    if method == "dlc-single":
        return te.tokens[pairs[:, 0]].repeat_interleave(k, 0), [src.k_codes]
    vectors, keys = CONDITIONING.get(method).conditions(src, "test")           # (N, D) held-out vectors
    mean = torch.stack([compose_continuous(vectors[list(ab)]) for ab in pairs])   # (P, D)
    return mean.repeat_interleave(k, 0), keys


def pair_measures(read: dict[str, np.ndarray], source: dict[str, np.ndarray], pairs: np.ndarray, k: int,
                  train_combos: set) -> dict[str, np.ndarray]:
    """Per pair (n_pairs,): the fraction of its k samples meeting each of MEASURES (see the module doc). `read`:
    factor → (n_pairs·k,) values read from the samples; `source`: factor → (N,) held-out factors."""
    names = list(read)
    r = np.stack([read[f] for f in names], 1).reshape(len(pairs), k, -1)        # (P, k, F)
    a = np.stack([source[f][pairs[:, 0]] for f in names], 1)[:, None]          # (P, 1, F)
    b = np.stack([source[f][pairs[:, 1]] for f in names], 1)[:, None]
    differ = a != b
    from_sources = ((r == a) | (r == b)).all(-1)
    some_a, some_b = ((r == a) & differ).any(-1), ((r == b) & differ).any(-1)
    copy = (r == a).all(-1) | (r == b).all(-1)
    novel = np.array([[tuple(s) not in train_combos for s in pair] for pair in r.tolist()])
    out = {"mix_frac": from_sources & some_a & some_b, "from_sources_frac": from_sources,
           "copy_source_frac": copy, "novel_combo_frac": novel}
    return {m: v.mean(1) for m, v in out.items()}


def composed_samples(ctx: RunContext, cfg: CompositionConfig, src, dits: dict, method: str, pairs: np.ndarray,
                     seed: int) -> tuple[torch.Tensor, object]:
    """(uint8 (n_pairs·k, 3, H, W) samples, key) of the DiT conditioned on `method`'s compositions of `pairs`."""
    P, K = len(pairs), cfg.k_samples
    cond, up = conditions(method, src, pairs, K, cfg, seed)
    dit, k_dit = dits[METHODS[method]]
    key = ctx.key(sdit.IMAGE_SAMPLES, {"sampling": cfg.dit_sampling, "compose": method, "pairs": pairs.tolist(),
                                       "k": K, **({"T": cfg.soft_temperature} if method == "dlc-soft" else {})},
                  upstream=[k_dit, *up], seed=seed)
    return ctx.stage(sdit.IMAGE_SAMPLES, key, lambda: sdit.sample_images(
        ctx, cfg.dit, cfg.dit_sampling, dit["model"], cond, P * K, seed, f"sample {method} compositions"),
        desc=f"{P}×{K} samples: {method} compositions seed={seed}"), key


@experiment("composition", config=CompositionConfig, code=("bench.experiments.composition_report",),
            description="composition (Table 3, Fig. 6): DiT samples of two images' composed representations")
def run_composition(ctx: RunContext) -> None:
    from ..aggregate import t_interval
    from ..image_eval import ImageEvaluation
    from ..metrics import vendi_score
    from ..metrics.factors import ShapesRenderReader

    cfg: CompositionConfig = ctx.config
    extractor = build_extractor(ctx, cfg.eval)
    ctx.display(metric_order=["mix_frac", "from_sources_frac", "copy_source_frac", "novel_combo_frac", "vendi_pair"],
                label_order={"method": list(METHODS)})
    with ctx.timer("data"):
        train, test = load_split(cfg.data, "train"), load_split(cfg.data, "test")
    k_data = ctx.key(DATA, cfg.data)
    shapes = cfg.data.dataset == "shapes"
    reader = ShapesRenderReader(cfg.data.image_size) if shapes else None
    bad = [f for f in cfg.factors if f not in train.factors]
    if bad:
        raise ConfigError("factors", list(cfg.factors), f"names {bad[0]!r}, which {cfg.data.dataset} does not label",
                          f"choose from {', '.join(train.factors) or '(none: leave factors empty)'}")

    def chosen(factors: dict) -> dict:
        return {f: v for f, v in factors.items() if not cfg.factors or f in cfg.factors}

    names = list(chosen(train.factors))
    train_combos = {tuple(r) for r in np.stack([train.factors[f].numpy() for f in names], 1).tolist()} \
        if shapes else set()
    evaluate = ImageEvaluation(ctx, cfg.data, cfg.eval, extractor, train, test, k_data)
    P, K = cfg.n_pairs, cfg.k_samples
    grids, per_pair = {}, {}
    for seed in ctx.seeds:
        pairs = choose_pairs(chosen(test.factors), len(test), P, cfg.min_differ, cfg.data.seed)
        src, dits = seed_stages(ctx, cfg, seed, train, test, k_data, [METHODS[m] for m in cfg.methods],
                                encoder_rows=False)
        for method in cfg.methods:
            imgs, key = composed_samples(ctx, cfg, src, dits, method, pairs, seed)
            feats = np.asarray(evaluate.features(imgs, key, f"{method} compositions seed={seed}"))
            vendi = np.array([vendi_score(feats[p * K:(p + 1) * K]) for p in range(P)])
            measures = {"vendi_pair": vendi}
            if shapes:
                read = reader.read(imgs).factors
                measures |= pair_measures({f: read[f] for f in names}, {f: test.factors[f].numpy() for f in names},
                                          pairs, K, train_combos)
            per_pair[(seed, method)] = measures
            for metric, values in measures.items():
                m, lo, hi = t_interval(values)
                ctx.add_metric(metric, m, higher_is_better=None if metric in ("vendi_pair", "copy_source_frac")
                               else True, ci_low=lo, ci_high=hi, n=P, seed=seed, method=method, k=K)
            if seed == ctx.seeds[0]:
                grids[method] = imgs
        if seed == ctx.seeds[0]:
            grids["sources"] = torch.stack([test.images[pairs[:, 0]], test.images[pairs[:, 1]]], 1)   # (P, 2, 3, H, W)
    add_figures_and_notes(ctx, cfg, grids, per_pair)


__all__ = ["CompositionConfig", "METHODS", "choose_pairs", "composed_samples", "pair_measures", "run_composition"]
