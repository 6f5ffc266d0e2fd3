"""DiT (Peebles & Xie 2023) with pluggable condition embedders: DLC tokens, continuous vectors, class labels, none.

One backbone (adaLN-Zero blocks, fixed 2-D sin-cos positions, learned-σ output) and four condition
embedders that map a condition to a vector added to the timestep embedding, each with a null condition
for classifier-free guidance:

- "dlc":    per-position table E of shape (L, V+1, D); cond = (1/L) Σ_l E[l, c_l]. Index V is the null token.
            Also takes soft (N, L, V) probabilities (a weighted sum of the table rows), as the DLC reference does.
- "vector": Linear(cond_dim → D) of a continuous representation (DINOv2 / RCG); the null is a learned vector.
- "class":  an embedding table with one extra row for the null label (the original DiT).
- "none":   unconditional.

Parameter names follow facebookresearch/DiT, so its class-conditional checkpoints load unchanged.
References: DiT (github.com/facebookresearch/DiT), DLC `dit/models.py` (SEMEmbedder, ContEmbedder),
GLIDE (timestep embedding), MAE (2-D sin-cos position embedding).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..common import count_params, load_checkpoint, save_checkpoint
from ..validate import check, choice, in_range

__all__ = ["DiTConfig", "DiT", "DIT_MODELS", "build_dit", "save_dit", "load_dit", "CONDITIONERS"]

CONDITIONERS = ("dlc", "vector", "class", "none")
DLC_POOLS = ("mean", "sum")


@dataclass(frozen=True)
class DiTConfig:
    """DiT architecture and conditioning. The defaults are DiT-XL/2 at 256 px (32×32×4 latents), 1000 classes."""
    input_size: int = 32          # latent (or pixel) height = width
    patch_size: int = 2
    in_channels: int = 4
    hidden_size: int = 1152
    depth: int = 28
    num_heads: int = 16
    mlp_ratio: float = 4.0
    learn_sigma: bool = True      # output 2·C channels: ε and the variance interpolation v
    cond: str = "class"           # one of CONDITIONERS
    num_classes: int = 1000       # cond="class"
    dlc_length: int = 512         # cond="dlc": L positions
    dlc_vocab: int = 256          # cond="dlc": V values (index V is the null token)
    dlc_pool: str = "mean"        # cond="dlc": "mean" over positions (the paper) or "sum"
    cond_dim: int = 1024          # cond="vector": input dimension
    cond_bias: bool = False       # cond="vector": bias in the projection (DLC: no, RCG: yes)
    drop_prob: float = 0.1        # probability of the null condition during training (CFG)
    grad_checkpoint: bool = False  # recompute each block in the backward pass (saves memory)

    def __post_init__(self):
        choice("cond", self.cond, CONDITIONERS, "conditioner")
        choice("dlc_pool", self.dlc_pool, DLC_POOLS)
        check(self, positive=("input_size", "patch_size", "in_channels", "hidden_size", "depth", "num_heads",
                              "mlp_ratio", "num_classes", "dlc_length", "dlc_vocab", "cond_dim"))
        in_range("drop_prob", self.drop_prob, 0.0, 1.0, hi_open=True)
        if self.input_size % self.patch_size:
            raise ValueError(f"input_size={self.input_size} is not divisible by patch_size={self.patch_size}")
        if self.hidden_size % self.num_heads or self.hidden_size % 4:
            raise ValueError(f"hidden_size={self.hidden_size} must be a multiple of num_heads={self.num_heads} and "
                             "of 4 (2-D sin-cos positions)")

    @property
    def out_channels(self) -> int:
        return self.in_channels * 2 if self.learn_sigma else self.in_channels

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "DiTConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown DiTConfig keys {unknown}; known keys: {sorted(known)}")
        return cls(**dict(d))


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return torch.addcmul(shift.unsqueeze(1), x, 1 + scale.unsqueeze(1))


#################################################################################
#                  Embedding layers for timesteps and conditions                 #
#################################################################################

def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding [cos, sin] of (possibly fractional) timesteps t: (N,) → (N, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class TimestepEmbedder(nn.Module):
    """Timesteps → vectors: 256 sinusoidal frequencies, then an MLP with SiLU."""

    def __init__(self, hidden_size: int, frequency_embedding_size: int = 256):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(frequency_embedding_size, hidden_size), nn.SiLU(),
                                 nn.Linear(hidden_size, hidden_size))
        self.frequency_embedding_size = frequency_embedding_size

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(timestep_embedding(t, self.frequency_embedding_size).to(self.mlp[0].weight.dtype))


def _where_null(drop: torch.Tensor | None, null: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
    if drop is None:
        return emb
    return torch.where(drop[:, None], null.to(emb.dtype).expand_as(emb), emb)


class LabelEmbedder(nn.Module):
    """Class labels → vectors; row `num_classes` is the null label (present when drop_prob > 0)."""

    def __init__(self, num_classes: int, hidden_size: int, drop_prob: float):
        super().__init__()
        self.num_classes = num_classes
        self.embedding_table = nn.Embedding(num_classes + int(drop_prob > 0), hidden_size)

    def check(self, y: torch.Tensor, n: int) -> None:
        if not isinstance(y, torch.Tensor) or y.dtype.is_floating_point or y.dtype == torch.bool:
            raise ValueError("cond='class' expects an integer tensor of class labels of shape (N,)")
        if y.shape != (n,):
            raise ValueError(f"class labels must have shape ({n},) (one per image); got {tuple(y.shape)}")
        if n and (int(y.min()) < 0 or int(y.max()) >= self.num_classes):
            raise ValueError(f"class labels must lie in [0, {self.num_classes}); got values in "
                             f"[{int(y.min())}, {int(y.max())}] (use drop= for the null label)")

    def null(self) -> torch.Tensor:
        return self.embedding_table.weight[self.num_classes]            # (D,)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.embedding_table(y)                                   # (N, D)


class DLCEmbedder(nn.Module):
    """Discrete latent codes (N, L) in [0, V), or soft codes (N, L, V), → (1/L) Σ_l E[l, c_l] (pool "mean",
    the paper's) or Σ_l E[l, c_l] (pool "sum", with the table initialised 1/L smaller so both start equal: under
    Adam each entry moves ~lr per step, so the summed code moves L× faster and keeps up with the timestep
    embedding at small budgets)."""

    def __init__(self, length: int, vocab: int, hidden_size: int, pool: str = "mean"):
        super().__init__()
        if pool not in DLC_POOLS:
            raise ValueError(f"dlc_pool={pool!r}; choose one of {DLC_POOLS}")
        self.length, self.vocab, self.pool = length, vocab, pool
        self.scale = 1.0 if pool == "mean" else float(length)
        self.table = nn.Parameter(torch.empty(length, vocab + 1, hidden_size))  # (L, V+1, D)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        d = self.table.shape[-1]
        std = d ** -0.5 / self.scale            # "sum" starts where "mean" does; only its learning dynamics differ
        nn.init.normal_(self.table, std=std)
        self.table[:, self.vocab] = torch.randn_like(self.table[0, self.vocab]) * std  # one null vector for all l

    def check(self, c: torch.Tensor, n: int) -> None:
        L, V = self.length, self.vocab
        if not isinstance(c, torch.Tensor):
            raise ValueError(f"cond='dlc' expects a tensor of tokens (N, {L}) or probabilities (N, {L}, {V})")
        if c.dtype.is_floating_point:
            if c.shape != (n, L, V):
                raise ValueError(f"soft DLC must have shape ({n}, {L}, {V}) = (N, L, V); got {tuple(c.shape)}")
            if n and (bool((c < 0).any()) or not torch.allclose(c.sum(-1), c.new_ones(()), atol=1e-3)):
                raise ValueError("soft DLC rows must be probabilities (non-negative, summing to 1 over V); "
                                 "apply softmax over the last dimension")
            return
        if c.dtype == torch.bool:
            raise ValueError("DLC tokens must be an integer tensor, not bool")
        if c.ndim != 2 or c.shape[0] != n or c.shape[1] != L:
            raise ValueError(f"DLC tokens must have shape ({n}, {L}) = (N, L) for this model (L={L}); "
                             f"got {tuple(c.shape)}")
        if n and (int(c.min()) < 0 or int(c.max()) >= V):
            raise ValueError(f"DLC tokens must lie in [0, V) = [0, {V}); got values in [{int(c.min())}, "
                             f"{int(c.max())}] (the null token V is chosen with drop=, not passed as a token)")

    def null(self) -> torch.Tensor:
        return self.table[:, self.vocab].mean(0) * self.scale            # (D,)

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        L, V, D = self.table.shape[0], self.vocab, self.table.shape[-1]
        if c.dtype.is_floating_point:                                    # soft: one (N, L·V) @ (L·V, D) matmul
            w = self.table[:, :V].reshape(L * V, D)
            return (c.reshape(c.shape[0], L * V).to(w.dtype) @ w) * (self.scale / L)   # (N, D)
        flat = c + torch.arange(L, device=c.device) * (V + 1)            # (N, L) rows of the flattened table
        return F.embedding_bag(flat, self.table.reshape(L * (V + 1), D), mode=self.pool)  # (N, D)


class VectorEmbedder(nn.Module):
    """Continuous representations (N, cond_dim) → Linear → (N, D); the null is a learned input vector."""

    def __init__(self, in_dim: int, hidden_size: int, bias: bool, drop_prob: float):
        super().__init__()
        self.in_dim = in_dim
        self.proj = nn.Linear(in_dim, hidden_size, bias=bias)
        self.null_vector = nn.Parameter(torch.zeros(in_dim)) if drop_prob > 0 else None

    def check(self, v: torch.Tensor, n: int) -> None:
        if not isinstance(v, torch.Tensor) or not v.dtype.is_floating_point:
            raise ValueError(f"cond='vector' expects a float tensor of shape (N, {self.in_dim})")
        if v.shape != (n, self.in_dim):
            raise ValueError(f"condition vectors must have shape ({n}, {self.in_dim}) = (N, cond_dim); "
                             f"got {tuple(v.shape)}")

    def null(self) -> torch.Tensor:
        return self.proj(self.null_vector)                               # (D,)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return self.proj(v.to(self.proj.weight.dtype))                   # (N, D)


#################################################################################
#                                 Core DiT model                                #
#################################################################################

class PatchEmbed(nn.Module):
    """(N, C, H, W) → (N, T, D) with non-overlapping p×p patches, T = (H/p)·(W/p), row-major."""

    def __init__(self, patch_size: int, in_channels: int, hidden_size: int):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, hidden_size, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention with a fused qkv projection (with bias)."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        N, T, D = x.shape
        q, k, v = self.qkv(x).reshape(N, T, 3, self.num_heads, D // self.num_heads).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(q, k, v)                      # (N, H, T, D/H)
        return self.proj(x.transpose(1, 2).reshape(N, T, D))


class Mlp(nn.Module):
    """Linear → GELU(tanh) → Linear."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class DiTBlock(nn.Module):
    """A DiT block with adaptive layer norm zero (adaLN-Zero) conditioning."""

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float):
        super().__init__()
        self.attn = Attention(hidden_size, num_heads)
        self.mlp = Mlp(hidden_size, int(hidden_size * mlp_ratio))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 6 * hidden_size))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.adaLN_modulation(c).chunk(6, dim=1)
        D = x.shape[-1]
        x = x + gate_msa.unsqueeze(1) * self.attn(modulate(F.layer_norm(x, (D,), eps=1e-6), shift_msa, scale_msa))
        x = x + gate_mlp.unsqueeze(1) * self.mlp(modulate(F.layer_norm(x, (D,), eps=1e-6), shift_mlp, scale_mlp))
        return x


