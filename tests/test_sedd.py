"""SEDD prior (dlc.sedd).

- Graphs and noise against closed forms built independently from the rate matrix Q (torch.linalg.matrix_exp),
  the score entropy against its definition (SEDD eq. for the denoising score entropy) from the same matrices.
- Samplers driven by an *oracle* score (exact concrete scores of a known joint table, no training): the masked
  fraction after every step follows the closed form (analytic: t_{k+1}; corrector: the δ-corrected step and the
  eq. 4 remasking, recursed by hand), the final marginals pass a chi-square test against the table, and the rate
  at which two coupled tokens disagree equals its closed form.
- A tiny DDiT trained on a categorical distribution with a known dependency: loss decreases, sampled marginals
  and the dependency match the data within tolerances derived from the sample size.
- Corrector η = 0 equals the analytic sampler step for step; determinism, batch-size and start-index invariance;
  MaskGIT and the uniform graph; bad input; safetensors round trip.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats
from torch import nn

from dlc.sedd import (SEDD, SEDD_MODELS, Absorbing, GeometricNoise, LogLinearNoise, SEDDConfig, SEDDTrainConfig,
                      Uniform, analytic_probs, apply_remask, build_sedd, load_sedd, remask_noise, sample_categorical,
                      sample_sedd, save_sedd, score_entropy_loss, train_sedd)
from dlc.sedd.graph import reverse_rate
from dlc.sedd.sampling import SAMPLING_EPS, euler_probs, maskgit_schedule

SIGMAS = [0.01, 0.3, 0.7, 2.5]                   # both sides of the expm1 switch at 0.5


#################################################################################
#                 Independent references: rate matrices and scores             #
#################################################################################

def rate_matrix(graph) -> torch.Tensor:
    """Q (dim, dim) float64 with Q[b, a] the rate a → b (columns sum to zero), written from the definitions."""
    d = graph.dim
    if isinstance(graph, Absorbing):
        q = torch.zeros(d, d, dtype=torch.float64)
        for a in range(d - 1):
            q[d - 1, a], q[a, a] = 1.0, -1.0
        return q
    return torch.full((d, d), 1.0 / d, dtype=torch.float64) - torch.eye(d, dtype=torch.float64)


def dse_reference(q: torch.Tensor, sigma: float, log_s: torch.Tensor, x: int, x0: int) -> float:
    """Denoising score entropy Σ_{y≠x} Q[x, y] (e^{s_y} − r_y s_y + r_y (log r_y − 1)), r_y = P[y,x0] / P[x,x0]."""
    p = torch.linalg.matrix_exp(sigma * q)
    total = 0.0
    for y in range(q.shape[0]):
        if y == x or q[x, y] == 0:
            continue
        r = float(p[y, x0] / p[x, x0])
        k = r * (math.log(r) - 1) if r > 0 else 0.0
        total += float(q[x, y]) * (math.exp(float(log_s[y])) - r * float(log_s[y]) + k)
    return total


def graphs(v: int = 4):
    return [Absorbing(v), Uniform(v)]


class OracleScore(nn.Module):
    """Exact log concrete scores of the absorbing process for p0 = Π_g P_g(x_{positions g}), a product of joint
    tables over groups of positions.

    At a masked position i of group g: s_y = p_σ(x with y at i) / p_σ(x) = P_g(x0_i = y | x0 agrees with x on
    the unmasked positions of g) / (e^σ − 1); the entry at the current token is 0 (log 1), as the network's.
    """

    def __init__(self, length: int, vocab: int, factors: list[tuple[list[int], torch.Tensor]], eps: float = 1e-3):
        super().__init__()
        self.config = SEDDConfig(vocab_size=vocab, seq_len=length, hidden=8, n_blocks=1, n_heads=1, noise_eps=eps)
        self.factors = []
        for pos, table in factors:
            states = torch.cartesian_prod(*[torch.arange(vocab)] * len(pos)).reshape(-1, len(pos))   # (S, |g|)
            self.factors.append((pos, states, table.reshape(-1).double(), F.one_hot(states, vocab).double()))

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        v = self.config.vocab_size
        cond = torch.zeros(*x.shape, v, dtype=torch.float64)                      # (B, L, V)
        for pos, states, p, onehot in self.factors:
            xg = x[:, pos]                                                         # (B, |g|)
            agree = (states[None] == xg[:, None]) | (xg == v)[:, None]             # (B, S, |g|)
            w = agree.all(-1).double() * p                                         # (B, S)
            cg = torch.einsum("bs,sly->bly", w, onehot) / w.sum(-1)[:, None, None]
            cond[:, pos] = cg
        masked = x == v                                                            # (B, L)
        a = 1.0 / torch.expm1(sigma.double())[:, None, None]
        score = torch.cat([cond * a, torch.ones_like(cond[..., :1])], dim=-1)      # masked rows (B, L, V+1)
        score = torch.where(masked[..., None], score, F.one_hot(x, v + 1).double())
        return score.log()


# The toy distribution: L = 4, V = 3; token 1 copies token 0; tokens 0, 2, 3 independent with these marginals.
P0 = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
P2 = torch.tensor([0.7, 0.2, 0.1], dtype=torch.float64)
P3 = torch.tensor([0.1, 0.1, 0.8], dtype=torch.float64)
MARGINALS = [P0, P0, P2, P3]


def toy_oracle() -> OracleScore:
    """The exact score of the toy distribution: groups {0, 1} (token 1 = token 0), {2}, {3}."""
    return OracleScore(4, 3, [([0, 1], torch.diag(P0)), ([2], P2), ([3], P3)])


def toy_data(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t0, t2, t3 = (torch.multinomial(p.float(), n, replacement=True, generator=g) for p in (P0, P2, P3))
    return torch.stack([t0, t0, t2, t3], dim=1)                                    # (n, 4)


def chi2_marginals(x: torch.Tensor, marginals) -> list[float]:
    """p-values of a chi-square goodness-of-fit test of every position's sampled marginal."""
    out = []
    for i, p in enumerate(marginals):
        counts = np.bincount(x[:, i].numpy(), minlength=len(p))
        out.append(stats.chisquare(counts, p.numpy() * len(x)).pvalue)
    return out


