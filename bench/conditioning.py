"""The conditioning registry: what a DiT is conditioned on, where the training conditions come from, and
how conditions are drawn for unconditional generation.

    name       DiT conditioner   conditions of real images                    generation draws them from
    dlc        'dlc'             tokens of the codes stage                    the SEDD prior (stages.prior)
    rcg        'vector'          RCG vectors (stages.representation, kind     the RDM prior (stages.representation)
                                 'rcg': random projection, per-sample std.)
    embedding  'vector'          the encoder's continuous embedding           the RDM prior (stages.representation)
                                 (stages.representation, kind 'embedding')
    label      'class'           the images' class labels (in the codes)      the training labels' marginal
    none       'none'            -                                            -

Each entry is executable: `conditions(src, split)` gives the conditions of the real images of a split (train:
what the DiT learns from; test: held-out images for reconstruction and the code-swap gap), `draw(src, n)` gives
n conditions from the prior (training that prior first), `shape(src)` the DiT conditioner's size; each returns
the stage keys its values came from, so the DiT and sample keys chain to them. `src` (`Sources`) holds one seed's
codes and the experiment config; the config supplies the stage configs a conditioning reads (`prior`,
`prior_sampling`, `dit`, and for the vector rows `representation`, `rdm`, `rdm_sampling`). For the 'vector' rows the
representation kind is the conditioning's name.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, Optional

from .registry import Registry


@dataclass
class Sources:
    """What a conditioning draws on for one seed: the run context, the experiment config, the codes stage's value
    ({'train', 'test'} code artifacts) and key. `seed` is the run's seed (the DiT's: its training and sampling
    noise); `encoder_seed` is the seed of the encoder that made the codes (it seeds the RCG projection too) and
    `prior_seed` trains and samples the priors (SEDD, RDM, label draws); both are `seed` when None (a run that keeps
    those stages fixed across seeds passes its first seed). Stage values are memoised, so the representation
    that trains the DiT is not read again to condition its samples."""
    ctx: Any
    cfg: Any
    seed: int
    codes: dict
    k_codes: Any
    encoder_seed: Optional[int] = None
    prior_seed: Optional[int] = None
    memo: dict = field(default_factory=dict)

    def __post_init__(self):
        self.encoder_seed = self.seed if self.encoder_seed is None else self.encoder_seed
        self.prior_seed = self.seed if self.prior_seed is None else self.prior_seed

    def stage(self, stage, config: Any, upstream: list, compute: Callable[[], Any], desc: str,
              seed: Optional[int] = None) -> tuple[Any, Any]:
        """(value, key) of `stage` for `seed` (default: the run's), computed once per Sources."""
        seed = self.seed if seed is None else seed
        key = self.ctx.key(stage, config, upstream=upstream, seed=seed)
        if str(key) not in self.memo:
            self.memo[str(key)] = self.ctx.stage(stage, key, compute, desc=f"{desc} seed={seed}")
        return self.memo[str(key)], key


@dataclass(frozen=True)
class Conditioning:
    name: str
    dit_cond: str                     # dlc.dit conditioner: 'dlc' | 'vector' | 'class' | 'none'
    representation: Optional[str]     # the stage whose output conditions training (None: unconditional)
    prior: Optional[str]              # the stage that draws conditions at generation time
    description: str = ""
    conditions: Callable[[Sources, str], tuple[Any, list]] = lambda src, split: (None, [])
    draw: Callable[[Sources, int], tuple[Any, list]] = lambda src, n: (None, [])
    shape: Callable[[Sources], dict] = lambda src: {}


# ----------------------------------------------------------------------------- dlc
def sedd_prior(src: Sources) -> tuple[Any, Any]:
    """(the SEDD prior trained on the train DLCs, its key), once per Sources."""
    from .stages import prior as sprior

    cfg, ps, tr = src.cfg, src.prior_seed, src.codes["train"].tokens
    return src.stage(sprior.SEDD, cfg.prior, [src.k_codes],
                     lambda: sprior.train_prior(src.ctx, cfg.prior, tr, cfg.encoder.V, ps), "SEDD prior", seed=ps)


def _dlc_draw(src: Sources, n: int) -> tuple[Any, list]:
    """c ~ SEDD for [0, n), and how far the drawn codes are from held-out ones (per-position TV, copies)."""
    from .codestats import code_rows
    from .stages import prior as sprior

    cfg, ctx, V = src.cfg, src.ctx, src.cfg.encoder.V
    tr, te = src.codes["train"].tokens, src.codes["test"].tokens
    ps = src.prior_seed
    sedd, k_sedd = sedd_prior(src)
    codes, k_pc = src.stage(sprior.PRIOR_SAMPLES, {"sampling": cfg.prior_sampling, "n": n}, [k_sedd],
                            lambda: sprior.sample_prior(ctx, cfg.prior_sampling, sedd, n, ps),
                            f"sample {n} DLCs ({cfg.prior_sampling.sampler})", seed=ps)
    if ps == src.seed:      # the prior's own rows, once per prior
        ctx.add_rows(code_rows(codes, tr, te, V, ps))
    return codes, [k_pc]


def _dlc_shape(src: Sources) -> dict:
    return {"dlc_length": src.cfg.encoder.L, "dlc_vocab": src.cfg.encoder.V, "dlc_pool": src.cfg.dit.dlc_pool}


# ----------------------------------------------------------------------------- rcg, embedding
def _representation(kind: str, src: Sources) -> tuple[dict, Any]:
    from .stages import representation as srep

    rcfg = replace(src.cfg.representation, kind=kind)
    es = src.encoder_seed
    return src.stage(srep.REPRESENTATION, rcfg, [src.k_codes],
                     lambda: srep.make_representation(src.ctx, rcfg, src.codes, es), f"{kind} vectors", seed=es)


def _vector_conditions(kind: str) -> Callable[[Sources, str], tuple[Any, list]]:
    def conditions(src: Sources, split: str) -> tuple[Any, list]:
        rep, k_rep = _representation(kind, src)
        return rep[split], [k_rep]
    return conditions


def _vector_draw(kind: str) -> Callable[[Sources, int], tuple[Any, list]]:
    def draw(src: Sources, n: int) -> tuple[Any, list]:
        from .stages import representation as srep

        cfg, ctx = src.cfg, src.ctx
        rep, k_rep = _representation(kind, src)
        ps = src.prior_seed
        rdm, k_rdm = src.stage(srep.RDM, cfg.rdm, [k_rep],
                               lambda: srep.train_prior(ctx, cfg.rdm, rep["train"], ps, kind=kind),
                               f"RDM prior ({kind})", seed=ps)
        vectors, k_rs = src.stage(srep.RDM_SAMPLES, {"sampling": cfg.rdm_sampling, "n": n}, [k_rdm],
                                  lambda: srep.sample_prior(ctx, cfg.rdm_sampling, rdm["model"], n, ps),
                                  f"sample {n} {kind} vectors (RDM)", seed=ps)
        return vectors, [k_rs]
    return draw


def _vector_shape(kind: str) -> Callable[[Sources], dict]:
    def shape(src: Sources) -> dict:
        from .stages.representation import dit_shape

        return dit_shape(_representation(kind, src)[0]["train"])
    return shape


# ----------------------------------------------------------------------------- label
_LABEL_STREAM = 0x1abe1          # PerSampleRNG stream of the label draws


def _labels(src: Sources, split: str) -> Any:
    labels = src.codes[split].labels
    if labels is None:
        raise ValueError(f"the codes of split {split!r} carry no class labels, so the 'label' conditioning has "
                         "nothing to condition on (use a labelled dataset)")
    return labels.long()


def _label_draw(src: Sources, n: int) -> tuple[Any, list]:
    """c ~ the training labels' empirical marginal, by the inverse CDF of one uniform per global sample index."""
    import torch

    from dlc.common import PerSampleRNG

    train = _labels(src, "train")
    cdf = torch.bincount(train, minlength=_label_shape(src)["num_classes"]).double().cumsum(0) / len(train)
    u = PerSampleRNG(src.prior_seed, range(n), stream=_LABEL_STREAM).rand(1, dtype=torch.float64)[:, 0]   # (n,)
    return torch.searchsorted(cdf, u, right=True).clamp(max=len(cdf) - 1), [src.k_codes]


def _label_shape(src: Sources) -> dict:
    return {"num_classes": int(max(_labels(src, s).max() for s in ("train", "test"))) + 1}


CONDITIONING: Registry[Conditioning] = Registry("conditioning")
CONDITIONING.register("dlc", Conditioning(
    "dlc", "dlc", "codes", "sedd", "DLC tokens; c ~ SEDD prior, x ~ DiT(c)",
    conditions=lambda src, split: (src.codes[split].tokens, [src.k_codes]), draw=_dlc_draw, shape=_dlc_shape))
CONDITIONING.register("rcg", Conditioning(
    "rcg", "vector", "representation", "rdm", "RCG: frozen random projection of the encoder embedding to 256-d, "
    "standardised per sample; r ~ RDM prior, x ~ DiT(r)",
    conditions=_vector_conditions("rcg"), draw=_vector_draw("rcg"), shape=_vector_shape("rcg")))
CONDITIONING.register("embedding", Conditioning(
    "embedding", "vector", "representation", "rdm", "the encoder's continuous embedding; r ~ RDM prior, x ~ DiT(r)",
    conditions=_vector_conditions("embedding"), draw=_vector_draw("embedding"), shape=_vector_shape("embedding")))
CONDITIONING.register("label", Conditioning(
    "label", "class", "codes", None, "the image's class label (shapes: its shape); c ~ the training labels' "
    "marginal, x ~ DiT(c): a class-conditional DiT as in DiT/ADM",
    conditions=lambda src, split: (_labels(src, split), [src.k_codes]), draw=_label_draw, shape=_label_shape))
CONDITIONING.register("none", Conditioning("none", "none", None, None, "unconditional DiT"))


# ----------------------------------------------------------------------------- DiT p(x|c) and x ~ DiT(c)
def train_dit(src: Sources, name: str, latents: Any, held: Any, k_lat: Any, k_held: Any) -> tuple[dict, Any]:
    """(DiT stage value, key) of the DiT conditioned by conditioning `name` on the training conditions, with the
    code-swap gap on the held-out inputs `held`; adds its final-window train loss and code-swap ratios."""
    from .stages import dit as sdit

    ctx, cfg, seed, c = src.ctx, src.cfg, src.seed, CONDITIONING.get(name)
    cond, up = c.conditions(src, "train")
    held_cond = c.conditions(src, "test")[0]
    shape = c.shape(src)
    key = ctx.key(sdit.DIT, {"dit": cfg.dit, "cond": c.dit_cond, "shape": shape},
                  upstream=[k_lat, *up] + ([k_held] if cond is not None else []), seed=seed)
    dit = ctx.stage(sdit.DIT, key, lambda: sdit.train(
        ctx, cfg.dit, latents, cond, c.dit_cond, shape, seed, name,
        held_out=None if cond is None else (held, held_cond[:len(held)])), desc=f"DiT | {name} seed={seed}")
    for r in (dit["monitor"][-1]["code_swap_gap"] if dit["monitor"] else []):
        for against in ("shuffled", "null"):   # held-out clean-image error, other condition / true condition
            ctx.add_metric("code_swap_ratio", r[f"{against}_ratio"], higher_is_better=True, seed=seed, against=against,
                           t_bin=f"{r['t_lo']:.2f}-{r['t_hi']:.2f}", n=r["n"], conditioning=name)
    ctx.add_metric("train_loss", float(sum(dit["losses"][-100:]) / len(dit["losses"][-100:])), higher_is_better=None,
                   seed=seed, stage=f"dit-{'unconditional' if name == 'none' else name}", n=cfg.dit.steps)
    return dit, key


def generate(src: Sources, name: str, source: str | None, dit: dict, k_dit: Any, n: int, desc: str,
             step: int | None = None) -> tuple[Any, Any]:
    """(uint8 (n, 3, H, W) images, key): x ~ DiT(c) with c drawn from the prior (source 'prior'), taken from the
    first n held-out images ('held-out'), or none (unconditional: no guidance). `step`: `dit` holds the EMA weights
    of that training step (a stored checkpoint of the DiT `k_dit`), not the final ones."""
    from .stages import dit as sdit

    ctx, cfg, c = src.ctx, src.cfg, CONDITIONING.get(name)
    cond, up = (c.draw(src, n) if source == "prior" else c.conditions(src, "test") if source == "held-out"
                else (None, []))
    cond = None if cond is None else cond[:n]
    scfg = cfg.dit_sampling if cond is not None else replace(cfg.dit_sampling, cfg_scale=1.0, guided_channels=0)
    spec = {"sampling": scfg, "n": n, "source": source, **({} if step is None else {"step": step})}
    key = ctx.key(sdit.IMAGE_SAMPLES, spec, upstream=[k_dit, *up], seed=src.seed)
    images = ctx.stage(sdit.IMAGE_SAMPLES, key, lambda: sdit.sample_images(
        ctx, cfg.dit, scfg, dit["model"], cond, n, src.seed, f"sample {desc}"), desc=f"{n} samples: {desc} "
        f"seed={src.seed}")
    return images, key


__all__ = ["CONDITIONING", "Conditioning", "Sources", "generate", "sedd_prior", "train_dit"]
