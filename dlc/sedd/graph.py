"""Forward-process graphs of SEDD (Lou, Meng, Ermon 2024; `graph_lib.py`): absorbing and uniform.

Convention: Q is the rate matrix with *columns* summing to zero, Q[b, a] = rate of jumping from a to b,
and the forward process after total noise σ is e^{σQ}. Tokens are (N, L) long tensors, scores are
(N, L, dim) concrete-score ratios s_y ≈ p_t(x with y at i) / p_t(x); σ tensors have shape (N,).

- Absorbing: dim = V + 1, the mask token is index V; each token jumps to the mask at rate 1.
- Uniform: dim = V; each token jumps to any token at rate 1/V.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["Absorbing", "Uniform", "get_graph", "sample_categorical", "GRAPHS"]

GRAPHS = ("absorb", "uniform")


def _b(sigma: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """σ of shape (N,) (or a scalar) viewed to broadcast against `like` (N, ...)."""
    sigma = torch.as_tensor(sigma, device=like.device)
    return sigma.reshape(-1, *([1] * (like.ndim - 1)))


def _expm1(sigma: torch.Tensor) -> torch.Tensor:
    return torch.where(sigma < 0.5, torch.expm1(sigma), sigma.exp() - 1)


def sample_categorical(probs: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """argmax(p / E) with E = 1e-10 − log(u + 1e-10), u ~ U(0, 1) in float64: an exponential race.

    Index k wins with probability p_k / Σ p, so `probs` need not be normalised; entries ≤ 0 never win
    (unless every entry is ≤ 0). probs (..., K), u (..., K) float64 → indices (...).
    """
    if u.dtype != torch.float64:
        raise ValueError(f"the uniforms must be float64 (got {u.dtype})")
    e = 1e-10 - torch.log(u + 1e-10)
    return (probs.to(torch.float64) / e).argmax(dim=-1)


#################################################################################
#                                Absorbing graph                                #
#################################################################################

class Absorbing:
    """Every token jumps to the absorbing mask (index V) at rate 1."""
    absorb = True

    def __init__(self, vocab_size: int):
        self.vocab_size = int(vocab_size)
        self.dim = self.vocab_size + 1
        self.mask_index = self.vocab_size

    def rate(self, i: torch.Tensor) -> torch.Tensor:
        """Column i of Q (the forward rates out of i)."""
        return F.one_hot(torch.full_like(i, self.mask_index), self.dim) - F.one_hot(i, self.dim)

    def transp_rate(self, i: torch.Tensor) -> torch.Tensor:
        """Row i of Q (the rates into i): all ones for the mask (zero on its diagonal), −e_i otherwise."""
        edge = -F.one_hot(i, self.dim)
        return edge + (i == self.mask_index)[..., None].to(edge.dtype)

    def transp_transition(self, i: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """Row i of e^{σQ}: e^{−σ}·e_i, plus (1 − e^{−σ}) everywhere when i is the mask."""
        s = _b(sigma, i)[..., None]
        edge = torch.exp(-s) * F.one_hot(i, self.dim)
        return edge + torch.where((i == self.mask_index)[..., None], -torch.expm1(-s), torch.zeros_like(s))

    def sample_transition(self, i: torch.Tensor, sigma: torch.Tensor,
                          generator: torch.Generator | None = None) -> torch.Tensor:
        """x_t ~ e^{σQ}(·, x0): each token is masked independently with probability 1 − e^{−σ}."""
        move = torch.rand(i.shape, generator=generator, device=i.device) < -torch.expm1(-_b(sigma, i))
        return torch.where(move, self.mask_index, i)

    def staggered_score(self, score: torch.Tensor, dsigma: torch.Tensor) -> torch.Tensor:
        """e^{−Δσ Q} s: s·e^{Δσ}, and the mask entry gets (1 − e^{Δσ}) Σ_y s_y added."""
        d = _b(dsigma, score)
        extra = -torch.expm1(d[..., 0]) * score.sum(dim=-1)            # (N, L)
        out = score * d.exp()
        return torch.cat([out[..., :-1], (out[..., -1] + extra)[..., None]], dim=-1)

    def sample_limit(self, n: int, length: int, rng=None, device: torch.device | str = "cpu") -> torch.Tensor:
        """The t = 1 state: every position masked."""
        return torch.full((n, length), self.mask_index, dtype=torch.long, device=device)

    def score_entropy(self, log_score: torch.Tensor, sigma: torch.Tensor, x: torch.Tensor,
                      x0: torch.Tensor) -> torch.Tensor:
        """Per-position score entropy (N, L); only masked positions contribute. With a = 1/(e^σ − 1):
        ℓ = Σ_{y≠mask} e^{s_y} − a·s_{x0} + a(log a − 1)."""
        masked = x == self.mask_index
        ls = torch.where(masked[..., None], log_score, torch.zeros_like(log_score))   # no exp overflow at kept tokens
        a = 1.0 / _expm1(_b(sigma, x).to(ls.dtype))                                       # (N, 1)
        pos = ls[..., :-1].exp().sum(dim=-1)
        neg = a * torch.gather(ls, -1, x0[..., None]).squeeze(-1)
        const = a * (a.log() - 1)
        return torch.where(masked, pos - neg + const, torch.zeros_like(pos))


#################################################################################
#                                 Uniform graph                                 #
#################################################################################

class Uniform:
    """Every token jumps to every token at rate 1/V (Q = 11ᵀ/V − I)."""
    absorb = False
    mask_index = None

    def __init__(self, vocab_size: int):
        self.vocab_size = int(vocab_size)
        self.dim = self.vocab_size

    def rate(self, i: torch.Tensor) -> torch.Tensor:
        edge = torch.full((*i.shape, self.dim), 1.0 / self.dim, device=i.device)
        return edge.scatter(-1, i[..., None], -(self.dim - 1) / self.dim)

    def transp_rate(self, i: torch.Tensor) -> torch.Tensor:
        return self.rate(i)

    def transp_transition(self, i: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """Row i of e^{σQ}: (1 − e^{−σ})/V off the diagonal, the rest on i."""
        s = _b(sigma, i)[..., None]
        trans = (-torch.expm1(-s) / self.dim).expand(*i.shape, self.dim)
        trans = trans.scatter(-1, i[..., None], torch.zeros_like(trans[..., :1]))
        return trans.scatter(-1, i[..., None], 1 - trans.sum(dim=-1, keepdim=True))

    def sample_transition(self, i: torch.Tensor, sigma: torch.Tensor,
                          generator: torch.Generator | None = None) -> torch.Tensor:
        """With probability 1 − e^{−σ} the token is redrawn uniformly (possibly to itself)."""
        move = torch.rand(i.shape, generator=generator, device=i.device) < -torch.expm1(-_b(sigma, i))
        new = torch.randint(0, self.dim, i.shape, generator=generator, device=i.device)
        return torch.where(move, new, i)

    def staggered_score(self, score: torch.Tensor, dsigma: torch.Tensor) -> torch.Tensor:
        """e^{−Δσ Q} s = e^{Δσ} s + (1 − e^{Δσ})/V · Σ_y s_y."""
        d = _b(dsigma, score)
        return score * d.exp() - torch.expm1(d) / self.dim * score.sum(dim=-1, keepdim=True)

    def sample_limit(self, n: int, length: int, rng=None, device: torch.device | str = "cpu") -> torch.Tensor:
        """The t = 1 state: uniform tokens, drawn from the per-sample RNG."""
        if rng is None:
            raise ValueError("the uniform graph's limit is random: pass rng (a dlc.common.PerSampleRNG)")
        return rng.randint(self.dim, length).to(device)

    def score_entropy(self, log_score: torch.Tensor, sigma: torch.Tensor, x: torch.Tensor,
                      x0: torch.Tensor) -> torch.Tensor:
        """Σ_{y≠x} (1/V)[e^{s_y} − r_y s_y + r_y(log r_y − 1)], r_y = p_σ(y|x0)/p_σ(x|x0); (N, L)."""
        n = self.dim
        e = _expm1(_b(sigma, x).to(log_score.dtype))                                     # (N, 1)
        ratio = e / (e + n)                       # r_y for every y ≠ x when x = x0
        s_x = torch.gather(log_score, -1, x[..., None]).squeeze(-1)
        s_x0 = torch.gather(log_score, -1, x0[..., None]).squeeze(-1)
        neg = log_score.mean(dim=-1) - s_x / n
        neg = torch.where(x == x0, ratio * neg, s_x0 / e + neg)
        const = torch.where(x == x0, (n - 1) / n * ratio * (ratio.log() - 1),
                            ((-ratio.log() - 1) / ratio - (n - 2)) / n)
        sexp = log_score.exp()
        pos = sexp.mean(dim=-1) - torch.gather(sexp, -1, x[..., None]).squeeze(-1) / n
        return pos - neg + const


def reverse_rate(graph, i: torch.Tensor, score: torch.Tensor) -> torch.Tensor:
    """Reverse rate row: transp_rate(i) ⊙ s off the diagonal, minus their sum on it (N, L, dim)."""
    rate = graph.transp_rate(i).to(score.dtype) * score
    rate = rate.scatter(-1, i[..., None], torch.zeros_like(rate[..., :1]))
    return rate.scatter(-1, i[..., None], -rate.sum(dim=-1, keepdim=True))


def get_graph(config) -> Absorbing | Uniform:
    """The graph named by `config.graph` over `config.vocab_size` token values."""
    if config.graph == "absorb":
        return Absorbing(config.vocab_size)
    if config.graph == "uniform":
        return Uniform(config.vocab_size)
    raise ValueError(f"unknown graph {config.graph!r}; choose one of {GRAPHS}")