def record(steps_out: list):
    def cb(step, logs):
        steps_out.append((step, logs["t"], logs["tokens"].clone()))
    return cb


def randomized_sedd(graph: str = "absorb", seed: int = 0, **kw) -> SEDD:
    """A tiny SEDD whose zero-initialised (adaLN, output) weights are replaced, so the output depends on input."""
    torch.manual_seed(seed)
    cfg = dict(vocab_size=5, seq_len=6, hidden=32, n_heads=2, n_blocks=2, graph=graph)
    if graph == "uniform":
        cfg["noise"] = "geometric"
    cfg.update(kw)
    model = build_sedd("tiny", **cfg)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "adaLN" in name or "output_layer.linear" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return model.eval()


#################################################################################
#                               Graphs and noise                                #
#################################################################################

@pytest.mark.parametrize("graph", graphs(), ids=["absorb", "uniform"])
def test_rates_are_columns_and_rows_of_q(graph):
    q = rate_matrix(graph)
    i = torch.arange(graph.dim)
    assert torch.allclose(graph.rate(i).double(), q.T)            # rate(i) = column i
    assert torch.allclose(graph.transp_rate(i).double(), q)       # transp_rate(i) = row i


@pytest.mark.parametrize("graph", graphs(), ids=["absorb", "uniform"])
@pytest.mark.parametrize("sigma", SIGMAS)
def test_transp_transition_rows_equal_matrix_exp(graph, sigma):
    expm = torch.linalg.matrix_exp(sigma * rate_matrix(graph))    # (dim, dim), columns are distributions
    i = torch.arange(graph.dim)[None]                             # (1, dim): every state as one position
    rows = graph.transp_transition(i, torch.tensor([sigma], dtype=torch.float64))[0]
    assert torch.allclose(rows.double(), expm, atol=1e-6)
    assert torch.allclose(expm.sum(0), torch.ones(graph.dim, dtype=torch.float64))