class FinalLayer(nn.Module):
    """adaLN → Linear to p·p·out_channels per token."""

    def __init__(self, hidden_size: int, patch_size: int, out_channels: int):
        super().__init__()
        self.linear = nn.Linear(hidden_size, patch_size * patch_size * out_channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(modulate(F.layer_norm(x, (x.shape[-1],), eps=1e-6), shift, scale))


class DiT(nn.Module):
    """Diffusion model with a Transformer backbone and a pluggable condition embedder."""

    def __init__(self, config: DiTConfig):
        super().__init__()
        self.config = cfg = config
        self.in_channels, self.out_channels = cfg.in_channels, cfg.out_channels
        self.patch_size, self.input_size = cfg.patch_size, cfg.input_size
        self.x_embedder = PatchEmbed(cfg.patch_size, cfg.in_channels, cfg.hidden_size)
        self.t_embedder = TimestepEmbedder(cfg.hidden_size)
        self.y_embedder: nn.Module | None = {
            "class": lambda: LabelEmbedder(cfg.num_classes, cfg.hidden_size, cfg.drop_prob),
            "dlc": lambda: DLCEmbedder(cfg.dlc_length, cfg.dlc_vocab, cfg.hidden_size, cfg.dlc_pool),
            "vector": lambda: VectorEmbedder(cfg.cond_dim, cfg.hidden_size, cfg.cond_bias, cfg.drop_prob),
            "none": lambda: None,
        }[cfg.cond]()
        num_patches = (cfg.input_size // cfg.patch_size) ** 2
        # Fixed sin-cos embedding, kept as a frozen parameter as in DiT (its checkpoints and parameter counts have it).
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches, cfg.hidden_size), requires_grad=False)
        self.blocks = nn.ModuleList([DiTBlock(cfg.hidden_size, cfg.num_heads, cfg.mlp_ratio)
                                     for _ in range(cfg.depth)])
        self.final_layer = FinalLayer(cfg.hidden_size, cfg.patch_size, cfg.out_channels)
        self.initialize_weights()

    @torch.no_grad()
    def initialize_weights(self) -> None:
        def _basic_init(module):
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        self.apply(_basic_init)
        grid = self.input_size // self.patch_size
        self.pos_embed.copy_(sincos_pos_embed_2d(self.pos_embed.shape[-1], grid).unsqueeze(0))
        w = self.x_embedder.proj.weight                                  # patch embedding initialised like a Linear
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.x_embedder.proj.bias)
        if isinstance(self.y_embedder, LabelEmbedder):
            nn.init.normal_(self.y_embedder.embedding_table.weight, std=0.02)
        elif isinstance(self.y_embedder, DLCEmbedder):
            self.y_embedder.reset_parameters()
        elif isinstance(self.y_embedder, VectorEmbedder) and self.y_embedder.null_vector is not None:
            nn.init.normal_(self.y_embedder.null_vector, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
        for block in self.blocks:                                        # adaLN-Zero: every block starts as identity
            nn.init.zeros_(block.adaLN_modulation[-1].weight)
            nn.init.zeros_(block.adaLN_modulation[-1].bias)
        for layer in (self.final_layer.adaLN_modulation[-1], self.final_layer.linear):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    # ------------------------------------------------------------------ inputs
    def check_inputs(self, x: torch.Tensor, t: torch.Tensor, cond: Any = None) -> None:
        """Raise ValueError naming the problem when x, t or cond do not fit this model."""
        C, S = self.in_channels, self.input_size
        if not isinstance(x, torch.Tensor) or x.ndim != 4:
            raise ValueError(f"x must be a (N, {C}, {S}, {S}) tensor; got "
                             f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
        if x.shape[1] != C:
            raise ValueError(f"x has {x.shape[1]} channels but the model takes in_channels={C} "
                             f"(4 for SD-VAE latents, 3 for RGB pixels)")
        if x.shape[2] != S or x.shape[3] != S:
            raise ValueError(f"x is {x.shape[2]}×{x.shape[3]} but the model takes input_size={S} ({S}×{S} "
                             f"latents or pixels; SD-VAE latents of 256 px images are 32×32)")
        if t.shape != (x.shape[0],):
            raise ValueError(f"t must have shape ({x.shape[0]},) (one timestep per image); got {tuple(t.shape)}")
        if self.y_embedder is None:
            if cond is not None:
                raise ValueError("this DiT is unconditional (cond='none'); pass cond=None")
        else:
            if cond is None:
                raise ValueError(f"this DiT is conditioned on {self.config.cond!r}; pass cond (or use drop= "
                                 f"for the null condition)")
            self.y_embedder.check(cond, x.shape[0])

    def embed_condition(self, cond: Any, drop: torch.Tensor | None) -> torch.Tensor | None:
        """(N, D) condition embedding with the null one on rows where drop is True."""
        if self.y_embedder is None:
            return None
        return _where_null(drop, self.y_embedder.null(), self.y_embedder(cond))

    # ------------------------------------------------------------------ forward
    def unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        """(N, T, p·p·C) → (N, C, H, W)."""
        N, T, _ = x.shape
        p, c, h = self.patch_size, self.out_channels, int(math.isqrt(T))
        x = x.reshape(N, h, h, p, p, c).permute(0, 5, 1, 3, 2, 4)       # (N, C, h, p, w, p)
        return x.reshape(N, c, h * p, h * p)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: Any = None,
                drop: torch.Tensor | None = None) -> torch.Tensor:
        """x: (N, C, H, W) inputs, t: (N,) timesteps, cond: the condition (see DiTConfig.cond),
        drop: (N,) bool, True where the null condition replaces cond. In training mode with drop=None,
        each row is dropped with probability drop_prob (torch's global RNG)."""
        self.check_inputs(x, t, cond)
        if self.y_embedder is not None and drop is None and self.training and self.config.drop_prob > 0:
            drop = torch.rand(x.shape[0], device=x.device) < self.config.drop_prob
        if drop is not None:
            if self.y_embedder is None:
                raise ValueError("drop= needs a conditional DiT (cond='none' has no null condition)")
            if self.config.drop_prob <= 0 and self.config.cond != "dlc":
                raise ValueError("this DiT has no null condition (drop_prob=0); CFG and drop= are unavailable")
            if drop.shape != (x.shape[0],):
                raise ValueError(f"drop must have shape ({x.shape[0]},) (one flag per image); got {tuple(drop.shape)}")
            drop = drop.to(device=x.device, dtype=torch.bool)
        x = self.x_embedder(x) + self.pos_embed                          # (N, T, D)
        c = self.t_embedder(t)                                           # (N, D)
        y = self.embed_condition(cond, drop)
        if y is not None:
            c = c + y                                                    # (N, D)
        for block in self.blocks:
            if self.config.grad_checkpoint and self.training and torch.is_grad_enabled():
                x = checkpoint(block, x, c, use_reentrant=False)
            else:
                x = block(x, c)                                          # (N, T, D)
        x = self.final_layer(x, c)                                       # (N, T, p·p·out_channels)
        return self.unpatchify(x)                                        # (N, out_channels, H, W)

    def forward_with_cfg(self, x: torch.Tensor, t: torch.Tensor, cond: Any, cfg_scale: float,
                         guided_channels: int | None = None) -> torch.Tensor:
        """Classifier-free guidance: ε = ε_null + s·(ε_cond − ε_null) on the first `guided_channels` ε channels
        (None: all in_channels, as the DLC reference; 3: DiT/RCG). Other channels are the conditional output.
        x: (N, C, H, W); the conditional and null passes are batched together."""
        k = self.in_channels if guided_channels is None else int(guided_channels)
        if not 0 <= k <= self.in_channels:
            raise ValueError(f"guided_channels={guided_channels} must be in [0, in_channels={self.in_channels}]")
        if self.y_embedder is None:
            raise ValueError("classifier-free guidance needs a conditional DiT (this one has cond='none')")
        n = x.shape[0]
        drop = torch.cat([torch.zeros(n, dtype=torch.bool), torch.ones(n, dtype=torch.bool)]).to(x.device)
        out = self.forward(torch.cat([x, x]), torch.cat([t, t]), torch.cat([cond, cond]), drop=drop)
        cond_out, null_out = out[:n], out[n:]
        guided = null_out[:, :k] + cfg_scale * (cond_out[:, :k] - null_out[:, :k])
        return torch.cat([guided, cond_out[:, k:]], dim=1)


#################################################################################
#                   Sine/cosine positional embedding functions                   #
#################################################################################

def sincos_pos_embed_1d(dim: int, pos: torch.Tensor) -> torch.Tensor:
    """(M,) positions → (M, dim) as [sin(pos·ω), cos(pos·ω)] with ω_i = 10000^(−2i/dim)."""
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0))
    out = pos.to(torch.float64)[:, None] * omega[None]                   # (M, dim/2)
    return torch.cat([torch.sin(out), torch.cos(out)], dim=1)


