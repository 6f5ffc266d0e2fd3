"""The SEDD score network ("DDiT"): a bidirectional transformer over L tokens, conditioned on the noise level σ.

Follows `model/transformer.py` of Score-Entropy-Discrete-Diffusion (Lou et al. 2024) with the DLC change
(Lavoie et al. 2025): a learned absolute position embedding added on top of rotary. Attention runs
through `F.scaled_dot_product_attention` (non-causal) instead of flash-attn.

forward(tokens (N, L), sigma (N,)) returns log concrete scores (N, L, dim), dim = V + 1 (absorb, the mask
is index V) or V (uniform). With scale_by_sigma: log s = out − log(e^σ − 1) − log V. The entry at each
position's current token is exactly 0 (the ratio p(x)/p(x) = 1).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ..common import count_params, load_checkpoint, save_checkpoint
from ..registry import did_you_mean
from ..validate import ConfigError, check, choice, in_range
from .graph import GRAPHS
from .noise import NOISES

__all__ = ["SEDDConfig", "SEDD", "SEDD_MODELS", "build_sedd", "save_sedd", "load_sedd"]


@dataclass(frozen=True)
class SEDDConfig:
    """SEDD architecture, graph and noise. The defaults are the DLC prior (medium_L512, V = 256)."""
    vocab_size: int = 256         # V token values (the absorbing graph adds the mask index V)
    seq_len: int = 512            # L positions
    hidden: int = 1024
    n_blocks: int = 24
    n_heads: int = 16
    cond_dim: int = 128
    mlp_ratio: int = 4
    dropout: float = 0.1
    graph: str = "absorb"         # 'absorb' | 'uniform'
    noise: str = "loglinear"      # 'loglinear' (ε = noise_eps) | 'geometric' (sigma_min, sigma_max)
    noise_eps: float = 1e-3
    sigma_min: float = 1e-4
    sigma_max: float = 20.0
    scale_by_sigma: bool | None = None   # None: True for absorb, False for uniform (as in SEDD)
    pos_embed: bool = True        # DLC's learned absolute position embedding (not in upstream SEDD)

    def __post_init__(self):
        choice("graph", self.graph, GRAPHS)
        choice("noise", self.noise, NOISES)
        check(self, positive=("vocab_size", "seq_len", "hidden", "n_blocks", "n_heads", "cond_dim", "mlp_ratio",
                              "sigma_min"))
        if self.hidden % self.n_heads or (self.hidden // self.n_heads) % 2:
            raise ConfigError("hidden", self.hidden, f"does not split into n_heads={self.n_heads} heads of even size",
                              "choose hidden a multiple of 2·n_heads")
        in_range("dropout", self.dropout, 0.0, 1.0, hi_open=True)
        in_range("noise_eps", self.noise_eps, 0.0, 1.0, lo_open=True, hi_open=True)
        if self.sigma_max <= self.sigma_min:
            raise ConfigError("sigma_max", self.sigma_max, f"must exceed sigma_min={self.sigma_min}")
        if self.scale_by_sigma is None:
            object.__setattr__(self, "scale_by_sigma", self.graph == "absorb")
        if self.scale_by_sigma and self.graph != "absorb":
            raise ValueError("scale_by_sigma is only defined for the absorbing graph (as in SEDD); "
                             "use scale_by_sigma=False with graph='uniform'")

    @property
    def dim(self) -> int:
        """Number of states per position: V + 1 with the absorbing mask, V for the uniform graph."""
        return self.vocab_size + (self.graph == "absorb")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SEDDConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown SEDDConfig keys {unknown}; known keys: {sorted(known)}")
        return cls(**dict(d))


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale) + shift


#################################################################################
#                                    Layers                                     #
#################################################################################

class LayerNorm(nn.Module):
    """LayerNorm with a weight and no bias, computed in float32."""

    def __init__(self, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            x = F.layer_norm(x.float(), [x.shape[-1]])
        return x * self.weight


class TimestepEmbedder(nn.Module):
    """σ → 256 sinusoidal frequencies → MLP (as DiT, applied to σ rather than t)."""

    def __init__(self, hidden_size: int, frequency_embedding_size: int = 256):
        super().__init__()
        self.freq = frequency_embedding_size
        self.mlp = nn.Sequential(nn.Linear(frequency_embedding_size, hidden_size), nn.SiLU(),
                                 nn.Linear(hidden_size, hidden_size))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.freq // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
        args = t[:, None].float() * freqs[None]
        return self.mlp(torch.cat([torch.cos(args), torch.sin(args)], dim=-1))


def rotary_cos_sin(length: int, head_dim: int, base: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin tables (L, head_dim) for rotary embeddings in the rotate-half layout."""
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2).float() / head_dim))
    freqs = torch.outer(torch.arange(length).float(), inv_freq)        # (L, hd/2)
    emb = torch.cat([freqs, freqs], dim=-1)                             # (L, hd)
    return emb.cos(), emb.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (x_k, x_{k+hd/2}) by position·θ_k; x (N, heads, L, hd)."""
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-x2, x1], dim=-1) * sin


#################################################################################
#                                  Core model                                   #
#################################################################################

class DDiTBlock(nn.Module):
    """Pre-norm transformer block with adaLN-zero modulation by the σ embedding."""

    def __init__(self, dim: int, n_heads: int, cond_dim: int, mlp_ratio: int = 4, dropout: float = 0.1):
        super().__init__()
        self.n_heads = n_heads
        self.norm1 = LayerNorm(dim)
        self.attn_qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.attn_out = nn.Linear(dim, dim, bias=False)
        self.norm2 = LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(approximate="tanh"),
                                 nn.Linear(mlp_ratio * dim, dim))
        self.dropout = nn.Dropout(dropout)
        self.adaLN_modulation = nn.Linear(cond_dim, 6 * dim)
        nn.init.zeros_(self.adaLN_modulation.weight)
        nn.init.zeros_(self.adaLN_modulation.bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        N, L, D = x.shape
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = \
            self.adaLN_modulation(c)[:, None].chunk(6, dim=2)                      # each (N, 1, D)
        h = modulate(self.norm1(x), shift_msa, scale_msa)
        q, k, v = self.attn_qkv(h).view(N, L, 3, self.n_heads, D // self.n_heads).permute(2, 0, 3, 1, 4)
        q, k = apply_rotary(q, cos, sin).to(v.dtype), apply_rotary(k, cos, sin).to(v.dtype)  # (N, H, L, hd)
        h = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(N, L, D)
        x = x + gate_msa * self.dropout(self.attn_out(h))
        return x + gate_mlp * self.dropout(self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp)))


class FinalLayer(nn.Module):
    """LayerNorm, adaLN (shift, scale) and a linear map to the per-state outputs; all zero-initialised."""

    def __init__(self, hidden_size: int, out_dim: int, cond_dim: int):
        super().__init__()
        self.norm_final = LayerNorm(hidden_size)
        self.linear = nn.Linear(hidden_size, out_dim)
        self.adaLN_modulation = nn.Linear(cond_dim, 2 * hidden_size)
        for layer in (self.linear, self.adaLN_modulation):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(c)[:, None].chunk(2, dim=2)
        return self.linear(modulate(self.norm_final(x), shift, scale))


class SEDD(nn.Module):
    """Score network: tokens (N, L) and σ (N,) → log concrete scores (N, L, dim)."""

    def __init__(self, config: SEDDConfig):
        super().__init__()
        self.config = cfg = config
        self.vocab_embed = nn.Parameter(torch.empty(cfg.dim, cfg.hidden))           # shared (V+1) × H table
        nn.init.kaiming_uniform_(self.vocab_embed, a=math.sqrt(5))
        if cfg.pos_embed:
            self.pos_embed = nn.Parameter(torch.empty(cfg.seq_len, cfg.hidden))    # (L, H)
            nn.init.kaiming_uniform_(self.pos_embed, a=math.sqrt(5))
        self.sigma_map = TimestepEmbedder(cfg.cond_dim)
        cos, sin = rotary_cos_sin(cfg.seq_len, cfg.hidden // cfg.n_heads)
        self.register_buffer("rotary_cos", cos, persistent=False)
        self.register_buffer("rotary_sin", sin, persistent=False)
        self.blocks = nn.ModuleList([DDiTBlock(cfg.hidden, cfg.n_heads, cfg.cond_dim, cfg.mlp_ratio, cfg.dropout)
                                     for _ in range(cfg.n_blocks)])
        self.output_layer = FinalLayer(cfg.hidden, cfg.dim, cfg.cond_dim)

    def check_inputs(self, tokens: torch.Tensor, sigma: torch.Tensor) -> None:
        cfg = self.config
        if not isinstance(tokens, torch.Tensor) or tokens.dtype not in (torch.long, torch.int32, torch.int16,
                                                                        torch.uint8):
            raise ValueError(f"tokens must be an integer tensor (N, {cfg.seq_len}); got "
                             f"{getattr(tokens, 'dtype', type(tokens).__name__)}")
        if tokens.ndim != 2 or tokens.shape[1] != cfg.seq_len:
            raise ValueError(f"tokens must have shape (N, L={cfg.seq_len}); got {tuple(tokens.shape)} — "
                             f"this model was built for sequences of length {cfg.seq_len}")
        if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= cfg.dim):
            what = f"[0, {cfg.vocab_size}] (V = {cfg.vocab_size} is the mask)" if cfg.graph == "absorb" \
                else f"[0, {cfg.vocab_size})"
            raise ValueError(f"token values must lie in {what}; got min {int(tokens.min())}, "
                             f"max {int(tokens.max())}")
        if not isinstance(sigma, torch.Tensor) or sigma.shape != (tokens.shape[0],):
            raise ValueError(f"sigma must be a tensor of shape (N,) = ({tokens.shape[0]},); "
                             f"got {tuple(getattr(sigma, 'shape', ()))}")

    def forward(self, tokens: torch.Tensor, sigma: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """cond: an optional (N, cond_dim) embedding added to the σ embedding (e.g. a class label's, as in DiT)."""
        self.check_inputs(tokens, sigma)
        tokens = tokens.long()
        x = F.embedding(tokens, self.vocab_embed)                                     # (N, L, H)
        if self.config.pos_embed:
            x = x + self.pos_embed
        c = self.sigma_map(sigma)                                                     # (N, cond_dim)
        c = F.silu(c if cond is None else c + cond)
        for block in self.blocks:
            x = block(x, c, self.rotary_cos, self.rotary_sin)
        x = self.output_layer(x, c).float()                                           # (N, L, dim)
        if self.config.scale_by_sigma:
            s = sigma.float()
            esigm1_log = torch.where(s < 0.5, torch.expm1(s), s.exp() - 1).log()
            x = x - esigm1_log[:, None, None] - math.log(x.shape[-1] - 1)
        return x.scatter(-1, tokens[..., None], 0.0)


#################################################################################
#                          SEDD configs and checkpoints                         #
#################################################################################

_SIZES = {  # name: (hidden, n_blocks, n_heads, dropout)
    "tiny": (64, 2, 2, 0.0),        # CPU preset (tests, toy runs)
    "small": (768, 12, 12, 0.1),
    "medium": (1024, 24, 16, 0.1),  # the DLC prior (configs/model/medium_L512.yaml)
}


def _factory(size: str):
    hidden, n_blocks, n_heads, dropout = _SIZES[size]

    def make(**overrides: Any) -> SEDDConfig:
        kw = dict(hidden=hidden, n_blocks=n_blocks, n_heads=n_heads, cond_dim=128, dropout=dropout)
        return SEDDConfig(**{**kw, **overrides})
    make.__name__ = f"SEDD_{size}"
    make.__doc__ = f"SEDD-{size}: hidden {hidden}, {n_blocks} blocks, {n_heads} heads, dropout {dropout}."
    return make


SEDD_MODELS = {size: _factory(size) for size in _SIZES}


def build_sedd(config: SEDDConfig | str, **overrides: Any) -> SEDD:
    """A SEDD from a config, or from a preset name of SEDD_MODELS plus overrides (vocab_size, seq_len, ...)."""
    if isinstance(config, str):
        if config not in SEDD_MODELS:
            raise ValueError(f"unknown SEDD preset {config!r}.{did_you_mean(config, SEDD_MODELS)} "
                             f"(known: {', '.join(SEDD_MODELS)})")
        config = SEDD_MODELS[config](**overrides)
    elif overrides:
        raise ValueError("overrides are only accepted with a preset name; pass a complete SEDDConfig instead")
    if not isinstance(config, SEDDConfig):
        raise ValueError(f"build_sedd expects a SEDDConfig or a preset name; got {type(config).__name__}")
    return SEDD(config)


def save_sedd(path: str | Path, model: nn.Module, meta: Mapping[str, Any] | None = None) -> Path:
    """Weights as safetensors plus the SEDDConfig in the JSON sidecar (dlc.common.save_checkpoint)."""
    model = getattr(model, "module", model)
    meta = {"kind": "sedd", "params": count_params(model), **(meta or {})}
    return save_checkpoint(path, model, config=model.config, meta=meta)


def load_sedd(path: str | Path, device: str | torch.device = "cpu") -> tuple[SEDD, dict]:
    """Rebuild a SEDD from a checkpoint written by `save_sedd`; returns (model in eval mode, meta)."""
    state, config, meta = load_checkpoint(path, device="cpu")
    if not config:
        raise FileNotFoundError(f"{Path(path).with_suffix('.json')} (the SEDD config sidecar) is missing; "
                                f"save checkpoints with dlc.sedd.save_sedd")
    model = SEDD(SEDDConfig.from_dict(config))
    model.load_state_dict(state)
    return model.to(device).eval(), meta
