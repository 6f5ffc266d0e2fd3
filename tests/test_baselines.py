"""Continuous baselines (dlc.baselines): the RCG-style frozen random projection with per-sample standardisation,
raw embeddings, and the RDM prior (SimpleMLP, LDM-linear x0 diffusion, DDIM) with train_rdm / sample_rdm."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dlc.baselines import (REPRESENTATIONS, RDM_MODELS, RCGProjector, RCGProjectorConfig, RDMConfig, SimpleMLP,
                           load_projector, load_rdm, raw_representation, rcg_representation, rdm_diffusion,
                           sample_rdm, save_projector, save_rdm, standardize_per_sample, train_rdm)
from dlc.common import count_params
from dlc.dit import build_dit, create_diffusion, sample_dit, train_dit
from dlc.dit.diffusion import space_timesteps

# ----------------------------------------------------------------------------- RCG representation


def test_projector_architecture_init_and_freezing():
    p = RCGProjector()
    lin = [m for m in p.mlp if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in lin] == [(1024, 2048), (2048, 2048), (2048, 256)]
    assert [type(m).__name__ for m in p.mlp] == ["Linear", "GELU", "Linear", "GELU", "Linear"]
    for m in lin:
        bound = 1 / math.sqrt(m.in_features)  # PyTorch's default Linear init: U(±1/√fan_in)
        assert m.bias.abs().max() == 0
        assert m.weight.abs().max() <= bound
        assert m.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.01)
    assert not any(q.requires_grad for q in p.parameters())
    assert not p.train().training
    assert torch.equal(RCGProjector().mlp[0].weight, p.mlp[0].weight)                    # seeded
    assert not torch.equal(RCGProjector(RCGProjectorConfig(seed=1)).mlp[0].weight, p.mlp[0].weight)


def test_rcg_representation_is_standardised_per_sample():
    p = RCGProjector(RCGProjectorConfig(in_dim=32, hidden=64, out_dim=16))
    f = torch.randn(5, 32, generator=torch.Generator().manual_seed(0)) * 3 + 1
    r = rcg_representation(f, p)
    h = p.mlp(f).numpy().astype(np.float64)
    ref = (h - h.mean(1, keepdims=True)) / h.std(1, ddof=1, keepdims=True)  # RCG uses torch.std (unbiased)
    np.testing.assert_allclose(r.numpy(), ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(r.mean(1).numpy(), 0, atol=1e-6)
    np.testing.assert_allclose(r.std(1).numpy(), 1, atol=1e-5)
    assert set(REPRESENTATIONS) == {"rcg", "dinov2"}
    assert torch.equal(raw_representation(f.double()), f)
    with pytest.raises(ValueError, match=r"shape \(N, 32\)"):
        p(torch.randn(2, 31))
    with pytest.raises(ValueError, match=r"\(N, d\)"):
        standardize_per_sample(torch.randn(4))


def test_projector_save_load(tmp_path):
    p = RCGProjector(RCGProjectorConfig(in_dim=8, hidden=16, out_dim=4, seed=3))
    q = load_projector(save_projector(tmp_path / "proj", p))
    assert q.config == p.config
    x = torch.randn(3, 8)
    assert torch.equal(q(x), p(x))


# ----------------------------------------------------------------------------- RDM

def test_simple_mlp_parameter_count_and_zero_output_init():
    with torch.device("meta"):
        m = RDM_MODELS["RDM-L12-W1536"]()
    W, E, d, depth = 1536, 256, 256, 12
    block = 2 * W + (W * W + W) + (E * W + W) + 2 * W + (W * W + W)
    expected = (d * W + W) + (W * E + E) + (E * E + E) + depth * block + 2 * W + (W * d + d)
    assert count_params(m) == expected
    tiny = RDM_MODELS["RDM-tiny"](dim=8)
    assert tiny(torch.randn(4, 8), torch.tensor([0, 1, 500, 999])).abs().max() == 0  # zero-initialised output
    with pytest.raises(ValueError, match=r"shape \(N, 8\)"):
        tiny(torch.randn(4, 9), torch.zeros(4, dtype=torch.long))


def test_rdm_diffusion_is_ldm_linear_x0():
    d = rdm_diffusion()
    np.testing.assert_allclose(d.betas.numpy(), np.linspace(0.0015 ** 0.5, 0.0195 ** 0.5, 1000) ** 2, rtol=1e-14)
    assert (d.mean_type, d.var_type, d.num_timesteps) == ("x0", "fixed_small", 1000)
    assert rdm_diffusion(250).timestep_map.tolist() == space_timesteps(1000, 250)


@pytest.fixture(scope="module")
def trained_rdm():
    g = torch.Generator().manual_seed(0)
    data = torch.randn(2000, 8, generator=g) * 3 + 5
    torch.manual_seed(0)
    model = RDM_MODELS["RDM-tiny"](dim=8)
    res = train_rdm(model, rdm_diffusion(), data, steps=300, batch_size=128, lr=2e-3, ema_decay=0.99,
                    normalize=True, seed=0, device="cpu")
    return data, res


def test_train_rdm_loss_decreases_and_stores_normalisation(trained_rdm):
    data, res = trained_rdm
    assert np.mean(res.losses[-50:]) < 0.9 * np.mean(res.losses[:10])
    np.testing.assert_allclose(res.ema.data_mean.numpy(), data.double().mean(0).numpy(), rtol=1e-6)
    np.testing.assert_allclose(res.ema.data_std.numpy(), data.double().std(0).numpy(), rtol=1e-6)


def test_sample_rdm_matches_the_data_and_is_per_sample(trained_rdm):
    data, res = trained_rdm
    s = sample_rdm(res.ema, rdm_diffusion(), 600, steps=50, seed=1, device="cpu")
    assert s.shape == (600, 8)
    assert (s.mean(0) - 5).abs().max() < 0.6                 # de-standardised back to the data's scale
    assert 1.8 < s.std(0).mean().item() < 4.0
    a = sample_rdm(res.ema, rdm_diffusion(), 6, steps=10, seed=2, device="cpu", batch_size=6)
    b = sample_rdm(res.ema, rdm_diffusion(), 6, steps=10, seed=2, device="cpu", batch_size=4)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    tail = sample_rdm(res.ema, rdm_diffusion(), 2, steps=10, seed=2, start_index=4, device="cpu")
    torch.testing.assert_close(tail, a[4:], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(a, sample_rdm(res.ema, rdm_diffusion(), 6, steps=10, seed=3, device="cpu"))


def test_rdm_save_load_round_trip(tmp_path, trained_rdm):
    _, res = trained_rdm
    path = save_rdm(tmp_path / "rdm", res.ema, meta={"step": 300})
    m, meta = load_rdm(path)
    assert m.config == res.ema.config and meta["step"] == 300
    assert torch.equal(m.data_mean, res.ema.data_mean)
    x, t = torch.randn(3, 8), torch.tensor([1, 2, 3])
    assert torch.equal(m(x, t), res.ema(x, t))


def test_train_rdm_bad_input():
    m = RDM_MODELS["RDM-tiny"](dim=8)
    with pytest.raises(ValueError, match=r"shape \(N, 8\)"):
        train_rdm(m, rdm_diffusion(), torch.randn(10, 7), steps=1, batch_size=4, device="cpu")
    with pytest.raises(ValueError, match="num_samples"):
        sample_rdm(m, rdm_diffusion(), -1, device="cpu")


def test_unconditional_generation_with_rcg_representations():
    """r ~ RDM, then x ~ DiT(x | r): the pipeline that makes continuous representations generate unconditionally."""
    g = torch.Generator().manual_seed(0)
    proj = RCGProjector(RCGProjectorConfig(in_dim=12, hidden=16, out_dim=8))
    reps = rcg_representation(torch.randn(16, 12, generator=g), proj)                   # (16, 8)
    images = torch.rand(16, 3, 16, 16, generator=g) * 2 - 1
    torch.manual_seed(0)
    prior = train_rdm(SimpleMLP(RDMConfig(dim=8, width=32, time_embed_dim=16, depth=1)), rdm_diffusion(), reps,
                      steps=5, batch_size=8, seed=0, device="cpu").ema
    dit = train_dit(build_dit("DiT-tiny/4", input_size=16, in_channels=3, cond="vector", cond_dim=8, cond_bias=True),
                    create_diffusion(), images, reps, steps=5, batch_size=8, seed=0, device="cpu").ema
    r = sample_rdm(prior, rdm_diffusion(), 3, steps=5, device="cpu")
    x = sample_dit(dit, create_diffusion(), r, cfg_scale=2.0, guided_channels=3, steps=5, device="cpu")
    assert r.shape == (3, 8) and x.shape == (3, 3, 16, 16) and torch.isfinite(x).all()