@pytest.mark.parametrize("graph", graphs(), ids=["absorb", "uniform"])
@pytest.mark.parametrize("dsigma", SIGMAS)
def test_staggered_score_is_matrix_exp_of_minus_dsigma_q(graph, dsigma):
    g = torch.Generator().manual_seed(1)
    s = torch.rand(2, 3, graph.dim, generator=g, dtype=torch.float64) * 3          # (N, L, dim)
    ref = torch.einsum("ab,nlb->nla", torch.linalg.matrix_exp(-dsigma * rate_matrix(graph)), s)
    out = graph.staggered_score(s, torch.full((2,), dsigma, dtype=torch.float64))
    assert torch.allclose(out, ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("graph", graphs(), ids=["absorb", "uniform"])
def test_reverse_rate_rows_sum_to_zero(graph):
    g = torch.Generator().manual_seed(2)
    i = torch.randint(0, graph.dim, (3, 5), generator=g)
    s = torch.rand(3, 5, graph.dim, generator=g, dtype=torch.float64)
    r = reverse_rate(graph, i, s)
    q = rate_matrix(graph)
    off = q[i] * s                                                                 # Q[x, y] s_y
    off = off.scatter(-1, i[..., None], 0.0)
    assert torch.allclose(r.sum(-1), torch.zeros(3, 5, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(r.scatter(-1, i[..., None], 0.0), off)


@pytest.mark.parametrize("graph", graphs(3), ids=["absorb", "uniform"])
def test_sample_transition_frequencies_match_matrix_exp(graph):
    sigma, n = 0.8, 20_000
    expm = torch.linalg.matrix_exp(sigma * rate_matrix(graph))
    g = torch.Generator().manual_seed(3)
    for a in range(graph.vocab_size):
        xt = graph.sample_transition(torch.full((n, 1), a), torch.full((n,), sigma), generator=g)
        counts = np.bincount(xt.flatten().numpy(), minlength=graph.dim)
        expected = expm[:, a].numpy() * n
        keep = expected > 0
        assert counts[~keep].sum() == 0
        assert stats.chisquare(counts[keep], expected[keep]).pvalue > 1e-3


@pytest.mark.parametrize("graph", graphs(3), ids=["absorb", "uniform"])
@pytest.mark.parametrize("sigma", SIGMAS)
def test_score_entropy_equals_definition(graph, sigma):
    q = rate_matrix(graph)
    p = torch.linalg.matrix_exp(sigma * q)
    g = torch.Generator().manual_seed(4)
    pairs = [(x, x0) for x0 in range(graph.vocab_size) for x in range(graph.dim) if p[x, x0] > 0]
    x = torch.tensor([[a for a, _ in pairs]])
    x0 = torch.tensor([[b for _, b in pairs]])
    log_s = torch.randn(1, len(pairs), graph.dim, generator=g, dtype=torch.float64)
    log_s = log_s.scatter(-1, x[..., None], 0.0)                   # the network's convention: log s_x = 0
    out = graph.score_entropy(log_s, torch.tensor([sigma], dtype=torch.float64), x, x0)[0]
    ref = torch.tensor([dse_reference(q, sigma, log_s[0, k], a, b) for k, (a, b) in enumerate(pairs)],
                       dtype=torch.float64)
    assert torch.allclose(out, ref, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("graph", graphs(3), ids=["absorb", "uniform"])
def test_score_entropy_nonnegative_and_zero_at_true_ratio(graph):
    q = rate_matrix(graph)
    g = torch.Generator().manual_seed(5)
    for sigma in SIGMAS:
        p = torch.linalg.matrix_exp(sigma * q)
        pairs = [(x, x0) for x0 in range(graph.vocab_size) for x in range(graph.dim) if p[x, x0] > 0]
        x = torch.tensor([[a for a, _ in pairs]])
        x0 = torch.tensor([[b for _, b in pairs]])
        true = torch.stack([p[:, b] / p[a, b] for a, b in pairs])[None].log()      # log r_y (−inf where 0)
        sig = torch.tensor([sigma], dtype=torch.float64)
        assert graph.score_entropy(true, sig, x, x0).abs().max() < 1e-10
        for _ in range(5):
            noisy = true + torch.randn(true.shape, generator=g, dtype=torch.float64)
            noisy = noisy.scatter(-1, x[..., None], 0.0)
            assert (graph.score_entropy(noisy, sig, x, x0) >= -1e-12).all()


@pytest.mark.parametrize("graph", graphs(3), ids=["absorb", "uniform"])
def test_expected_score_entropy_is_minimised_by_the_marginal_score(graph):
    """E_{x0 ~ p0} Σ_x p_σ(x|x0) ℓ(s(x); x, x0) is stationary at s(x)_y = p_σ(y)/p_σ(x), and larger elsewhere."""
    q = rate_matrix(graph)
    sigma = 0.6
    p0 = torch.tensor([0.6, 0.3, 0.1], dtype=torch.float64)
    pt_cond = torch.linalg.matrix_exp(sigma * q)                                   # pt_cond[x, x0]
    pt = pt_cond[:, :3] @ p0                                                       # marginal p_σ(x), (dim,)
    states = torch.arange(graph.dim)
    true = (pt[None, :] / pt[:, None]).log()                                       # (x, y): log p(y)/p(x)

    def expected(log_s):                                                           # log_s (dim, dim) per state x
        total = 0.0
        for x0 in range(3):
            ell = graph.score_entropy(log_s[None], torch.tensor([sigma], dtype=torch.float64), states[None],
                                      torch.full((1, graph.dim), x0))[0]
            total = total + p0[x0] * (pt_cond[:, x0] * ell).sum()
        return total

    s = true.clone().requires_grad_(True)
    value = expected(s)
    (grad,) = torch.autograd.grad(value, s)
    grad = grad.scatter(-1, states[:, None], 0.0)                                  # s_x is fixed to 0
    assert grad.abs().max() < 1e-10
    g = torch.Generator().manual_seed(6)
    for _ in range(5):
        d = 0.3 * torch.randn(true.shape, generator=g, dtype=torch.float64)
        assert expected((true + d).scatter(-1, states[:, None], 0.0)) > value + 1e-6


def test_loglinear_noise_closed_form_and_derivative():
    eps = 1e-3
    noise = LogLinearNoise(eps)
    t = torch.linspace(0.0, 1.0, 11, dtype=torch.float64, requires_grad=True)
    sigma, rate = noise(t)
    assert torch.allclose(sigma, -torch.log(1 - (1 - eps) * t))
    assert torch.allclose(-torch.expm1(-sigma), (1 - eps) * t)                       # mask probability
    (grad,) = torch.autograd.grad(sigma.sum(), t)
    assert torch.allclose(rate, grad)
    assert torch.allclose(rate, (1 - eps) / (1 - (1 - eps) * t))


def test_geometric_noise_closed_form_and_derivative():
    noise = GeometricNoise(1e-4, 20.0)
    t = torch.linspace(0.0, 1.0, 11, dtype=torch.float64, requires_grad=True)
    sigma, rate = noise(t)
    assert torch.allclose(sigma, torch.exp((1 - t) * math.log(1e-4) + t * math.log(20.0)))
    (grad,) = torch.autograd.grad(sigma.sum(), t)
    assert torch.allclose(rate, grad)
    with pytest.raises(ValueError, match="sigma_min"):
        GeometricNoise(1.0, 0.5)
    with pytest.raises(ValueError, match="eps"):
        LogLinearNoise(0.0)


#################################################################################
#                           Sampling building blocks                            #
#################################################################################

def test_sample_categorical_frequencies_match_probs():
    probs = torch.tensor([0.0, 2.0, 1.0, 5.0, 0.5, 0.0], dtype=torch.float64)     # unnormalised, zeros never win
    n = 40_000
    u = torch.rand(n, len(probs), generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    idx = sample_categorical(probs.expand(n, -1), u)
    counts = np.bincount(idx.numpy(), minlength=len(probs))
    keep = probs.numpy() > 0
    assert counts[~keep].sum() == 0
    assert stats.chisquare(counts[keep], probs.numpy()[keep] / probs.sum().item() * n).pvalue > 1e-3
    with pytest.raises(ValueError, match="float64"):
        sample_categorical(probs, u[0].float())


def test_remask_noise_is_paper_eq4_by_hand():
    eta, m = 0.2, 3                                                                # V = 3, the mask is index 3
    unmasked = torch.tensor([0.0, 1.0, 0.0, 0.0], dtype=torch.float64)            # p = e_x, x = 1
    masked_stay = torch.tensor([0.1, 0.2, 0.1, 0.6], dtype=torch.float64)         # argmax is the mask
    masked_move = torch.tensor([0.5, 0.1, 0.1, 0.3], dtype=torch.float64)         # argmax is token 0
    probs = torch.stack([unmasked, masked_stay, masked_move])[None]               # (1, 3, 4)
    out = (probs + remask_noise(probs, eta))[0]
    # eq. 4 for an unmasked token: Cat((1 − η) e_x + η e_m)
    assert torch.allclose(out[0], torch.tensor([0.0, 1 - eta, 0.0, eta], dtype=torch.float64))
    # masked, argmax = mask: the mask entry grows by η(1 − p_m) (the reference overwrites −1 with +1)
    assert torch.allclose(out[1], masked_stay + torch.tensor([0, 0, 0, eta * 0.4], dtype=torch.float64))
    # masked, argmax = token 0: η(1 − p_m) moves from token 0 to the mask
    d = eta * (1 - 0.3)
    assert torch.allclose(out[2], masked_move + torch.tensor([-d, 0, 0, d], dtype=torch.float64))
    assert out[0, m] == pytest.approx(eta)
    # the sampler's fused form equals probs + remask_noise, on these rows and on random ones
    assert torch.equal(apply_remask(probs, eta)[0], out)
    g = torch.Generator().manual_seed(12)
    rnd = torch.rand(3, 7, 5, generator=g, dtype=torch.float64)
    rnd[0, :3, -1] = 5.0                                                           # some rows with argmax = mask
    assert torch.allclose(apply_remask(rnd, eta), rnd + remask_noise(rnd, eta), rtol=0, atol=1e-15)


def test_analytic_probs_absorbing_closed_form():
    """Masked x: P(y) = (e^{Δσ} − 1) s_y, P(stay) = 1 − (e^{Δσ} − 1) Σ s; unmasked x stays; Euler agrees with
    analytic for absorb + log-linear noise (both unmask with probability dt / t)."""
    graph = Absorbing(3)
    g = torch.Generator().manual_seed(8)
    s = torch.rand(1, 2, 4, generator=g, dtype=torch.float64)
    x = torch.tensor([[3, 1]])
    s[0, 0, 3] = 1.0
    s[0, 1, 1] = 1.0
    ds = torch.tensor([0.05], dtype=torch.float64)
    p = analytic_probs(graph, x, s, ds)[0]
    e = math.expm1(0.05)
    assert torch.allclose(p[0, :3], e * s[0, 0, :3])
    assert p[0, 3].item() == pytest.approx(1 - e * s[0, 0, :3].sum().item())
    assert torch.allclose(p[1], torch.tensor([0.0, 1.0, 0.0, 0.0], dtype=torch.float64))

    noise = LogLinearNoise(1e-3)
    t, dt = torch.tensor(0.6, dtype=torch.float64), 0.05
    sig, dsig = noise(t)
    a = 1 / math.expm1(sig.item())
    s_true = torch.tensor([[[0.5 * a, 0.3 * a, 0.2 * a, 1.0]]], dtype=torch.float64)   # exact score of p0
    pa = analytic_probs(graph, x[:, :1], s_true, (sig - noise.total(t - dt)).reshape(1))
    pe = euler_probs(graph, x[:, :1], s_true, (dt * dsig).reshape(1))
    assert torch.allclose(pa, pe, rtol=1e-12)
    assert pa[0, 0, 3].item() == pytest.approx((0.6 - dt) / 0.6)


#################################################################################
#                       Samplers with the exact (oracle) score                  #
#################################################################################

N_ORACLE = 3000


def masked_fractions(trace, mask: int) -> np.ndarray:
    return np.array([(tok == mask).double().mean().item() for _, _, tok in trace])


def test_analytic_oracle_mask_schedule_marginals_and_dependency():
    steps = 8
    oracle = toy_oracle()
    trace = []
    x = sample_sedd(oracle, N_ORACLE, sampler="analytic", steps=steps, seed=0, device="cpu", batch_size=1000,
                    callback=record(trace))
    times = torch.linspace(1.0, SAMPLING_EPS, steps + 1, dtype=torch.float64)
    # after step k a position is still masked with probability π(t_{k+1}) / π(1) = t_{k+1}
    frac = masked_fractions(trace, 3)[:steps]
    expected = times[1:].numpy()
    se = np.sqrt(expected * (1 - expected) / (N_ORACLE * 4)) + 1e-12
    assert np.all(np.abs(frac - expected) <= 5 * se), (frac, expected)
    assert (x < 3).all() and trace[-1][0] == steps
    assert min(chi2_marginals(x, MARGINALS)) > 1e-3
    # tokens 0 and 1 disagree only when both are unmasked in the same step (then drawn independently)
    same_step = float(((times[:-1] - times[1:]) ** 2).sum() + times[-1] ** 2)
    p_diff = same_step * (1 - float((P0 ** 2).sum()))
    diff = (x[:, 0] != x[:, 1]).double().mean().item()
    assert abs(diff - p_diff) <= 5 * math.sqrt(p_diff * (1 - p_diff) / N_ORACLE), (diff, p_diff)


def corrector_mask_recursion(steps: int, eta: float, t0: float, t1: float, delta: bool = True) -> np.ndarray:
    """Masked fraction after every step of the corrector with exact scores, from the paper's eq. 4 by hand:
    in t0 < t < t1 the step ends at t − dt − η(1 − t) (δ), unmasked tokens are remasked with probability η,
    and a masked token's stay probability π(t')/π(t) gets + η(1 − p_stay) before normalisation (argmax = mask)."""
    times = np.linspace(1.0, SAMPLING_EPS, steps + 1)
    dt = (1.0 - SAMPLING_EPS) / steps
    m, out = 1.0, []
    for k in range(steps):
        t = times[k]
        inside = t0 < t < t1
        t_next = max(t - dt - (eta * (1 - t) if inside and delta else 0.0), 0.0)
        stay = t_next / t
        if inside:
            assert stay > 0.5                                      # so argmax(p) is the mask for masked tokens
            stay = (stay + eta * (1 - stay)) / (1 + eta * (1 - stay))
            m = m * stay + (1 - m) * eta
        else:
            m = m * stay
        out.append(m)
    return np.array(out)


def test_corrector_oracle_follows_eq4_recursion():
    steps, eta, t0, t1 = 24, 0.15, 0.3, 0.55
    oracle = toy_oracle()
    trace = []
    x = sample_sedd(oracle, N_ORACLE, sampler="corrector", steps=steps, eta=eta, t0=t0, t1=t1, seed=1,
                    device="cpu", batch_size=1000, callback=record(trace))
    frac = masked_fractions(trace, 3)[:steps]
    expected = corrector_mask_recursion(steps, eta, t0, t1)
    se = np.sqrt(expected * (1 - expected) / (N_ORACLE * 4)) + 1e-12
    assert np.all(np.abs(frac - expected) <= 5 * se), (frac, expected)
    # the test tells the δ correction apart: without it the recursion is far outside the tolerance
    no_delta = corrector_mask_recursion(steps, eta, t0, t1, delta=False)
    assert np.max(np.abs(no_delta - expected) / se) > 15
    # remasking (unmasked → masked) happens only at steps with t0 < t < t1, and does happen there
    remasked = []
    prev = torch.full_like(trace[0][2], 3)
    for step, t, tok in trace[:steps]:
        remasked.append((t, int(((prev != 3) & (tok == 3)).sum())))
        prev = tok
    assert all(n == 0 for t, n in remasked if not t0 < t < t1)
    assert all(n > 0 for t, n in remasked if t0 < t < t1)
    assert sum(t0 < t < t1 for t, _ in remasked) == sum(t0 < t < t1 for t in np.linspace(1, SAMPLING_EPS, 25)) == 6
    # remasking keeps the data distribution: the marginals still pass against the table
    assert (x < 3).all()
    assert min(chi2_marginals(x, MARGINALS)) > 1e-3


def test_euler_oracle_marginals():
    oracle = toy_oracle()
    x = sample_sedd(oracle, 2000, sampler="euler", steps=16, seed=2, device="cpu", batch_size=1000)
    assert (x < 3).all()
    assert min(chi2_marginals(x, MARGINALS)) > 1e-3


#################################################################################
#                         A tiny DDiT trained on toy data                       #
#################################################################################

TOY_CONFIG = SEDD_MODELS["tiny"](vocab_size=3, seq_len=4, hidden=64, n_heads=2, n_blocks=2)
N_DATA, N_SAMPLES = 4096, 2000


@pytest.fixture(scope="module")
def toy_model():
    data = toy_data(N_DATA)
    logs = []
    train = SEDDTrainConfig(steps=300, batch_size=128, warmup=20, lr=3e-3, ema=0.99, log_every=50, seed=0)
    model, ema = train_sedd(data, TOY_CONFIG, train, device="cpu", callback=lambda s, lg: logs.append(lg["loss"]))
    return model, ema, logs


def test_training_loss_decreases(toy_model):
    _, _, logs = toy_model
    assert len(logs) == 6 and all(math.isfinite(v) for v in logs)
    assert logs[-1] < 0.85 * logs[0], logs


def test_training_is_repeatable_with_two_threads():
    """Same seed, same weights, bit for bit, under 2 intra-op threads. Indexing the token table
    (table[tokens]) had a backward (index_put with accumulate) that sums in a thread-dependent order on CPU:
    three runs of this test differed by up to 5e-7; F.embedding's backward does not."""
    tokens = torch.randint(0, 16, (512, 8), generator=torch.Generator().manual_seed(0))
    cfg = SEDD_MODELS["tiny"](vocab_size=16, seq_len=8)
    train = SEDDTrainConfig(steps=30, batch_size=64, lr=1e-3, warmup=5, ema=0.99, log_every=10, seed=1)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        runs = [torch.cat([p.detach().flatten() for p in train_sedd(tokens, cfg, train, device="cpu")[0].parameters()])
                for _ in range(3)]
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(r, runs[0]) for r in runs[1:])


# Tolerance of a sampled probability: 4 standard errors of the N_SAMPLES draws plus 4 of the N_DATA training
# draws (≤ 0.045 and 0.031 at p = 0.5) plus 0.02 for the fit of a 300-step model.
def tol(p: float) -> float:
    return 4 * math.sqrt(p * (1 - p) / N_SAMPLES) + 4 * math.sqrt(p * (1 - p) / N_DATA) + 0.02


@pytest.mark.parametrize("sampler,kw", [("analytic", {}), ("corrector", {"eta": 0.05})])
def test_trained_samples_match_marginals_and_dependency(toy_model, sampler, kw):
    _, ema, _ = toy_model
    x = sample_sedd(ema, N_SAMPLES, sampler=sampler, steps=32, seed=3, device="cpu", batch_size=1000, **kw)
    assert x.shape == (N_SAMPLES, 4) and (x >= 0).all() and (x < 3).all()
    for i, p in enumerate(MARGINALS):
        freq = torch.bincount(x[:, i], minlength=3).double() / N_SAMPLES
        for f, q in zip(freq.tolist(), p.tolist()):
            assert abs(f - q) <= tol(q), (sampler, i, freq, p)
    # the dependency: token 1 copies token 0 (the oracle disagrees at ≈ (1/32)·0.62 ≈ 0.02 with 32 steps)
    assert (x[:, 0] == x[:, 1]).double().mean() >= 0.95
    # and the independent pairs stay independent: P(t2 = 0, t3 = 2) ≈ 0.7 · 0.8
    joint = ((x[:, 2] == 0) & (x[:, 3] == 2)).double().mean().item()
    assert abs(joint - 0.56) <= tol(0.56)


def test_corrector_eta0_equals_analytic_step_for_step(toy_model):
    model, _, _ = toy_model
    a, c = [], []
    xa = sample_sedd(model, 64, sampler="analytic", steps=24, seed=5, device="cpu", callback=record(a))
    xc = sample_sedd(model, 64, sampler="corrector", eta=0.0, steps=24, seed=5, device="cpu", callback=record(c))
    assert len(a) == len(c) == 25
    for (sa, ta, toka), (sc, tc, tokc) in zip(a, c):
        assert sa == sc and ta == tc
        assert torch.equal(toka, tokc)
    assert torch.equal(xa, xc)
    # while η > 0 changes the chain (same seed)
    assert not torch.equal(xa, sample_sedd(model, 64, sampler="corrector", eta=0.3, steps=24, seed=5, device="cpu"))


def test_maskgit_outputs_valid_tokens(toy_model):
    _, ema, _ = toy_model
    trace = []
    x = sample_sedd(ema, 500, sampler="maskgit", steps=4, seed=6, device="cpu", batch_size=500,
                    callback=record(trace))
    assert x.shape == (500, 4) and (x >= 0).all() and (x < 3).all()
    # every row keeps exactly the scheduled number of masks after each step (cosine: 4·cos(πk/8) → 3, 2, 1, 0)
    assert maskgit_schedule(4, 4) == [3, 2, 1, 0]
    for (_, _, tok), left in zip(trace, maskgit_schedule(4, 4), strict=True):
        assert ((tok == 3).sum(1) == left).all()
    # unmasked tokens are never changed afterwards
    for (_, _, before), (_, _, after) in zip(trace, trace[1:]):
        kept = before != 3
        assert torch.equal(after[kept], before[kept])
    assert (x[:, 0] == x[:, 1]).double().mean() >= 0.9


#################################################################################
#                    Determinism, batching, index splitting                     #
#################################################################################

@pytest.mark.parametrize("sampler", ["analytic", "corrector", "euler", "maskgit"])
def test_seeded_determinism_batch_and_start_index_invariance(sampler):
    model = randomized_sedd()
    kw = dict(sampler=sampler, steps=6, eta=0.1, t0=0.2, t1=0.9, device="cpu")
    full = sample_sedd(model, 10, seed=11, batch_size=64, **kw)
    assert torch.equal(full, sample_sedd(model, 10, seed=11, batch_size=64, **kw))
    assert torch.equal(full, sample_sedd(model, 10, seed=11, batch_size=3, **kw))
    halves = torch.cat([sample_sedd(model, 4, seed=11, start_index=0, **kw),
                        sample_sedd(model, 6, seed=11, start_index=4, batch_size=4, **kw)])
    assert torch.equal(full, halves)
    assert not torch.equal(full, sample_sedd(model, 10, seed=12, **kw))
    assert full.shape == (10, 6) and (full >= 0).all() and (full < 5).all()


#################################################################################
#                                 Uniform graph                                 #
#################################################################################

def test_uniform_graph_trains_and_samples():
    cfg = SEDD_MODELS["tiny"](vocab_size=3, seq_len=4, hidden=32, n_heads=2, n_blocks=1, graph="uniform",
                              noise="geometric")
    assert cfg.dim == 3 and cfg.scale_by_sigma is False
    logs = []
    train = SEDDTrainConfig(steps=120, batch_size=128, warmup=10, lr=3e-3, ema=0.0, log_every=40)
    model, _ = train_sedd(toy_data(2048, seed=1), cfg, train, device="cpu",
                          callback=lambda s, lg: logs.append(lg["loss"]))
    assert logs[-1] < 0.9 * logs[0], logs
    for sampler in ("analytic", "euler"):
        x = sample_sedd(model, 400, sampler=sampler, steps=16, seed=7, device="cpu")
        assert x.shape == (400, 4) and (x >= 0).all() and (x < 3).all()
        # learned the most frequent token of position 3 (p = 0.8 vs 0.1)
        assert (x[:, 3] == 2).double().mean() > 0.5


#################################################################################
#                      Model, loss, bad input, checkpoints                      #
#################################################################################

def test_model_output_scaling_and_current_token_entry():
    model = randomized_sedd()
    x = torch.randint(0, 6, (3, 6), generator=torch.Generator().manual_seed(9))
    sigma = torch.tensor([0.1, 1.0, 4.0])
    raw = {}
    model.output_layer.register_forward_hook(lambda mod, inp, out: raw.setdefault("out", out))
    out = model(x, sigma)                                                          # (N, L, V+1)
    assert out.shape == (3, 6, 6)
    ref = raw["out"].float() - torch.log(torch.expm1(sigma))[:, None, None] - math.log(5)
    ref = ref.scatter(-1, x[..., None], 0.0)
    assert torch.allclose(out, ref, atol=1e-5)
    assert (out.gather(-1, x[..., None]) == 0).all()


def test_score_entropy_loss_is_weighted_sum_of_score_entropy():
    model = randomized_sedd()
    graph, noise = Absorbing(5), LogLinearNoise(1e-3)
    x0 = torch.randint(0, 5, (4, 6), generator=torch.Generator().manual_seed(10))
    t = torch.tensor([0.1, 0.4, 0.7, 0.99])
    loss = score_entropy_loss(model, graph, noise, x0, t=t, generator=torch.Generator().manual_seed(0))
    sigma, dsigma = noise(t)
    xt = graph.sample_transition(x0, sigma, generator=torch.Generator().manual_seed(0))
    ref = (dsigma[:, None] * graph.score_entropy(model(xt, sigma), sigma, xt, x0)).sum(-1)
    assert torch.allclose(loss, ref)
    assert loss.shape == (4,) and (loss >= 0).all()


def test_bad_input_gives_clear_errors():
    cfg = SEDD_MODELS["tiny"](vocab_size=3, seq_len=4)
    ok = toy_data(16)
    tiny_train = SEDDTrainConfig(steps=1, batch_size=4)
    with pytest.raises(ValueError, match=r"\[0, V=3\)"):
        train_sedd(ok.clone().fill_(3), cfg, tiny_train, device="cpu")             # tokens ≥ V (V is the mask)
    with pytest.raises(ValueError, match="L=4"):
        train_sedd(ok[:, :3], cfg, tiny_train, device="cpu")                        # wrong length
    with pytest.raises(ValueError, match="integer"):
        train_sedd(ok.float(), cfg, tiny_train, device="cpu")
    model = randomized_sedd()
    with pytest.raises(ValueError, match="L=6"):
        model(torch.zeros(2, 5, dtype=torch.long), torch.ones(2))
    with pytest.raises(ValueError, match="mask"):
        model(torch.full((2, 6), 6), torch.ones(2))                                 # > V on the absorbing graph
    with pytest.raises(ValueError, match="shape"):
        model(torch.zeros(2, 6, dtype=torch.long), torch.ones(3))
    with pytest.raises(ValueError, match="absorbing graph"):
        sample_sedd(randomized_sedd("uniform"), 2, sampler="corrector", steps=2, device="cpu")
    with pytest.raises(ValueError, match="absorbing graph"):
        sample_sedd(randomized_sedd("uniform"), 2, sampler="maskgit", steps=2, device="cpu")
    for eta in (-0.1, 1.0):
        with pytest.raises(ValueError, match="eta"):
            sample_sedd(model, 2, sampler="corrector", eta=eta, steps=2, device="cpu")
    with pytest.raises(ValueError, match="t0"):
        sample_sedd(model, 2, sampler="corrector", t0=0.6, t1=0.5, steps=2, device="cpu")
    with pytest.raises(ValueError, match="unknown sampler"):
        sample_sedd(model, 2, sampler="ddim", steps=2, device="cpu")
    with pytest.raises(ValueError, match="steps"):
        sample_sedd(model, 2, steps=0, device="cpu")
    with pytest.raises(ValueError, match="graph"):
        SEDDConfig(graph="absorbing")
    with pytest.raises(ValueError, match="scale_by_sigma"):
        SEDDConfig(graph="uniform", scale_by_sigma=True)
    with pytest.raises(ValueError, match="Did you mean"):
        build_sedd("tinyy")


class NaNScore(nn.Module):
    config = SEDDConfig(vocab_size=3, seq_len=4, hidden=8, n_blocks=1, n_heads=1)

    def forward(self, x, sigma):
        return torch.full((*x.shape, 4), float("nan"))


@pytest.mark.parametrize("sampler", ["analytic", "maskgit"])
def test_nan_scores_raise_instead_of_sampling_token_zero(sampler):
    with pytest.raises(FloatingPointError, match="NaN"):
        sample_sedd(NaNScore(), 2, sampler=sampler, steps=2, device="cpu")


def test_safetensors_round_trip(tmp_path):
    model = randomized_sedd(seed=3)
    path = save_sedd(tmp_path / "prior", model, meta={"note": "test"})
    assert path.suffix == ".safetensors" and path.with_suffix(".json").exists()
    loaded, meta = load_sedd(path)
    assert meta["note"] == "test" and loaded.config == model.config
    x = torch.randint(0, 6, (3, 6), generator=torch.Generator().manual_seed(11))
    sigma = torch.tensor([0.2, 1.0, 3.0])
    assert torch.equal(model(x, sigma), loaded(x, sigma))
    kw = dict(sampler="analytic", steps=5, seed=4, device="cpu")
    assert torch.equal(sample_sedd(model, 8, **kw), sample_sedd(loaded, 8, **kw))
    with pytest.raises(FileNotFoundError):
        load_sedd(tmp_path / "missing")
