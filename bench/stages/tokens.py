"""Token-diffusion stages (seed 004): the VQ tokenizer, the token grids of a data set, a class-conditional model
over them (SEDD absorb / uniform / absorb-2D, or MaskGIT) and its class-conditional samples decoded to images.

    tokenizer      TokenizerConfig      trained from scratch on the training images, or a pretrained VQ model loaded
    token-grids    -                    encoded train / test tokens (N, h·w) and the test reconstructions
    token-model    TokenNetConfig       one variant's network (VARIANTS: graph, rope, objective)
    token-samples  TokenSamplingConfig  tokens and images of sample i conditioned on class i mod num_classes
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from dlc.tokens.train import TokenTrainConfig
from dlc.tokens.vq import VQConfig, VQTrainConfig
from dlc.validate import ConfigError, check, choice

from ..cache import Stage
from .base import gather_block, progress_callback, rank_block

# variant → the network's graph and position embedding, the training objective and the sampler
VARIANTS = {"absorb": {"graph": "absorb", "rope": "1d", "objective": "score-entropy", "sampler": "analytic"},
            "uniform": {"graph": "uniform", "rope": "1d", "objective": "score-entropy", "sampler": "analytic"},
            "absorb-2d": {"graph": "absorb", "rope": "2d", "objective": "score-entropy", "sampler": "analytic"},
            "maskgit": {"graph": "absorb", "rope": "1d", "objective": "masked-ce", "sampler": "maskgit"}}


@dataclass(frozen=True)
class TokenizerConfig:
    pretrained: str = ""             # '' = train `vq` on the training images; else a hub id or a VQModel directory
    subfolder: str = ""              # of `pretrained`, e.g. 'vqvae' for amused/amused-256
    vq: VQConfig = field(default_factory=VQConfig)
    train: VQTrainConfig = field(default_factory=VQTrainConfig)   # its seed is the run's seed

    def check_resources(self) -> None:
        from dlc.tokens.vq import load_vq

        if self.pretrained:
            load_vq(self.pretrained, subfolder=self.subfolder)     # one clear error before any training


def train_tokenizer(ctx: Any, cfg: TokenizerConfig, images: torch.Tensor, seed: int):
    from dlc.tokens.vq import load_vq, train_vq

    if cfg.pretrained:
        return load_vq(cfg.pretrained, subfolder=cfg.subfolder, device="cpu")
    tc = replace(cfg.train, seed=seed, warmup=min(cfg.train.warmup, cfg.train.steps))
    bar, cb = progress_callback(ctx, tc.steps, "train VQ tokenizer", {"recon": ".4f", "usage": ".2f"})
    model = train_vq(images, cfg.vq, tc, device=ctx.device, callback=cb)
    bar.close()
    return model


def _save_vq(model, d: Path) -> None:
    from dlc.tokens.vq import save_vq

    save_vq(d / "vq", model)


def _load_vq(d: Path):
    from dlc.tokens.vq import load_vq

    return load_vq(str(d / "vq"))


TOKENIZER = Stage("tokenizer", code=("dlc.tokens.vq", "bench.stages.tokens"), save=_save_vq, load=_load_vq,
                  description="VQ tokenizer (diffusers VQModel)")


def encode_sets(ctx: Any, model, sets: dict[str, torch.Tensor], batch_size: int = 256) -> dict[str, torch.Tensor]:
    """{name: tokens (N, h·w)} of each image set, plus 'recon:<name>' decode(encode(x)) of the 'test' set."""
    from dlc.tokens.vq import decode_tokens, encode_tokens

    out = {}
    for name, images in sets.items():
        lo, hi = rank_block(len(images), ctx.rank, ctx.world_size)
        local = encode_tokens(model, images[lo:hi], batch_size=batch_size, device=ctx.device)
        out[name] = gather_block(local, lo, len(images))
    if "test" in out:
        lo, hi = rank_block(len(out["test"]), ctx.rank, ctx.world_size)
        out["recon:test"] = gather_block(decode_tokens(model, out["test"][lo:hi], batch_size=batch_size,
                                                       device=ctx.device), lo, len(out["test"]))
    return out


TOKEN_GRIDS = Stage("token-grids", code=("dlc.tokens.vq", "bench.stages.tokens"),
                    description="VQ tokens of the train / test images and the test reconstructions")


def _default_token_train() -> TokenTrainConfig:
    return TokenTrainConfig(steps=2000, batch_size=64, lr=1e-3, warmup=100, ema=0.999, log_every=25)


@dataclass(frozen=True)
class TokenNetConfig:
    """The network and budget every variant shares (the variant sets graph, rope and objective)."""
    model: str = "tiny"              # dlc.sedd.SEDD_MODELS size
    hidden: int = 0                  # 0: the preset's
    n_blocks: int = 0
    n_heads: int = 0
    # DLC's learned absolute position embedding on top of rotary (dlc.sedd); off as in upstream SEDD, the seed's code:
    # then 1-D vs 2-D RoPE is all the network knows of where a token sits
    pos_embed: bool = False
    # its label_dropout is the CFG null-label rate; its objective is set by each variant (left at the default)
    train: TokenTrainConfig = field(default_factory=_default_token_train)

    def __post_init__(self):
        from dlc.sedd import SEDD_MODELS

        choice("model", self.model, SEDD_MODELS)
        check(self, non_negative=("hidden", "n_blocks", "n_heads"))
        if self.train.objective != TokenTrainConfig.objective:
            raise ConfigError("train.objective", self.train.objective, "is set by each variant (score-entropy for the "
                              "SEDD ones, masked-ce for maskgit)", "leave it unset; choose variants instead")

    def model_config(self, variant: str, vocab_size: int, seq_len: int, num_classes: int):
        from dlc.tokens import token_config

        v = VARIANTS[variant]
        over = {k: getattr(self, k) for k in ("hidden", "n_blocks", "n_heads") if getattr(self, k)}
        return token_config(self.model, vocab_size=vocab_size, seq_len=seq_len, num_classes=num_classes,
                            graph=v["graph"], rope=v["rope"], pos_embed=self.pos_embed, **over)

    def train_config(self, variant: str, seed: int) -> TokenTrainConfig:
        return replace(self.train, objective=VARIANTS[variant]["objective"], seed=seed,
                       warmup=min(self.train.warmup, self.train.steps))


def train_variant(ctx: Any, cfg: TokenNetConfig, variant: str, tokens: torch.Tensor, labels: torch.Tensor,
                  vocab_size: int, num_classes: int, seed: int) -> dict:
    from dlc.tokens import train_token_model

    mcfg = cfg.model_config(variant, vocab_size, tokens.shape[1], num_classes)
    tc = cfg.train_config(variant, seed)
    losses = []
    bar, show = progress_callback(ctx, tc.steps, f"train {variant}", {"loss": ".3f"})

    def cb(step: int, logs: dict) -> None:
        losses.append(logs["loss"])
        show(step, logs)

    _, ema = train_token_model(tokens, labels, mcfg, tc, device=ctx.device, callback=cb)
    bar.close()
    return {"model": ema.cpu(), "losses": torch.tensor(losses)}


def _save_model(value: dict, d: Path) -> None:
    from dlc.tokens import save_token_model
    from safetensors.torch import save_file

    save_token_model(d / "model", value["model"])
    save_file({"losses": value["losses"].contiguous()}, str(d / "losses.safetensors"))


def _load_model(d: Path) -> dict:
    from dlc.tokens import load_token_model
    from safetensors.torch import load_file

    return {"model": load_token_model(d / "model")[0], "losses": load_file(str(d / "losses.safetensors"))["losses"]}


TOKEN_MODEL = Stage("token-model", code=("dlc.tokens.model", "dlc.tokens.train", "dlc.sedd", "dlc.common", "dlc.dist",
                                         "bench.stages.tokens"),
                    save=_save_model, load=_load_model, description="class-conditional model over VQ tokens")


@dataclass(frozen=True)
class TokenSamplingConfig:
    steps: int = 32                  # the main comparison's sampling steps
    steps_grid: tuple[int, ...] = (8, 16, 32)   # FD against the number of steps (re-samples; trains nothing)
    cfg_scale: float = 1.0           # w of s_c^(1+w) s_u^(−w) (0: no guidance)
    maskgit_temperature: float = 4.5
    batch_size: int = 250

    def __post_init__(self):
        check(self, positive=("steps", "batch_size"), non_negative=("cfg_scale", "maskgit_temperature"))
        if not self.steps_grid or any(not isinstance(s, int) or s < 1 for s in self.steps_grid):
            raise ConfigError("steps_grid", list(self.steps_grid), "must be positive integers",
                              "e.g. steps_grid=[8, 16, 32]")


def sample_class_images(ctx: Any, cfg: TokenSamplingConfig, model, vq, variant: str, steps: int, n: int,
                        num_classes: int, seed: int) -> dict:
    """Sample i (global index) conditioned on class i mod num_classes; {tokens (n, L), images uint8, labels,
    seconds: the sampler's wall time on this rank (decoding excluded)}."""
    from dlc.tokens import sample_tokens
    from dlc.tokens.vq import decode_tokens

    lo, hi = rank_block(n, ctx.rank, ctx.world_size)
    labels = torch.arange(n) % num_classes
    t0 = time.perf_counter()
    tok = sample_tokens(model, labels[lo:hi], sampler=VARIANTS[variant]["sampler"], steps=steps,
                        cfg_scale=cfg.cfg_scale, seed=seed, start_index=lo, batch_size=cfg.batch_size,
                        device=ctx.device, maskgit_temperature=cfg.maskgit_temperature)
    seconds = time.perf_counter() - t0
    images = decode_tokens(vq, tok, batch_size=cfg.batch_size, device=ctx.device)
    return {"tokens": gather_block(tok, lo, n), "images": gather_block(images, lo, n), "labels": labels,
            "seconds": float(seconds), "n_local": hi - lo}


TOKEN_SAMPLES = Stage("token-samples", code=("dlc.tokens.model", "dlc.tokens.sample", "dlc.tokens.vq", "dlc.sedd",
                                             "bench.stages.tokens"),
                      description="class-conditional token samples, decoded")