def sincos_pos_embed_2d(dim: int, grid_size: int) -> torch.Tensor:
    """(grid², dim) fixed 2-D embedding for row-major tokens: first half encodes the column, second the row
    (the MAE/DiT convention)."""
    rows, cols = torch.meshgrid(torch.arange(grid_size), torch.arange(grid_size), indexing="ij")
    emb = torch.cat([sincos_pos_embed_1d(dim // 2, cols.reshape(-1)),
                     sincos_pos_embed_1d(dim // 2, rows.reshape(-1))], dim=1)
    return emb.float()


#################################################################################
#                            DiT configs and checkpoints                         #
#################################################################################

_SIZES = {  # name: (depth, hidden_size, num_heads)
    "XL": (28, 1152, 16), "L": (24, 1024, 16), "B": (12, 768, 12), "S": (12, 384, 6),
    "mini": (4, 128, 4), "tiny": (2, 64, 2),   # CPU presets (tests, toy runs)
}


def _factory(size: str, patch: int):
    depth, hidden, heads = _SIZES[size]

    def make(**overrides: Any) -> DiT:
        return DiT(DiTConfig(depth=depth, hidden_size=hidden, num_heads=heads, patch_size=patch, **overrides))
    make.__name__ = f"DiT_{size}_{patch}"
    make.__doc__ = f"DiT-{size}/{patch}: depth {depth}, hidden {hidden}, {heads} heads, patch {patch}."
    return make


DIT_MODELS = {f"DiT-{size}/{p}": _factory(size, p) for size in _SIZES for p in (2, 4, 8)}


def build_dit(name: str, **overrides: Any) -> DiT:
    """DIT_MODELS[name](**overrides), with a clear error for an unknown preset name."""
    if name not in DIT_MODELS:
        from ..registry import did_you_mean
        raise ValueError(f"unknown DiT preset {name!r}.{did_you_mean(name, DIT_MODELS)} "
                         f"(known: {', '.join(DIT_MODELS)})")
    return DIT_MODELS[name](**overrides)


def save_dit(path: str | Path, model: nn.Module, meta: Mapping[str, Any] | None = None) -> Path:
    """Weights as safetensors plus the DiTConfig in the JSON sidecar (dlc.common.save_checkpoint)."""
    model = getattr(model, "module", model)
    meta = {"kind": "dit", "params": count_params(model), **(meta or {})}
    return save_checkpoint(path, model, config=model.config, meta=meta)


def load_dit(path: str | Path, device: str | torch.device = "cpu") -> tuple[DiT, dict]:
    """Rebuild a DiT from a checkpoint written by `save_dit`; returns (model in eval mode, meta)."""
    state, config, meta = load_checkpoint(path, device="cpu")
    if not config:
        raise FileNotFoundError(f"{Path(path).with_suffix('.json')} (the DiT config sidecar) is missing; "
                                f"save checkpoints with dlc.dit.save_dit")
    with torch.device("meta"):
        model = DiT(DiTConfig.from_dict(config))
    model.load_state_dict(state, assign=True)
    return model.to(device).eval(), meta
