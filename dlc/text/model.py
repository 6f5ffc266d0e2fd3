"""Text-to-DLC model (DLC paper, Sec. 6): a bidirectional masked-diffusion transformer over one vocabulary of text
tokens, SEP, the V code values and MASK, reading [DLC | SEP | caption] sequences.

    joint id      meaning
    [0, T)        text tokens (the tokenizer's ids; its pad id becomes PAD)
    T             SEP
    T+1 … T+V     the code values 0 … V−1
    T+V+1         MASK
    T+V+2         PAD (never attended to, never predicted)

With a frozen text encoder (`prefix_dim` > 0, e.g. all-MiniLM-L6-v2's 384-d token states) the caption is not part of
the token sequence: its states, projected to the model width, are prepended as a prefix the [DLC | SEP] tokens
attend to, and the caption is never masked or predicted.

No timestep input: as in LLaDA the network infers the noise level from the MASK tokens it sees.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn

__all__ = ["JointVocab", "TextDLCConfig", "TextDLCModel", "TEXT_DLC_MODELS"]


@dataclass(frozen=True)
class JointVocab:
    """The layout of the joint vocabulary and of a [DLC | SEP | caption] sequence (L code slots, T text slots)."""
    n_text: int
    V: int
    L: int
    T: int

    @property
    def sep(self) -> int:
        return self.n_text

    @property
    def code0(self) -> int:
        return self.n_text + 1

    @property
    def mask(self) -> int:
        return self.n_text + 1 + self.V

    @property
    def pad(self) -> int:
        return self.n_text + 2 + self.V

    @property
    def size(self) -> int:
        return self.n_text + 3 + self.V

    @property
    def length(self) -> int:
        return self.L + 1 + self.T

    def code_ids(self, device=None) -> torch.Tensor:
        """(V,) the joint ids of the code values, in value order."""
        return torch.arange(self.code0, self.code0 + self.V, device=device)

    def sequence(self, codes: torch.Tensor | None, text: torch.Tensor | None, text_pad: int,
                 n: int | None = None) -> torch.Tensor:
        """(N, L+1+T) joint ids: codes (N, L) in [0, V) (None: every slot MASK), SEP, text (N, T) tokenizer ids
        (text_pad → PAD; None: no text slots, T must be 0, and n gives N when codes is None too)."""
        n = len(codes) if codes is not None else len(text) if text is not None else n
        c = torch.full((n, self.L), self.mask, dtype=torch.long) if codes is None else codes.long() + self.code0
        parts = [c, torch.full((n, 1), self.sep, dtype=torch.long)]
        if self.T:
            if text is None or text.shape[1] != self.T:
                raise ValueError(f"text must be (N, {self.T}) tokenizer ids")
            parts.append(torch.where(text == text_pad, self.pad, text.long()))
        return torch.cat([p.to(c.device) for p in parts], 1)

    def code_slots(self, x: torch.Tensor) -> torch.Tensor:
        """(N, S) bool: the L code positions."""
        m = torch.zeros_like(x, dtype=torch.bool)
        m[:, :self.L] = True
        return m

    def text_slots(self, x: torch.Tensor) -> torch.Tensor:
        """(N, S) bool: caption positions holding a token (not PAD)."""
        m = torch.zeros_like(x, dtype=torch.bool)
        m[:, self.L + 1:] = True
        return m & (x != self.pad)

    def to_codes(self, x: torch.Tensor) -> torch.Tensor:
        """(N, L) code values of the code slots; −1 where a slot holds no code id."""
        c = x[:, :self.L] - self.code0
        return torch.where((c >= 0) & (c < self.V), c, torch.full_like(c, -1))


@dataclass(frozen=True)
class TextDLCConfig:
    vocab_size: int                  # JointVocab.size
    seq_len: int                     # JointVocab.length
    hidden: int = 128
    n_layers: int = 4
    n_heads: int = 4
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    pad_id: int = -1                 # JointVocab.pad (attention ignores it)
    prefix_dim: int = 0              # > 0: a frozen text encoder's states (N, P, prefix_dim) come as a prefix
    prefix_len: int = 0              # P (their positions get their own embeddings)


def _preset(hidden: int, n_layers: int, n_heads: int) -> Callable[..., TextDLCConfig]:
    def make(**kw) -> TextDLCConfig:
        return TextDLCConfig(**{"hidden": hidden, "n_layers": n_layers, "n_heads": n_heads, **kw})
    return make


TEXT_DLC_MODELS = {"tiny": _preset(128, 4, 4), "small": _preset(256, 6, 8), "base": _preset(512, 8, 8)}


class TextDLCModel(nn.Module):
    """x (N, S) joint ids [, prefix (N, P, prefix_dim), prefix_mask (N, P) bool] → logits (N, S, vocab_size)."""

    def __init__(self, cfg: TextDLCConfig):
        super().__init__()
        if cfg.pad_id < 0:
            raise ValueError("TextDLCConfig.pad_id must be the joint vocabulary's PAD id")
        self.cfg = cfg
        d = cfg.hidden
        self.tok = nn.Embedding(cfg.vocab_size, d)
        self.pos = nn.Parameter(torch.zeros(1, cfg.seq_len, d))
        if cfg.prefix_dim:
            self.prefix_proj = nn.Linear(cfg.prefix_dim, d)
            self.prefix_pos = nn.Parameter(torch.zeros(1, cfg.prefix_len, d))
        layer = nn.TransformerEncoderLayer(d, cfg.n_heads, int(cfg.mlp_ratio * d), cfg.dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, cfg.n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, cfg.vocab_size)
        nn.init.normal_(self.pos, std=0.02)
        nn.init.normal_(self.tok.weight, std=0.02)
        if cfg.prefix_dim:
            nn.init.normal_(self.prefix_pos, std=0.02)

    def forward(self, x: torch.Tensor, prefix: torch.Tensor | None = None,
                prefix_mask: torch.Tensor | None = None) -> torch.Tensor:
        h = self.tok(x) + self.pos[:, :x.shape[1]]                          # (N, S, D)
        pad = x == self.cfg.pad_id                                          # (N, S) True = ignored
        if self.cfg.prefix_dim:
            if prefix is None:
                raise ValueError("this model reads a text encoder's states: pass prefix=(N, P, prefix_dim)")
            p = self.prefix_proj(prefix.to(h.dtype)) + self.prefix_pos[:, :prefix.shape[1]]   # (N, P, D)
            keep = torch.ones(prefix.shape[:2], dtype=torch.bool, device=x.device) if prefix_mask is None \
                else prefix_mask.bool()
            h, pad = torch.cat([p, h], 1), torch.cat([~keep, pad], 1)     # (N, P+S, D)
        h = self.blocks(h, src_key_padding_mask=pad)
        out = self.head(self.norm(h))
        return out[:, -x.shape[1]:]                                         # (N, S, vocab)
