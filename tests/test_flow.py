"""Flow matching (dlc.dit.flow) against closed forms: Gaussian data x_0 ~ N(μ, s² I), whose interpolant
x_t = (1−t) x_0 + t ε has the exact velocity field E[v | x_t] = (x_t − E[x_0 | x_t]) / t with
E[x_0 | x_t] = μ + a s² / (a² s² + t²) · (x_t − a μ) (a = 1 − t), the minimal velocity loss
Var(v | x_t) = s² / (a² s² + t²) per dimension, and the ODE map x_1 = ε ↦ x_0 = μ + s ε."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from dlc.common import PerSampleRNG
from dlc.dit import FlowMatching, build_dit, create_flow, sample_dit, train_dit

MU, S = 0.7, 0.5


def _posterior_mean(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    t = t.reshape(-1, *([1] * (x.ndim - 1)))
    a = 1 - t
    return MU + a * S ** 2 / (a ** 2 * S ** 2 + t ** 2) * (x - a * MU)


def exact_model(prediction: str):
    """The Bayes-optimal network for the Gaussian data, called as the DiT is: (x_t, t · 1000)."""
    def fn(x: torch.Tensor, model_t: torch.Tensor) -> torch.Tensor:
        t = model_t / 1000.0
        x0 = _posterior_mean(x, t)
        return x0 if prediction == "x0" else (x - x0) / t.reshape(-1, *([1] * (x.ndim - 1)))
    return fn


def _loss_at(flow: FlowMatching, fn, t: float, n: int = 200_000, d: int = 2, seed: int = 0) -> float:
    g = torch.Generator().manual_seed(seed)
    x0 = MU + S * torch.randn(n, d, generator=g, dtype=torch.float64)
    noise = torch.randn(n, d, generator=g, dtype=torch.float64)
    return flow.training_losses(fn, x0, torch.full((n,), t, dtype=torch.float64), noise)["loss"].mean().item()


@pytest.mark.parametrize("prediction", ["velocity", "x0"])
@pytest.mark.parametrize("t", [0.1, 0.5, 0.9])
def test_exact_field_reaches_the_minimal_loss(prediction, t):
    flow = create_flow(prediction)
    got = _loss_at(flow, exact_model(prediction), t)
    want = S ** 2 / ((1 - t) ** 2 * S ** 2 + t ** 2)
    assert got == pytest.approx(want, rel=0.01)


def test_a_biased_field_pays_exactly_its_squared_bias():
    flow, delta, t = create_flow("velocity"), 0.3, 0.4
    exact = exact_model("velocity")
    biased = lambda x, mt: exact(x, mt) + delta
    assert _loss_at(flow, biased, t) - _loss_at(flow, exact, t) == pytest.approx(delta ** 2, rel=0.02)


def test_x0_loss_is_the_velocity_loss_with_the_t_clamp():
    """x0-prediction: ‖x̂_0 − x_0‖² / max(t, t_min)²; below t_min the weight stops growing."""
    flow = create_flow("x0", t_min=0.05)
    x0, noise = torch.randn(8, 3), torch.randn(8, 3)
    xhat = torch.randn(8, 3)
    for t in (0.02, 0.3):
        tt = torch.full((8,), t)
        got = flow.training_losses(lambda x, mt: xhat, x0, tt, noise)["loss"]
        want = ((xhat - x0) ** 2).mean(1) / max(t, 0.05) ** 2
        torch.testing.assert_close(got, want)


def _ode_error(sampler: str, steps: int, prediction: str = "velocity") -> float:
    flow = create_flow(prediction)
    noise = torch.randn(4000, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x = flow.sample_loop(exact_model(prediction), noise.shape, PerSampleRNG(0, range(4000)), steps=steps,
                         sampler=sampler, noise=noise)
    return (x - (MU + S * noise)).abs().max().item()


def test_samplers_follow_the_exact_ode_map_at_their_order():
    """Euler's error halves when the steps double (first order), Heun's quarters (second order)."""
    e1, e2 = _ode_error("euler", 20), _ode_error("euler", 40)
    h1, h2 = _ode_error("heun", 20), _ode_error("heun", 40)
    assert 1.7 < e1 / e2 < 2.3
    assert 3.3 < h1 / h2 < 4.7
    assert h1 < e1 / 10 and _ode_error("heun", 100) < 1e-3


def test_x0_prediction_samples_the_same_map():
    assert _ode_error("heun", 100, "x0") < 1e-3
    assert _ode_error("euler", 40, "x0") == pytest.approx(_ode_error("euler", 40), rel=1e-6)


def test_sampled_distribution_matches_the_data():
    flow = create_flow("velocity")
    x = flow.sample_loop(exact_model("velocity"), (20_000, 1), PerSampleRNG(3, range(20_000)), steps=30,
                         sampler="heun")
    assert stats.kstest(x.squeeze(1).double().numpy(), "norm", args=(MU, S)).pvalue > 1e-3


def test_training_times_follow_their_laws():
    g = torch.Generator().manual_seed(0)
    t = create_flow(t_dist="logit-normal", t_mean=0.5, t_std=0.8).sample_timesteps(20_000, g).double()
    z = torch.log(t / (1 - t)).numpy()
    assert stats.kstest(z, "norm", args=(0.5, 0.8)).pvalue > 1e-3
    t = create_flow(t_dist="uniform").sample_timesteps(20_000, g).numpy()
    assert stats.kstest(t, "uniform").pvalue > 1e-3
    mix = create_flow(t_dist="logit-normal", t_mean=3.0, t_std=0.1, t_uniform=0.3).sample_timesteps(20_000, g)
    assert float((mix < 0.9).double().mean()) == pytest.approx(0.3 * 0.9, abs=0.015)  # only uniform draws < 0.9


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="prediction"):
        FlowMatching("eps")
    with pytest.raises(ValueError, match="t_dist"):
        FlowMatching(t_dist="beta")
    with pytest.raises(ValueError, match="t_uniform"):
        FlowMatching(t_uniform=1.5)
    with pytest.raises(ValueError, match="sampler"):
        create_flow().sample_loop(exact_model("velocity"), (2, 1), PerSampleRNG(0, [0, 1]), sampler="ddim")


def _tiny(cond: str = "dlc", learn_sigma: bool = False):
    torch.manual_seed(0)
    kw = {"dlc_length": 4, "dlc_vocab": 5, "drop_prob": 0.1} if cond == "dlc" else {}
    return build_dit("DiT-tiny/4", input_size=8, in_channels=3, cond=cond, learn_sigma=learn_sigma, **kw)


def test_dit_trains_and_samples_with_flow_matching():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 3, 8, 8, generator=g) * 2 - 1
    c = torch.randint(0, 5, (64, 4), generator=g)
    flow = create_flow("x0", t_dist="logit-normal", t_uniform=0.2)
    res = train_dit(_tiny(), flow, x, c, steps=40, batch_size=16, lr=1e-3, ema_decay=0.9, ema_warmup=True,
                    device="cpu", log_every=10)
    assert np.mean(res.losses[-10:]) < np.mean(res.losses[:10])
    kw = dict(steps=6, seed=5, device="cpu", clip_denoised=True)
    a = sample_dit(res.ema, flow, c[:6], batch_size=6, sampler="heun", **kw)
    b = torch.cat([sample_dit(res.ema, flow, c[i:i + 2], indices=range(i, i + 2), batch_size=1, sampler="heun", **kw)
                   for i in range(0, 6, 2)])
    torch.testing.assert_close(a, b)                              # a sample depends only on its global index
    assert a.shape == (6, 3, 8, 8) and a.abs().max() <= 1 + 1e-5  # clipped x̂_0: the last Euler step lands on it
    guided = sample_dit(res.ema, flow, c[:6], cfg_scale=3.0, sampler="euler", **kw)
    assert not torch.allclose(guided, sample_dit(res.ema, flow, c[:6], sampler="euler", **kw))
    with pytest.raises(ValueError, match="ddpm.*flow|sampler"):
        sample_dit(res.ema, flow, c[:2], sampler="ddpm", **kw)


def test_flow_needs_a_dit_without_learned_sigma():
    x, c = torch.zeros(8, 3, 8, 8), torch.zeros(8, 4, dtype=torch.long)
    with pytest.raises(ValueError, match="learn_sigma=False"):
        train_dit(_tiny(learn_sigma=True), create_flow(), x, c, steps=1, batch_size=4, device="cpu")


def test_guidance_combines_outputs_linearly_for_both_predictions():
    """CFG on x̂_0 outputs equals CFG on the velocities they imply (v is affine in x̂_0 at fixed x_t, t)."""
    flow = create_flow("x0")
    x, t = torch.randn(5, 3), torch.full((5,), 0.6)
    x0c, x0n, s = torch.randn(5, 3), torch.randn(5, 3), 2.5
    v_of = lambda o: flow.velocity(o, x, t)
    torch.testing.assert_close(v_of(x0n + s * (x0c - x0n)), v_of(x0n) + s * (v_of(x0c) - v_of(x0n)))


def test_learning_rate_warmup():
    """warmup_steps=1 is no warm-up (bit-identical weights); a long warm-up takes smaller first steps."""
    g = torch.Generator().manual_seed(1)
    x, c = torch.rand(32, 3, 8, 8, generator=g) * 2 - 1, torch.randint(0, 5, (32, 4), generator=g)
    kw = dict(steps=5, batch_size=8, lr=1e-2, ema_decay=0.0, device="cpu")
    start = _tiny().state_dict()

    def moved(**extra):
        res = train_dit(_tiny(), create_flow(), x, c, **kw, **extra)
        return sum((p - start[k]).abs().sum().item() for k, p in res.model.state_dict().items()), res

    none, r0 = moved()
    one, r1 = moved(warmup_steps=1)
    slow, _ = moved(warmup_steps=100)
    assert all(torch.equal(a, b) for a, b in zip(r0.model.state_dict().values(), r1.model.state_dict().values()))
    assert slow < 0.5 * none
