"""Class-conditional score network over a grid of VQ image tokens ("tokenize and diffuse", Zhan & Lou, seed 004).

The SEDD DDiT (`dlc.sedd.model`) with two additions:
- a class label (N,) embedded into the conditioning vector next to the noise level, as in DiT: c = σ-embedding +
  label-embedding; label `num_classes` is the null label, used for classifier-free guidance;
- optional 2-D rotary position embeddings over the h × w token grid (Heo et al. 2024, RoPE-Axial): of the head_dim/2
  rotated pairs (k, k + head_dim/2), the first half turns with the token's column, the second with its row, each at
  the 1-D RoPE frequencies of a head of half the size, base^(−2j / (head_dim/2)). The attention logit of two tokens
  then depends only on their relative offset (Δrow, Δcol); on a 1 × w grid the column pairs are exactly 1-D RoPE of
  a head of half the size and the row pairs do not turn.

forward(tokens (N, L), sigma (N,), labels (N,)) → log concrete scores (N, L, dim), as `SEDD.forward`. The same
network trained with the masked cross-entropy is the MaskGIT baseline (`dlc.tokens.train`): its logits are the
first V entries (the σ-dependent offset of `scale_by_sigma` cancels in a softmax).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from ..common import count_params, load_checkpoint, save_checkpoint
from ..registry import did_you_mean
from ..sedd.model import SEDD, SEDD_MODELS, SEDDConfig
from ..validate import ConfigError, choice, non_negative, positive

__all__ = ["TokenModelConfig", "TokenSEDD", "token_config", "rotary_cos_sin_2d", "save_token_model",
           "load_token_model", "ROPES"]

ROPES = ("1d", "2d")


@dataclass(frozen=True)
class TokenModelConfig(SEDDConfig):
    """SEDDConfig plus the class labels and the token grid; seq_len = grid_h · (seq_len / grid_h)."""
    num_classes: int = 10            # labels 0 … num_classes − 1; num_classes itself is the null label
    rope: str = "1d"                 # '1d': rotary over the flattened (row-major) sequence; '2d': axial over the grid
    grid_h: int = 0                  # rows of the token grid (0: a square grid, √seq_len)

    def __post_init__(self):
        super().__post_init__()
        positive("num_classes", self.num_classes)
        choice("rope", self.rope, ROPES)
        non_negative("grid_h", self.grid_h)
        h, w = self.grid
        if h * w != self.seq_len:
            raise ConfigError("grid_h" if self.grid_h else "seq_len", self.grid_h or self.seq_len,
                              f"does not make a grid of seq_len={self.seq_len} tokens",
                              "set grid_h to a divisor of seq_len (or seq_len to a square for grid_h=0)")
        if self.rope == "2d" and (self.hidden // self.n_heads) % 4:
            raise ConfigError("hidden", self.hidden, f"gives heads of {self.hidden // self.n_heads} channels; 2-D "
                              "RoPE turns two halves of pairs, so the head size must be a multiple of 4",
                              "choose hidden a multiple of 4·n_heads")

    @property
    def grid(self) -> tuple[int, int]:
        """(rows, columns) of the token grid."""
        h = self.grid_h or math.isqrt(self.seq_len)
        return h, (self.seq_len // h if h else 0)


def token_config(size: str, **overrides: Any) -> TokenModelConfig:
    """A TokenModelConfig at one of SEDD's size presets (tiny, small, medium) with overrides."""
    if size not in SEDD_MODELS:
        raise ValueError(f"unknown model size {size!r}.{did_you_mean(size, SEDD_MODELS)} "
                         f"(known: {', '.join(SEDD_MODELS)})")
    base = SEDD_MODELS[size]()
    sizes = {f.name: getattr(base, f.name) for f in fields(SEDDConfig) if f.name in ("hidden", "n_blocks", "n_heads",
                                                                                  "cond_dim", "dropout")}
    return TokenModelConfig(**{**sizes, **overrides})


def rotary_cos_sin_2d(h: int, w: int, head_dim: int, base: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin tables (h·w, head_dim) in the rotate-half layout of `dlc.sedd.model.apply_rotary`, row-major over
    the grid: pair k < head_dim/4 turns by col · θ_k, pair k ≥ head_dim/4 by row · θ_(k − head_dim/4), with
    θ_j = base^(−2j / (head_dim/2)) (1-D RoPE's frequencies for a head of head_dim/2)."""
    if head_dim % 4:
        raise ValueError(f"2-D RoPE needs a head size divisible by 4, got {head_dim}")
    quarter = head_dim // 4
    inv_freq = 1.0 / (base ** (torch.arange(0, 2 * quarter, 2).float() / (2 * quarter)))     # (hd/4,)
    rows = torch.arange(h).float().repeat_interleave(w)                                       # (h·w,)
    cols = torch.arange(w).float().repeat(h)
    freqs = torch.cat([torch.outer(cols, inv_freq), torch.outer(rows, inv_freq)], dim=-1)    # (h·w, hd/2)
    emb = torch.cat([freqs, freqs], dim=-1)                                                   # (h·w, hd)
    return emb.cos(), emb.sin()


class TokenSEDD(SEDD):
    """Score network over VQ tokens with a class label: tokens (N, L), σ (N,), labels (N,) → (N, L, dim)."""

    def __init__(self, config: TokenModelConfig):
        if not isinstance(config, TokenModelConfig):
            raise ValueError(f"TokenSEDD needs a TokenModelConfig, got {type(config).__name__}")
        super().__init__(config)
        self.label_embed = nn.Embedding(config.num_classes + 1, config.cond_dim)      # + the null label
        nn.init.normal_(self.label_embed.weight, std=0.02)
        if config.rope == "2d":
            cos, sin = rotary_cos_sin_2d(*config.grid, config.hidden // config.n_heads)
            self.register_buffer("rotary_cos", cos, persistent=False)
            self.register_buffer("rotary_sin", sin, persistent=False)

    @property
    def null_label(self) -> int:
        return self.config.num_classes

    def forward(self, tokens: torch.Tensor, sigma: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        n = self.config.num_classes
        if not isinstance(labels, torch.Tensor) or labels.shape != (tokens.shape[0],) or labels.dtype.is_floating_point:
            raise ValueError(f"labels must be an integer tensor of shape (N,) = ({tokens.shape[0]},); got "
                             f"{getattr(labels, 'dtype', type(labels).__name__)} {tuple(getattr(labels, 'shape', ()))}")
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) > n):
            raise ValueError(f"labels must lie in [0, {n}] ({n} is the null label); got min {int(labels.min())}, "
                             f"max {int(labels.max())}")
        return super().forward(tokens, sigma, cond=self.label_embed(labels.long()))          # (N, L, dim)


def save_token_model(path: str | Path, model: nn.Module, meta: Mapping[str, Any] | None = None) -> Path:
    """Weights as safetensors plus the TokenModelConfig in the JSON sidecar."""
    model = getattr(model, "module", model)
    return save_checkpoint(path, model, config=model.config,
                           meta={"kind": "token-sedd", "params": count_params(model), **(meta or {})})


def load_token_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[TokenSEDD, dict]:
    """Rebuild a TokenSEDD from `save_token_model`'s files; returns (model in eval mode, meta)."""
    state, config, meta = load_checkpoint(path, device="cpu")
    if not config or meta.get("kind") != "token-sedd":
        raise FileNotFoundError(f"{Path(path).with_suffix('.json')} is not a token-model sidecar; save checkpoints "
                                "with dlc.tokens.save_token_model")
    model = TokenSEDD(TokenModelConfig.from_dict(config))
    model.load_state_dict(state)
    return model.to(device).eval(), meta
