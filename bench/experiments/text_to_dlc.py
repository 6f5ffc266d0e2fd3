"""Text → DLC → image (DLC paper, Sec. 6, Figs. 7 and 12), measured: a masked-diffusion text model trained on
captioned DLCs generates a code from a prompt, and the frozen DLC-conditioned DiT draws it.

The `shapes` world has ground-truth factors, so a prompt ("a small red shape on a white background") can ask for a
factor combination that no training image has (`holdout`: such images are removed from the training set of every
stage — encoder, DiT and text model — and their combinations from every caption), and the answer can be checked.

    prompt set         prompts
    in-distribution    n_prompts combinations of `prompt_factors` that training images show
    held-out           n_prompts combinations matching a `holdout` rule (the other prompt factors at random)

    method     the code of sample k of a prompt
    text       c ~ the text-to-DLC model given the prompt (`bench.stages.text`; `text`: as configured, by default
               over word tokens of the captions)
    text-prefix the same model and budget reading a frozen pretrained text encoder's states (`prefix_encoder`,
               the offline all-MiniLM-L6-v2 by default) instead of caption tokens
    retrieval  the DLC of the training image whose caption is the k-th nearest to the prompt (TF-IDF cosine):
               lookup, the baseline generation must beat on held-out combinations
    oracle     the DLC of a real image showing the prompt's factors (in-distribution: a training image; held-out: a
               held-out-combination image no stage saw): what the DiT draws from a right code, the ceiling

Per prompt set and method: factor agreement of the images with the prompt, per factor and for the whole
combination ('all'), read as the nearest exact render, with Wilson intervals and chance (`bench.fidelity`); the
in-distribution vs held-out gap and text vs retrieval per prompt (paired over prompts), as sentences; code validity
(every code slot holds a code id); the copy rate of generated codes; nearest training images of the text samples
in the eval features against the held-out-real floor. Free-text `prompts` (any data set, e.g. an imagefolder with
a captions file) are sampled, shown and measured for code validity only.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch

from dlc.validate import ConfigError, check

from ..experiment import experiment
from ..run import RunContext
from ..stages import dit as sdit, encoder as senc, text as stext
from ..stages.data import DATA, load_split
from .dlc_pipeline import build_extractor, encoder_stage, seed_stages
from .dlc_pipeline_config import DLCPipelineConfig
from .text_to_dlc_report import add_figures_and_notes

METHODS = ("text", "text-prefix", "retrieval", "oracle")
GENERATORS = ("text", "text-prefix")      # the methods that generate a code from the prompt
SETS = ("in-distribution", "held-out")


def parse_rule(text: str) -> dict[str, str]:
    """'colour=red,background=white' → {'colour': 'red', 'background': 'white'}."""
    out = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise ValueError(f"holdout rule {text!r} is not 'factor=value,factor=value'")
        out[name.strip()] = value.strip()
    return out


@dataclass(frozen=True)
class TextToDLCConfig(DLCPipelineConfig):
    holdout: tuple[str, ...] = ("colour=red,background=white", "colour=green,background=black",
                                "colour=blue,background=grey", "colour=yellow,background=navy")
    prompt_factors: tuple[str, ...] = ("colour", "size", "background")
    n_prompts: int = 16              # prompts per set
    k_samples: int = 8               # samples per prompt and method
    methods: tuple[str, ...] = METHODS
    prefix_encoder: str = "minilm"   # text-prefix: the frozen text encoder (hub id, directory, 'minilm')
    prompts: tuple[str, ...] = ()    # free-text prompts, sampled and shown (validity only)
    captions: stext.CaptionConfig = field(default_factory=stext.CaptionConfig)
    text: stext.TextModelConfig = field(default_factory=stext.TextModelConfig)
    text_sampling: stext.TextSamplingConfig = field(default_factory=stext.TextSamplingConfig)
    n_train_nn: int = 2000           # training images searched for nearest neighbours (0: all)
    k_neighbours: int = 3

    def __post_init__(self):
        super().__post_init__()
        from dlc.data.shapes import shapes_factor_values

        from ..registry import did_you_mean

        check(self, positive=("n_prompts", "k_samples", "k_neighbours"), non_negative=("n_train_nn",))
        bad = [m for m in self.methods if m not in METHODS]
        if bad or not self.methods:
            raise ConfigError("methods", list(self.methods), "names no method" if not bad else
                              f"has unknown {bad[0]!r}.{did_you_mean(bad[0], list(METHODS))}",
                              f"choose from {', '.join(METHODS)}")
        if self.text_sampling.steps > self.encoder.L:
            raise ConfigError("text_sampling.steps", self.text_sampling.steps, f"exceeds the {self.encoder.L} code "
                              "slots (each step fills at least one)", f"set text_sampling.steps ≤ {self.encoder.L}")
        if self.data.dataset not in ("shapes", "imagefolder"):
            raise ConfigError("data.dataset", self.data.dataset, "has neither generated captions nor image files to "
                              "caption", "use shapes (captions from its factors) or imagefolder with a captions_file")
        if self.data.dataset != "shapes":
            if self.holdout:
                raise ConfigError("holdout", list(self.holdout), f"needs factor labels, which {self.data.dataset} "
                                  "does not have", "set holdout=[] (and give free-text prompts)")
            if not self.captions.captions_file:
                raise ConfigError("captions.captions_file", "", f"is needed: {self.data.dataset} images have no "
                                  "generated captions", "point it at a JSON-lines file of {file, caption}")
            return
        values = shapes_factor_values()
        for f in self.prompt_factors:
            if f not in values:
                raise ConfigError("prompt_factors", list(self.prompt_factors), f"names {f!r}, not a shapes factor."
                                  f"{did_you_mean(f, list(values))}", f"choose from {', '.join(values)}")
        for text in self.holdout:
            try:
                rule = parse_rule(text)
            except ValueError as e:
                raise ConfigError("holdout", text, str(e).split(" is ", 1)[-1], "write e.g. 'colour=red,background="
                                  "white'") from None
            for f, v in rule.items():
                if f not in self.prompt_factors:
                    raise ConfigError("holdout", text, f"holds out {f!r}, which no prompt states",
                                      f"add {f} to prompt_factors")
                if v not in values[f]:
                    raise ConfigError("holdout", text, f"names {v!r}, not a value of {f}."
                                      f"{did_you_mean(v, values[f])}", f"choose from {', '.join(values[f])}")

    def check_resources(self, available: int | None = None) -> None:
        super().check_resources(available)
        if "text-prefix" in self.methods:
            stext.check_source("prefix_encoder", self.prefix_encoder)


#################################################################################
#                             Prompts and held-out data                         #
#################################################################################

def holdout_mask(factors: dict[str, torch.Tensor], values: dict[str, list[str]], rules: list[dict[str, str]]
                 ) -> np.ndarray:
    """(N,) bool: the image matches some rule (every factor of the rule has the rule's value)."""
    n = len(next(iter(factors.values())))
    out = np.zeros(n, dtype=bool)
    for rule in rules:
        m = np.ones(n, dtype=bool)
        for f, v in rule.items():
            m &= factors[f].numpy() == values[f].index(v)
        out |= m
    return out


def make_prompts(cfg: TextToDLCConfig, values: dict[str, list[str]], rules: list[dict[str, str]], held: bool,
                 seed: int) -> list[dict[str, str]]:
    """n_prompts factor combinations of prompt_factors ({factor: value name}): held-out ones cycle through the rules
    (the other prompt factors drawn at random), in-distribution ones are drawn uniformly among the combinations no
    rule matches."""
    rng = np.random.default_rng([seed, 0x7e47, int(held)])
    out = []
    for _ in range(1000 * cfg.n_prompts):
        if len(out) == cfg.n_prompts:
            break
        combo = {f: values[f][rng.integers(len(values[f]))] for f in cfg.prompt_factors}
        if held:
            combo |= rules[len(out) % len(rules)]
        elif any(all(combo[f] == v for f, v in r.items()) for r in rules):
            continue
        out.append(combo)
    if len(out) < cfg.n_prompts:
        raise ConfigError("holdout", list(cfg.holdout), "leaves no combination of prompt_factors to ask for in "
                          "distribution", "hold out fewer combinations")
    return out


def retrieve(train_captions: list[str], prompts: list[str], k: int) -> np.ndarray:
    """(P, k) indices of the k training captions nearest to each prompt (TF-IDF cosine; ties: lowest index)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vec = TfidfVectorizer().fit(train_captions)
    sim = (vec.transform(prompts) @ vec.transform(train_captions).T).toarray()       # (P, N)
    return np.argsort(-sim, axis=1, kind="stable")[:, :k]


def matching(factors: dict[str, torch.Tensor], values: dict[str, list[str]], combos: list[dict[str, str]], k: int,
             what: str) -> np.ndarray:
    """(P, k) indices of images showing each combination (the first k, cycled when fewer)."""
    out = []
    for combo in combos:
        idx = np.flatnonzero(holdout_mask(factors, values, [combo]))
        if len(idx) == 0:
            raise ConfigError("n_prompts", len(combos), f"asks for {combo}, which no {what} image shows",
                              "raise data.n_test or drop the oracle method")
        out.append(np.resize(idx, k))
    return np.stack(out)


#################################################################################
#                                   The run                                     #
#################################################################################

@experiment("text-to-dlc", config=TextToDLCConfig, code=("bench.experiments.text_to_dlc_report",),
            description="text → DLC → image (Sec. 6): factor agreement with in-distribution and held-out prompts")
def run_text_to_dlc(ctx: RunContext) -> None:
    from dlc.data.shapes import make_shapes
    from dlc.text import captions_for_files, load_captions_jsonl, shapes_captions, shapes_prompt

    from ..aggregate import t_interval
    from ..fidelity import fidelity_rows
    from ..image_eval import ImageEvaluation
    from ..metrics import novelty
    from ..metrics.factors import ShapesRenderReader, wilson_interval

    cfg: TextToDLCConfig = ctx.config
    extractor = build_extractor(ctx, cfg.eval)
    ctx.display(metric_order=["factor_agreement", "object_frac", "code_valid_frac", "code_copy_frac", "nn_max_sim",
                              "train_loss"], label_order={"set": [*SETS, "free text", "real held-out"],
                                                          "method": list(METHODS)})
    shapes = cfg.data.dataset == "shapes"
    reader = ShapesRenderReader(cfg.data.image_size) if shapes else None
    with ctx.timer("data"):
        train, test = load_split(cfg.data, "train"), load_split(cfg.data, "test")
        rules = [parse_rule(r) for r in cfg.holdout]
        values = train.factor_values
        if rules:
            n_all = len(train)
            train = train.subset(np.flatnonzero(~holdout_mask(train.factors, values, rules)))
            test = test.subset(np.flatnonzero(~holdout_mask(test.factors, values, rules)))
            ctx.log(f"holdout: {n_all - len(train)} of {n_all} training images removed ({len(cfg.holdout)} rules)")
    k_data = ctx.key(DATA, {"data": cfg.data, "holdout": list(cfg.holdout)}) if rules else ctx.key(DATA, cfg.data)
    if shapes:
        captions = shapes_captions(train.factors, values, seed=cfg.data.seed, p_omit=cfg.captions.p_omit,
                                   keep=cfg.captions.keep, templates=cfg.captions.templates)
    else:                                   # imagefolder: a caption per training file, by path under data_dir
        captions = captions_for_files(train.dataset.files, load_captions_jsonl(cfg.captions.captions_file),
                                      root=cfg.data.data_dir or None)
    evaluate = ImageEvaluation(ctx, cfg.data, cfg.eval, extractor, train, test, k_data)
    held_images = make_shapes(max(cfg.data.sizes()[1], 1), split="holdout", seed=cfg.data.seed,
                              image_size=cfg.data.image_size, holdout=rules) if shapes and rules else None
    P, K = cfg.n_prompts, cfg.k_samples
    prompt_sets = {}
    if shapes:
        prompt_sets["in-distribution"] = make_prompts(cfg, values, rules, False, cfg.data.seed)
        if rules:
            prompt_sets["held-out"] = make_prompts(cfg, values, rules, True, cfg.data.seed)
    n_nn = min(cfg.n_train_nn or len(train), len(train))
    train_feats = evaluate.features(train.images[:n_nn], ctx.key(DATA, {"train": n_nn}, upstream=[k_data]),
                                    f"{n_nn} training images")
    floor = novelty(train=train_feats, generated=evaluate.real, k=cfg.k_neighbours)
    grids, per_prompt, nn = {}, {}, {"real held-out": (floor, test.images)}
    for seed in ctx.seeds:
        src, dits = seed_stages(ctx, cfg, seed, train, test, k_data, ["dlc"], encoder_rows=False)
        dit, k_dit = dits["dlc"]
        tr_codes = src.codes["train"].tokens
        models = {}
        for method in (m for m in GENERATORS if m in cfg.methods):
            tcfg = cfg.text if method == "text" else replace(cfg.text, text_encoder=cfg.prefix_encoder, backbone="")
            k_text = ctx.key(stext.TEXT_MODEL, {"text": tcfg, "captions": cfg.captions, "holdout": list(cfg.holdout)},
                             upstream=[src.k_codes], seed=seed)
            model = ctx.stage(stext.TEXT_MODEL, k_text, lambda: stext.train_text_model(
                ctx, tcfg, tr_codes, captions, cfg.encoder.V, seed), desc=f"text → DLC model ({method}) seed={seed}")
            models[method] = model, k_text
            ctx.add_metric("train_loss", float(np.mean(model["losses"][-50:])), higher_is_better=None, seed=seed,
                           stage=method, n=tcfg.train.steps)
            if model["cut"]:
                ctx.log(f"warning: {model['cut']} training captions were cut to text.max_text_len={tcfg.max_text_len}")
        held_codes = None
        if held_images is not None and "oracle" in cfg.methods:
            enc, k_enc, es = encoder_stage(ctx, cfg, seed, train, k_data)      # the one seed_stages trained
            k_held = ctx.key(senc.CODES, cfg.encoder, upstream=[k_enc, ctx.key(DATA, {"holdout-images": list(
                cfg.holdout), "data": cfg.data})], seed=es)
            held_codes = ctx.stage(senc.CODES, k_held, lambda: senc.export_codes(
                ctx, cfg.encoder, enc["encoder"], {"holdout": held_images}), desc="export DLCs: held-out combinations")
        all_sets = {**{s: [shapes_prompt(c, i) for i, c in enumerate(combos)] for s, combos in prompt_sets.items()},
                    **({"free text": list(cfg.prompts)} if cfg.prompts else {})}
        for set_name, prompts in all_sets.items():
            combos = prompt_sets.get(set_name)
            repeated = [p for p in prompts for _ in range(K)]                     # sample i: prompt i // K
            for method in cfg.methods if combos is not None else list(models):
                if method in GENERATORS:
                    model, k_text = models[method]
                    k_codes = ctx.key(stext.TEXT_CODES, {"sampling": cfg.text_sampling, "prompts": prompts, "k": K},
                                      upstream=[k_text], seed=seed)
                    codes = ctx.stage(stext.TEXT_CODES, k_codes, lambda: stext.sample_text_codes(
                        ctx, cfg.text_sampling, model, repeated, seed),
                        desc=f"text → DLC ({method}): {set_name} seed={seed}")
                    valid = codes >= 0
                    lo, hi = wilson_interval(int(valid.sum()), valid.numel())
                    ctx.add_metric("code_valid_frac", float(valid.float().mean()), higher_is_better=True, ci_low=lo,
                                   ci_high=hi, n=valid.numel(), seed=seed, set=set_name, method=method)
                    copies = (codes[:, None, :] == tr_codes[None]).all(-1).any(1)        # (N,)
                    lo, hi = wilson_interval(int(copies.sum()), len(copies))
                    ctx.add_metric("code_copy_frac", float(copies.float().mean()), higher_is_better=None, ci_low=lo,
                                   ci_high=hi, n=len(copies), seed=seed, set=set_name, method=method)
                    codes = codes.clamp_min(0)
                elif method == "retrieval":
                    idx = retrieve(captions, prompts, K).reshape(-1)
                    codes, k_codes = tr_codes[idx], ctx.key(DATA, {"retrieval": idx.tolist()}, upstream=[src.k_codes])
                else:
                    pool, pool_codes, k_pool = ((train.factors, tr_codes, src.k_codes)
                                                if set_name == "in-distribution" else
                                                (held_images.factors, held_codes["holdout"].tokens, k_held))
                    idx = matching(pool, values, combos, K, set_name).reshape(-1)
                    codes, k_codes = pool_codes[idx], ctx.key(DATA, {"oracle": idx.tolist()}, upstream=[k_pool])
                k_img = ctx.key(sdit.IMAGE_SAMPLES, {"sampling": cfg.dit_sampling, "text-to-dlc": method,
                                                     "n": len(codes)}, upstream=[k_dit, k_codes], seed=seed)
                imgs = ctx.stage(sdit.IMAGE_SAMPLES, k_img, lambda: sdit.sample_images(
                    ctx, cfg.dit, cfg.dit_sampling, dit["model"], codes, len(codes), seed,
                    f"sample {set_name} {method}"), desc=f"{len(codes)} samples: {set_name} {method} seed={seed}")
                labels = {"seed": seed, "set": set_name, "method": method}
                if combos is not None:
                    target = {f: torch.tensor([values[f].index(c[f]) for c in combos]).repeat_interleave(K)
                              for f in cfg.prompt_factors}
                    ctx.add_rows(fidelity_rows(imgs, dataset="shapes", train_images=train.images[:n_nn],
                                               target=target, **labels))
                    read = reader.read(imgs).factors
                    right = np.stack([read[f] == target[f].numpy() for f in cfg.prompt_factors]).all(0)
                    per_prompt[(seed, set_name, method)] = right.reshape(len(prompts), K).mean(1)
                if method in GENERATORS:
                    res = novelty(train=train_feats, k=cfg.k_neighbours,
                                  generated=evaluate.features(imgs, k_img, f"{set_name} {method} seed={seed}"))
                    mean, lo, hi = t_interval(res.max_sim.astype(np.float64))
                    ctx.add_metric("nn_max_sim", mean, higher_is_better=None, ci_low=lo, ci_high=hi,
                                   n=len(res.max_sim), **labels, k=cfg.k_neighbours)
                    if seed == ctx.seeds[0]:
                        nn[f"{set_name} {method}"] = (res, imgs)
                if seed == ctx.seeds[0]:
                    grids[(set_name, method)] = (prompts, imgs)
        mean, lo, hi = t_interval(floor.max_sim.astype(np.float64))
        ctx.add_metric("nn_max_sim", mean, higher_is_better=None, ci_low=lo, ci_high=hi, n=len(floor.max_sim),
                       seed=seed, set="real held-out", method="real", k=cfg.k_neighbours)
    add_figures_and_notes(ctx, cfg, grids, per_prompt, nn, train.images[:n_nn])


__all__ = ["TextToDLCConfig", "METHODS", "GENERATORS", "holdout_mask", "make_prompts", "parse_rule", "retrieve", "run_text_to_dlc"]
