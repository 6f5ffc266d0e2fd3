"""Gaussian diffusion (dlc.dit.diffusion) against closed forms: schedules, q(x_t|x_0), the posterior by Bayes'
rule, Gaussian KL (torch.distributions), the discretised likelihood (scipy.stats.norm), VLB terms, respacing,
and sampling a Gaussian data distribution with its exact denoiser."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import norm

from dlc.common import PerSampleRNG
from dlc.dit.diffusion import (GaussianDiffusion, create_diffusion, discretized_gaussian_log_likelihood,
                               get_betas, normal_kl, space_timesteps)


def _abar(betas: np.ndarray) -> np.ndarray:
    return np.cumprod(1.0 - betas)


def _bayes_posterior(x0, xt, t, betas):
    """q(x_{t−1} | x_t, x_0) ∝ N(x_{t−1}; √ᾱ_{t−1} x0, 1−ᾱ_{t−1}) · N(x_t; √α_t x_{t−1}, β_t): precisions add."""
    ab = _abar(betas)
    ab_prev = 1.0 if t == 0 else ab[t - 1]
    a_t = 1.0 - betas[t]
    if t == 0:
        return x0, 0.0
    prec = 1.0 / (1.0 - ab_prev) + a_t / betas[t]
    var = 1.0 / prec
    mean = var * (math.sqrt(ab_prev) * x0 / (1.0 - ab_prev) + math.sqrt(a_t) * xt / betas[t])
    return mean, var


# ----------------------------------------------------------------------------- schedules

def test_linear_betas_are_the_ddpm_schedule():
    np.testing.assert_allclose(get_betas("linear", 1000), np.linspace(1e-4, 0.02, 1000), rtol=0, atol=1e-15)
    np.testing.assert_allclose(get_betas("linear", 500), np.linspace(2e-4, 0.04, 500), rtol=0, atol=1e-15)


def test_ldm_linear_betas():
    b = get_betas("ldm_linear", 1000)
    np.testing.assert_allclose(b, np.linspace(0.0015 ** 0.5, 0.0195 ** 0.5, 1000) ** 2, rtol=1e-14)
    assert b[0] == pytest.approx(0.0015) and b[-1] == pytest.approx(0.0195)


def test_bad_schedule_and_types_raise():
    with pytest.raises(ValueError, match="unknown beta schedule"):
        get_betas("quadratic")
    with pytest.raises(ValueError, match="mean_type"):
        GaussianDiffusion(get_betas("linear", 10), mean_type="v")
    with pytest.raises(ValueError, match="betas"):
        GaussianDiffusion([0.1, 1.5])


# ----------------------------------------------------------------------------- forward process

def test_q_sample_and_q_mean_variance_closed_form():
    d = create_diffusion()
    betas = get_betas("linear", 1000)
    ab = _abar(betas)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(6, 3, 4, 4, generator=g, dtype=torch.float64)
    noise = torch.randn(6, 3, 4, 4, generator=g, dtype=torch.float64)
    t = torch.tensor([0, 1, 10, 500, 998, 999])
    xt = d.q_sample(x0, t, noise)
    mean, var, logvar = d.q_mean_variance(x0, t)
    for i, ti in enumerate(t.tolist()):
        ref = math.sqrt(ab[ti]) * x0[i].numpy() + math.sqrt(1 - ab[ti]) * noise[i].numpy()
        np.testing.assert_allclose(xt[i].numpy(), ref, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(mean[i].numpy(), math.sqrt(ab[ti]) * x0[i].numpy(), rtol=1e-12)
        np.testing.assert_allclose(var[i].numpy(), 1 - ab[ti], rtol=1e-12)
        np.testing.assert_allclose(logvar[i].numpy(), math.log(1 - ab[ti]), rtol=1e-12)


@pytest.mark.parametrize("t", [1, 2, 37, 500, 999])
def test_posterior_mean_variance_matches_bayes_rule(t):
    d = create_diffusion()
    betas = get_betas("linear", 1000)
    g = torch.Generator().manual_seed(t)
    x0 = torch.randn(2, 5, generator=g, dtype=torch.float64)
    xt = torch.randn(2, 5, generator=g, dtype=torch.float64)
    mean, var, logvar = d.q_posterior_mean_variance(x0, xt, torch.full((2,), t))
    ref_mean, ref_var = _bayes_posterior(x0.numpy(), xt.numpy(), t, betas)
    np.testing.assert_allclose(mean.numpy(), ref_mean, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(var.numpy(), ref_var, rtol=1e-10)
    np.testing.assert_allclose(logvar.numpy(), math.log(ref_var), rtol=1e-10)


def test_posterior_log_variance_is_clipped_at_t0():
    d = create_diffusion()
    _, var, logvar = d.q_posterior_mean_variance(torch.zeros(1, 1, dtype=torch.float64),
                                                  torch.zeros(1, 1, dtype=torch.float64), torch.tensor([0]))
    assert var.item() == 0.0
    assert logvar.item() == pytest.approx(math.log(_bayes_posterior(0.0, 0.0, 1, get_betas("linear", 1000))[1]))


# ----------------------------------------------------------------------------- Gaussian helpers

def test_normal_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(1)
    m1, m2 = torch.randn(100, generator=g, dtype=torch.float64), torch.randn(100, generator=g, dtype=torch.float64)
    lv1, lv2 = torch.randn(100, generator=g, dtype=torch.float64), torch.randn(100, generator=g, dtype=torch.float64)
    ref = torch.distributions.kl_divergence(torch.distributions.Normal(m1, (0.5 * lv1).exp()),
                                            torch.distributions.Normal(m2, (0.5 * lv2).exp()))
    torch.testing.assert_close(normal_kl(m1, lv1, m2, lv2), ref, rtol=1e-12, atol=1e-12)
    assert normal_kl(m1, lv1, m1, lv1).abs().max() < 1e-14


def _scipy_discretized_loglik(x, mean, std):
    lo, hi = x - 1 / 255, x + 1 / 255
    with np.errstate(divide="ignore"):
        out = np.where(mean > x, np.log(norm.cdf(hi, mean, std) - norm.cdf(lo, mean, std)),
                       np.log(norm.sf(lo, mean, std) - norm.sf(hi, mean, std)))
    out = np.where(x < -0.999, norm.logcdf(hi, mean, std), out)
    return np.where(x > 0.999, norm.logsf(lo, mean, std), out)


def test_discretized_gaussian_log_likelihood_matches_scipy():
    rng = np.random.default_rng(0)
    x = (rng.integers(0, 256, 2000) / 127.5 - 1.0).astype(np.float64)
    x[:5], x[5:10] = -1.0, 1.0
    mean = rng.uniform(-1.2, 1.2, 2000)
    log_std = rng.uniform(-5.0, 0.0, 2000)
    ours = discretized_gaussian_log_likelihood(torch.from_numpy(x), means=torch.from_numpy(mean),
                                               log_scales=torch.from_numpy(log_std)).numpy()
    ref = _scipy_discretized_loglik(x, mean, np.exp(log_std))
    keep = ref > -25  # compare where scipy's differences of CDFs are still accurate
    assert keep.mean() > 0.5
    np.testing.assert_allclose(ours[keep], ref[keep], rtol=1e-7, atol=1e-9)


def test_discretized_likelihood_sums_to_one_over_the_256_bins():
    grid = torch.arange(256, dtype=torch.float64) / 127.5 - 1.0
    for m, ls in [(0.1, -1.0), (-0.97, -3.0), (0.5, -6.0), (2.0, 0.5)]:
        lp = discretized_gaussian_log_likelihood(grid, means=torch.full_like(grid, m),
                                                 log_scales=torch.full_like(grid, ls))
        assert lp.exp().sum().item() == pytest.approx(1.0, abs=1e-9)


# ----------------------------------------------------------------------------- variance and VLB

def test_learned_range_interpolates_between_beta_tilde_and_beta():
    d = create_diffusion()
    betas = get_betas("linear", 1000)
    t = torch.tensor([5, 5, 5, 700])
    x = torch.zeros(4, 1, 2, 2, dtype=torch.float64)
    v = torch.tensor([1.0, -1.0, 0.0, 0.0], dtype=torch.float64).reshape(4, 1, 1, 1).expand(4, 1, 2, 2)
    out = d.p_mean_variance(torch.cat([torch.zeros_like(x), v], 1), x, t)["log_variance"][:, 0, 0, 0].numpy()
    log_tilde = lambda s: math.log(_bayes_posterior(0.0, 0.0, s, betas)[1])
    np.testing.assert_allclose(out, [math.log(betas[5]), log_tilde(5), 0.5 * (math.log(betas[5]) + log_tilde(5)),
                                     0.5 * (math.log(betas[700]) + log_tilde(700))], rtol=1e-10)


def test_vb_terms_match_closed_forms():
    d = create_diffusion()
    betas = get_betas("linear", 1000)
    ab = _abar(betas)
    g = torch.Generator().manual_seed(3)
    n, C = 3, 2
    x0 = (torch.randint(0, 256, (n, C, 2, 2), generator=g) / 127.5 - 1).double()
    noise = torch.randn(n, C, 2, 2, generator=g, dtype=torch.float64)
    eps = noise + 0.1 * torch.randn(n, C, 2, 2, generator=g, dtype=torch.float64)  # a decent ε prediction
    v = torch.rand(n, C, 2, 2, generator=g, dtype=torch.float64) * 2 - 1
    t = torch.tensor([0, 1, 640])
    xt = d.q_sample(x0, t, noise)
    vb = d.vb_terms_bpd(torch.cat([eps, v], 1), x0, xt, t)["output"].numpy()
    for i, ti in enumerate(t.tolist()):
        x0_hat = (xt[i].numpy() - math.sqrt(1 - ab[ti]) * eps[i].numpy()) / math.sqrt(ab[ti])
        t_for_var = max(ti, 1)  # β̃ clipped at t = 0
        log_var = ((v[i].numpy() + 1) / 2 * math.log(betas[ti])
                   + (1 - v[i].numpy()) / 2 * math.log(_bayes_posterior(0.0, 0.0, t_for_var, betas)[1]))
        if ti == 0:
            model_mean = x0_hat  # posterior mean at t = 0 is x̂0
            ref = -_scipy_discretized_loglik(x0[i].numpy(), model_mean, np.exp(0.5 * log_var)).mean() / math.log(2)
        else:
            model_mean, _ = _bayes_posterior(x0_hat, xt[i].numpy(), ti, betas)
            true_mean, true_var = _bayes_posterior(x0[i].numpy(), xt[i].numpy(), ti, betas)
            s1, s2 = math.sqrt(true_var), np.exp(0.5 * log_var)
            kl = np.log(s2 / s1) + (s1 ** 2 + (true_mean - model_mean) ** 2) / (2 * s2 ** 2) - 0.5
            ref = kl.mean() / math.log(2)
        assert vb[i] == pytest.approx(ref, rel=1e-6, abs=1e-9)


def test_training_losses_mse_plus_vb_with_vb_only_training_the_variance():
    d = create_diffusion()
    g = torch.Generator().manual_seed(4)
    x0 = torch.rand(4, 2, 3, 3, generator=g) * 2 - 1
    noise = torch.randn(4, 2, 3, 3, generator=g)
    out = torch.randn(4, 4, 3, 3, generator=g).requires_grad_(True)
    t = torch.tensor([0, 3, 400, 999])
    seen = {}

    def model_fn(xt, tt):
        seen["t"] = tt
        return out

    terms = d.training_losses(model_fn, x0, t, noise)
    torch.testing.assert_close(terms["mse"], ((noise - out[:, :2]) ** 2).mean(dim=(1, 2, 3)))
    torch.testing.assert_close(terms["loss"], terms["mse"] + terms["vb"])
    (grad,) = torch.autograd.grad(terms["vb"].sum(), out)
    assert grad[:, :2].abs().max() == 0 and grad[:, 2:].abs().max() > 0
    assert torch.equal(seen["t"], t)


def test_x0_prediction_loss_targets_x0():
    d = GaussianDiffusion(get_betas("ldm_linear", 100), mean_type="x0", var_type="fixed_small")
    x0 = torch.randn(5, 7)
    out = torch.randn(5, 7)
    terms = d.training_losses(lambda xt, tt: out, x0, torch.arange(5) * 20, torch.randn(5, 7))
    torch.testing.assert_close(terms["loss"], ((x0 - out) ** 2).mean(1))
    assert "vb" not in terms


# ----------------------------------------------------------------------------- respacing

def test_space_timesteps_documented_rule():
    kept = space_timesteps(1000, 250)
    assert kept == [round(i * 999 / 249) for i in range(250)]
    assert kept[:5] == [0, 4, 8, 12, 16] and kept[-1] == 999
    assert space_timesteps(1000, "ddim25") == list(range(0, 1000, 40))
    sections = {round(i * 49 / 9) for i in range(10)} | {50 + round(i * 49 / 4) for i in range(5)}
    assert space_timesteps(100, "10,5") == sorted(sections)
    assert space_timesteps(1000, 1000) == list(range(1000))
    with pytest.raises(ValueError, match="cannot take"):
        space_timesteps(1000, 1001)
    with pytest.raises(ValueError, match="bad timestep respacing"):
        space_timesteps(1000, "fast")


def test_respaced_betas_preserve_alpha_bar():
    base = create_diffusion()
    ab = _abar(get_betas("linear", 1000))
    sp = base.respace(250)
    kept = space_timesteps(1000, 250)
    assert sp.num_timesteps == 250 and sp.timestep_map.tolist() == kept
    prev = np.append(1.0, ab[kept][:-1])
    np.testing.assert_allclose(sp.betas.numpy(), 1 - ab[kept] / prev, rtol=1e-12)
    np.testing.assert_allclose(sp.alphas_cumprod.numpy(), ab[kept], rtol=1e-12)
    np.testing.assert_allclose(base.respace(1000).betas.numpy(), get_betas("linear", 1000), rtol=1e-12)
    nested = sp.respace(10)  # indices of the 250-step process map back to original timesteps
    assert nested.timestep_map.tolist() == [kept[i] for i in space_timesteps(250, 10)]
    assert create_diffusion(50).timestep_map.tolist() == space_timesteps(1000, 50)


# ----------------------------------------------------------------------------- sampling

MU, S = 0.5, 0.3


def _exact_x0(diff: GaussianDiffusion):
    """E[x0 | x_t] for x0 ~ N(MU, S²): a linear function of x_t."""
    def fn(x, t_model):
        ab = diff.alphas_cumprod.to(x)[torch.searchsorted(diff.timestep_map, t_model)].reshape(-1, 1)
        k = ab.sqrt() * S ** 2 / (ab * S ** 2 + 1 - ab)
        return MU + k * (x - ab.sqrt() * MU)
    return fn


def _output_moments(kept, sampler):
    """Mean and variance of x_0 after the linear-Gaussian sampler (exact denoiser, x_T ~ N(0, 1)), propagated in
    closed form: each step is x ← a·x + b + σ·z with a, b from Bayes' posterior (or DDIM's update)."""
    ab_all = _abar(get_betas("linear", 1000))
    ab = ab_all[kept]
    betas = 1 - ab / np.append(1.0, ab[:-1])
    M, V = 0.0, 1.0
    for i in reversed(range(len(kept))):
        k = math.sqrt(ab[i]) * S ** 2 / (ab[i] * S ** 2 + 1 - ab[i])   # x̂0 = k·x + MU·(1 − k√ᾱ)
        k0 = MU * (1 - k * math.sqrt(ab[i]))
        ab_prev = ab[i - 1] if i > 0 else 1.0
        if sampler == "ddpm":
            c1 = _bayes_posterior(1.0, 0.0, i, betas)[0] if i > 0 else 1.0   # posterior mean = c1·x̂0 + c2·x
            c2 = _bayes_posterior(0.0, 1.0, i, betas)[0] if i > 0 else 0.0
            noise_var = _bayes_posterior(0.0, 0.0, i, betas)[1] if i > 0 else 0.0
        else:  # DDIM η=0: √ᾱ_prev·x̂0 + √(1−ᾱ_prev)·(x − √ᾱ x̂0)/√(1−ᾱ)
            r = math.sqrt(1 - ab_prev) / math.sqrt(1 - ab[i])
            c1, c2, noise_var = math.sqrt(ab_prev) - r * math.sqrt(ab[i]), r, 0.0
        M = c1 * (k * M + k0) + c2 * M
        V = (c1 * k + c2) ** 2 * V + noise_var
    return M, V


@pytest.mark.parametrize("mean_type,sampler", [("x0", "ddpm"), ("eps", "ddpm"), ("x0", "ddim")])
def test_sampling_gaussian_data_with_the_exact_denoiser(mean_type, sampler):
    diff = GaussianDiffusion(get_betas("linear", 1000), mean_type=mean_type, var_type="fixed_small").respace(100)
    x0_fn = _exact_x0(diff)

    def model(x, t_model):
        x0 = x0_fn(x, t_model)
        if mean_type == "x0":
            return x0
        ab = diff.alphas_cumprod.to(x)[torch.searchsorted(diff.timestep_map, t_model)].reshape(-1, 1)
        return (x - ab.sqrt() * x0) / (1 - ab).sqrt()

    n = 1500
    rng = PerSampleRNG(0, range(n))
    x = diff.p_sample_loop(model, (n, 1), rng) if sampler == "ddpm" else diff.ddim_sample_loop(model, (n, 1), rng)
    M, V = _output_moments(space_timesteps(1000, 100), sampler)
    assert abs(M - MU) < 0.02 and abs(math.sqrt(V) - S) < 0.03       # the sampler nearly recovers the data law
    assert abs(x.mean().item() - M) < 4.5 * math.sqrt(V / n)          # and the samples follow the closed form
    assert abs(x.std().item() - math.sqrt(V)) < 4.5 * math.sqrt(V / (2 * n))


def test_ddim_with_eta_1_is_ancestral_sampling_with_posterior_variance():
    diff = GaussianDiffusion(get_betas("linear", 1000), mean_type="x0", var_type="fixed_small").respace(30)
    model = _exact_x0(diff)
    a = diff.p_sample_loop(model, (50, 3), PerSampleRNG(1, range(50)))
    b = diff.ddim_sample_loop(model, (50, 3), PerSampleRNG(1, range(50)), eta=1.0)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_sampling_is_per_sample_deterministic():
    diff = create_diffusion(20)
    model = lambda x, t: torch.cat([torch.tanh(x) * 0.5, torch.zeros_like(x)], 1)
    full = diff.p_sample_loop(model, (5, 2, 2, 2), PerSampleRNG(7, range(10, 15)))
    part = diff.p_sample_loop(model, (2, 2, 2, 2), PerSampleRNG(7, range(13, 15)))
    assert torch.equal(full[3:], part)
    other = diff.p_sample_loop(model, (5, 2, 2, 2), PerSampleRNG(8, range(10, 15)))
    assert not torch.allclose(full, other)
    d1 = diff.ddim_sample_loop(model, (3, 2, 2, 2), PerSampleRNG(7, range(3)), eta=1.0)
    d2 = diff.ddim_sample_loop(model, (1, 2, 2, 2), PerSampleRNG(7, [2]), eta=1.0)
    assert torch.equal(d1[2:], d2)
    with pytest.raises(ValueError, match="RNG holds"):
        diff.p_sample_loop(model, (4, 2, 2, 2), PerSampleRNG(7, range(3)))
