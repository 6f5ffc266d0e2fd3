"""DiT (dlc.dit): preset parameter counts (DiT paper), conditioners against the DLC reference formulas, CFG,
input validation, checkpoints, training, sampling invariances, VAE loading (diffusers AutoencoderKL)."""
from __future__ import annotations

import os
import socket

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dlc.common import PerSampleRNG, count_params
from dlc.dit import (DIT_MODELS, DiT, DiTConfig, PixelVAE, build_dit, create_diffusion, decode_latents, load_dit,
                     load_vae, sample_dit, save_dit, to_uint8, train_dit)

L, V, NCLS, CDIM = 6, 7, 5, 10


def tiny(cond: str = "dlc", **kw) -> DiT:
    torch.manual_seed(0)
    args = dict(input_size=16, in_channels=3, cond=cond, num_classes=NCLS, dlc_length=L, dlc_vocab=V, cond_dim=CDIM)
    args.update(kw)
    return build_dit("DiT-tiny/4", **args)


def randomize(model: DiT, seed: int = 0, std: float = 0.2) -> DiT:
    """Replace the zero-initialised (adaLN-Zero) weights so every path contributes to the output."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.copy_(torch.randn(p.shape, generator=g) * std)
    return model.eval()


def make_cond(cond: str, n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return {"dlc": lambda: torch.randint(0, V, (n, L), generator=g),
            "class": lambda: torch.randint(0, NCLS, (n,), generator=g),
            "vector": lambda: torch.randn(n, CDIM, generator=g),
            "none": lambda: None}[cond]()


# ----------------------------------------------------------------------------- presets

# DiT paper (Peebles & Xie 2023), Table 4: parameters (M) at 256 px (32×32×4 latents), 1000 classes. They are
# trainable parameters: the reference code's total also counts the frozen sin-cos pos_embed (XL/2: 675,129,632).
PAPER_PARAMS_M = {"DiT-S/8": 33, "DiT-S/4": 33, "DiT-S/2": 33, "DiT-B/8": 131, "DiT-B/4": 130, "DiT-B/2": 130,
                  "DiT-L/8": 459, "DiT-L/4": 458, "DiT-L/2": 458, "DiT-XL/8": 676, "DiT-XL/4": 675, "DiT-XL/2": 675}


def closed_form_params(depth: int, D: int, p: int, C: int = 4, size: int = 32, classes: int = 1000) -> int:
    T = (size // p) ** 2
    patch = p * p * C * D + D
    temb = 256 * D + D + D * D + D
    block = (3 * D * D + 3 * D) + (D * D + D) + (4 * D * D + 4 * D) + (4 * D * D + D) + (6 * D * D + 6 * D)
    final = D * p * p * 2 * C + p * p * 2 * C + 2 * D * D + 2 * D
    return patch + temb + (classes + 1) * D + T * D + depth * block + final


@pytest.mark.parametrize("name", list(PAPER_PARAMS_M))
def test_preset_parameter_counts_match_the_dit_paper(name):
    with torch.device("meta"):
        model = DIT_MODELS[name]()
    n, trainable = count_params(model), count_params(model, trainable_only=True)
    assert round(trainable / 1e6) == PAPER_PARAMS_M[name]
    c = model.config
    assert n == closed_form_params(c.depth, c.hidden_size, c.patch_size)
    assert n - trainable == (32 // c.patch_size) ** 2 * c.hidden_size   # only pos_embed is frozen
    if name == "DiT-XL/2":
        assert n == 675_129_632  # what the reference DiT prints for DiT-XL/2


def test_dlc_xl_table_size_and_tiny_presets():
    with torch.device("meta"):
        m = DIT_MODELS["DiT-XL/2"](cond="dlc", dlc_length=512, dlc_vocab=256)
    assert m.y_embedder.table.numel() == 512 * 257 * 1152  # ≈151.6M, as in the DLC reference
    for name in ("DiT-tiny/2", "DiT-tiny/4", "DiT-mini/2"):
        assert name in DIT_MODELS
    with pytest.raises(ValueError, match="Did you mean 'DiT-XL/2'"):
        build_dit("DiT-XL2")


def test_config_validation():
    with pytest.raises(ValueError, match="unknown conditioner"):
        DiTConfig(cond="text")
    with pytest.raises(ValueError, match="not divisible by patch_size"):
        DiTConfig(input_size=30, patch_size=4)
    with pytest.raises(ValueError, match="unknown DiTConfig keys"):
        DiTConfig.from_dict({"hidden": 3})


# ----------------------------------------------------------------------------- forward and init

@pytest.mark.parametrize("cond", ["dlc", "class", "vector", "none"])
def test_forward_shapes_and_adaln_zero_init(cond):
    m = tiny(cond).eval()
    x, t = torch.randn(3, 3, 16, 16), torch.tensor([0, 10, 999])
    out = m(x, t, make_cond(cond, 3))
    assert out.shape == (3, 6, 16, 16)
    assert out.abs().max() == 0  # adaLN-Zero: zero-initialised output layer
    assert tiny(cond, learn_sigma=False)(x, t, make_cond(cond, 3)).shape == (3, 3, 16, 16)


def test_unpatchify_inverts_patch_layout():
    m = tiny("none")
    x = torch.arange(2 * 6 * 16 * 16, dtype=torch.float32).reshape(2, 6, 16, 16)
    # patches in row-major token order with (p, p, C) inside each token, as the final linear layer lays them out
    tokens = x.reshape(2, 6, 4, 4, 4, 4).permute(0, 2, 4, 3, 5, 1).reshape(2, 16, 4 * 4 * 6)
    assert torch.equal(m.unpatchify(tokens), x)


def test_sincos_position_embedding_formula():
    m = tiny("none")                                  # hidden size 64, 4×4 patches of 16×16 → a 4×4 grid
    pe = m.pos_embed[0].double()                       # (T, D) with T = 4×4
    D, grid = 64, 4
    omega = 1.0 / 10000 ** (np.arange(D // 4) / (D / 4))
    for tok in (0, 5, 15):
        row, col = divmod(tok, grid)
        ref = np.concatenate([np.sin(col * omega), np.cos(col * omega), np.sin(row * omega), np.cos(row * omega)])
        np.testing.assert_allclose(pe[tok].numpy(), ref, atol=1e-6)


# ----------------------------------------------------------------------------- conditioners

def test_dlc_embedder_matches_reference_onehot_bmm():
    m = randomize(tiny("dlc"))
    E = m.y_embedder.table.detach()                    # (L, V+1, D)
    c = make_cond("dlc", 4)
    # the DLC reference: onehot(c, V+1) (B, L, V+1) multiplied per position with E, then averaged over L
    ref = torch.einsum("blv,lvd->bd", F.one_hot(c, V + 1).float(), E) / L
    torch.testing.assert_close(m.y_embedder(c), ref, rtol=1e-5, atol=1e-6)
    probs = torch.softmax(torch.randn(4, L, V), -1)   # soft codes: a zero column is appended for the null token
    ref_soft = torch.einsum("blv,lvd->bd", torch.cat([probs, torch.zeros(4, L, 1)], -1), E) / L
    torch.testing.assert_close(m.y_embedder(probs), ref_soft, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(m.y_embedder(F.one_hot(c, V).float()), ref, rtol=1e-5, atol=1e-6)
    drop = torch.tensor([True, False, True, False])
    emb = m.embed_condition(c, drop)
    torch.testing.assert_close(emb[0], E[:, V].mean(0))
    torch.testing.assert_close(emb[1], ref[1], rtol=1e-5, atol=1e-6)


def test_dlc_null_token_initialised_as_one_vector_for_all_positions():
    E = tiny("dlc").y_embedder.table.detach()
    assert torch.equal(E[:, V], E[:1, V].expand(L, -1))
    assert not torch.equal(E[0, 0], E[1, 0])
    assert abs(E[:, :V].std().item() - 64 ** -0.5) < 0.02  # randn · D^-1/2


def test_null_condition_is_dropped_with_probability_drop_prob():
    m = tiny("dlc").train()
    seen = {}
    orig = m.embed_condition
    m.embed_condition = lambda cond, drop: seen.setdefault("drop", drop) is not None and orig(cond, drop)
    torch.manual_seed(0)
    with torch.no_grad():
        m(torch.zeros(4000, 3, 16, 16), torch.zeros(4000, dtype=torch.long), make_cond("dlc", 4000))
    frac = seen["drop"].float().mean().item()
    assert abs(frac - 0.1) < 4 * (0.1 * 0.9 / 4000) ** 0.5
    m.eval()
    seen.clear()
    m(torch.zeros(2, 3, 16, 16), torch.zeros(2, dtype=torch.long), make_cond("dlc", 2))
    assert seen["drop"] is None  # no dropping at evaluation


def test_vector_and_class_embedders():
    m = randomize(tiny("vector"))
    v = make_cond("vector", 3)
    torch.testing.assert_close(m.y_embedder(v), v @ m.y_embedder.proj.weight.T)
    assert m.y_embedder.proj.bias is None                            # DLC's ContEmbedder has no bias
    assert tiny("vector", cond_bias=True).y_embedder.proj.bias is not None  # RCG's has one
    null = m.embed_condition(v, torch.tensor([True, True, False]))
    torch.testing.assert_close(null[0], m.y_embedder.null_vector @ m.y_embedder.proj.weight.T)
    mc = randomize(tiny("class"))
    y = torch.tensor([0, 4, 2])
    W = mc.y_embedder.embedding_table.weight
    assert W.shape[0] == NCLS + 1
    torch.testing.assert_close(mc.embed_condition(y, torch.tensor([False, True, False])),
                               torch.stack([W[0], W[NCLS], W[2]]))
    assert tiny("class", drop_prob=0.0).y_embedder.embedding_table.weight.shape[0] == NCLS


def _x(n=2, c=3, s=16):
    return torch.randn(n, c, s, s), torch.zeros(n, dtype=torch.long)


@pytest.mark.parametrize("bad,match", [
    (torch.full((2, L), V), r"tokens must lie in \[0, V\) = \[0, 7\)"),
    (torch.full((2, L), -1), r"tokens must lie in"),
    (torch.zeros(2, L + 1, dtype=torch.long), r"shape \(2, 6\) = \(N, L\)"),
    (torch.zeros(3, L, dtype=torch.long), r"shape \(2, 6\)"),
    (torch.rand(2, L, V), "softmax"),
    (torch.rand(2, L, V + 1), r"soft DLC must have shape \(2, 6, 7\)"),
    (None, "pass cond"),
])
def test_bad_dlc_conditions_raise(bad, match):
    with pytest.raises(ValueError, match=match):
        tiny("dlc")(*_x(), bad)


def test_bad_images_and_other_conditions_raise():
    m = tiny("class")
    y = torch.zeros(2, dtype=torch.long)
    with pytest.raises(ValueError, match="has 4 channels but the model takes in_channels=3"):
        m(*_x(c=4), y)
    with pytest.raises(ValueError, match="x is 32×32 but the model takes input_size=16"):
        m(*_x(s=32), y)
    with pytest.raises(ValueError, match=r"t must have shape \(2,\)"):
        m(_x()[0], torch.zeros(3, dtype=torch.long), y)
    with pytest.raises(ValueError, match=r"class labels must lie in \[0, 5\)"):
        m(*_x(), torch.tensor([0, 5]))
    with pytest.raises(ValueError, match=r"shape \(2, 10\)"):
        tiny("vector")(*_x(), torch.randn(2, CDIM + 1))
    with pytest.raises(ValueError, match="unconditional"):
        tiny("none")(*_x(), y)
    with pytest.raises(ValueError, match="no null condition"):
        tiny("class", drop_prob=0.0).eval()(*_x(), y, drop=torch.tensor([True, False]))


# ----------------------------------------------------------------------------- classifier-free guidance

@pytest.mark.parametrize("cond", ["dlc", "class", "vector"])
def test_cfg_scale_one_equals_the_conditional_model(cond):
    m = randomize(tiny(cond)).double()  # float64: batching the null pass alongside changes nothing but rounding
    x, t, c = torch.randn(3, 3, 16, 16, dtype=torch.float64), torch.tensor([1, 500, 999]), make_cond(cond, 3)
    c = c.double() if cond == "vector" else c
    cond_out = m(x, t, c)
    torch.testing.assert_close(m.forward_with_cfg(x, t, c, 1.0), cond_out)
    null_out = m(x, t, c, drop=torch.ones(3, dtype=torch.bool))
    assert (cond_out - null_out).abs().max() > 1e-3  # the condition matters, so the check above is not vacuous


def test_guided_channels_are_respected():
    m = randomize(tiny("dlc", in_channels=4)).double()
    x, t, c = torch.randn(2, 4, 16, 16, dtype=torch.float64), torch.tensor([3, 700]), make_cond("dlc", 2)
    cond_out = m(x, t, c)
    null_out = m(x, t, c, drop=torch.ones(2, dtype=torch.bool))
    guided = null_out + 4.0 * (cond_out - null_out)
    out3 = m.forward_with_cfg(x, t, c, 4.0, guided_channels=3)       # DiT / RCG convention
    torch.testing.assert_close(out3[:, :3], guided[:, :3])
    torch.testing.assert_close(out3[:, 3:], cond_out[:, 3:])          # incl. the variance channels
    out_all = m.forward_with_cfg(x, t, c, 4.0)                        # DLC convention: all ε channels
    torch.testing.assert_close(out_all[:, :4], guided[:, :4])
    torch.testing.assert_close(out_all[:, 4:], cond_out[:, 4:])
    assert (out3[:, 3] - out_all[:, 3]).abs().max() > 1e-3            # channel 3 is guided only in the latter
    with pytest.raises(ValueError, match="guided_channels=5"):
        m.forward_with_cfg(x, t, c, 4.0, guided_channels=5)
    with pytest.raises(ValueError, match="cond='none'"):
        tiny("none").forward_with_cfg(*_x(), None, 2.0)


def test_gradient_checkpointing_gives_the_same_gradients():
    x, t, c = torch.randn(2, 3, 16, 16), torch.tensor([4, 800]), make_cond("dlc", 2)
    grads = []
    for ckpt in (False, True):
        m = randomize(tiny("dlc", grad_checkpoint=ckpt)).train()
        m(x, t, c, drop=torch.tensor([False, True])).square().mean().backward()
        grads.append({k: p.grad for k, p in m.named_parameters() if p.requires_grad})
    for k in grads[0]:
        torch.testing.assert_close(grads[0][k], grads[1][k])


# ----------------------------------------------------------------------------- checkpoints

@pytest.mark.parametrize("cond", ["dlc", "vector"])
def test_checkpoint_round_trip(tmp_path, cond):
    m = randomize(tiny(cond))
    path = save_dit(tmp_path / "ckpt", m, meta={"step": 7})
    assert path.suffix == ".safetensors" and path.with_suffix(".json").exists()
    loaded, meta = load_dit(path)
    assert loaded.config == m.config and meta["step"] == 7
    x, t, c = torch.randn(2, 3, 16, 16), torch.tensor([1, 2]), make_cond(cond, 2)
    assert torch.equal(loaded(x, t, c), m(x, t, c))
    assert not loaded.pos_embed.requires_grad
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_dit(tmp_path / "missing.safetensors")


# ----------------------------------------------------------------------------- training

def _toy_images(n: int, classes: int = 4, seed: int = 0):
    """Class k: a smooth colour gradient with class-specific colours, plus small noise, in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    colours = torch.rand(classes, 3, 1, 1, generator=g) * 1.6 - 0.8
    ramp = torch.linspace(-0.2, 0.2, 16).reshape(1, 1, 1, 16)
    x = colours[y] + ramp + 0.05 * torch.randn(n, 3, 16, 16, generator=g)
    return x.clamp(-1, 1), y


def test_train_dit_loss_decreases_and_reports_progress():
    m = tiny("class", num_classes=4)
    x, y = _toy_images(64)
    logs = []
    res = train_dit(m, create_diffusion(), x, y, steps=150, batch_size=32, lr=1e-3, ema_decay=0.99, seed=0,
                    device="cpu", log_every=50, callback=lambda s, d: logs.append((s, d)))
    assert len(res.losses) == 150 and all(np.isfinite(res.losses))
    assert np.mean(res.losses[-30:]) < 0.6 * np.mean(res.losses[:10])
    assert [s for s, _ in logs] == [50, 100, 150] and {"loss", "mse", "vb", "steps_per_s"} <= set(logs[-1][1])
    ema_p, p = dict(res.ema.named_parameters()), dict(res.model.named_parameters())
    assert not torch.equal(ema_p["final_layer.linear.weight"], p["final_layer.linear.weight"])


def test_train_dit_dlc_is_deterministic_and_saves(tmp_path):
    x, _ = _toy_images(24)
    c = make_cond("dlc", 24)
    runs = [train_dit(tiny("dlc"), create_diffusion(), x, c, steps=12, batch_size=8, lr=1e-3, seed=3,
                      device="cpu", save_path=tmp_path / f"r{i}") for i in range(2)]
    assert runs[0].losses == runs[1].losses
    loaded, meta = load_dit(tmp_path / "r0.safetensors")
    assert meta["step"] == 12
    for k, v in runs[0].ema.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)


def test_train_dit_input_errors():
    x, y = _toy_images(8)
    with pytest.raises(ValueError, match="pass cond"):
        train_dit(tiny("class"), create_diffusion(), x, None, steps=1, batch_size=4, device="cpu")
    with pytest.raises(ValueError, match=r"class labels must lie in \[0, 5\)"):
        train_dit(tiny("class"), create_diffusion(), x, y + 10, steps=1, batch_size=4, device="cpu")
    with pytest.raises(ValueError, match="x is 8×8"):
        train_dit(tiny("class"), create_diffusion(), x[:, :, :8, :8], y, steps=1, batch_size=4, device="cpu")


def _ddp_worker(rank: int, port: int, tmp: str):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2",
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from dlc import dist as ddist
    x, y = _toy_images(32)
    res = train_dit(tiny("class", num_classes=4), create_diffusion(), x, y, steps=4, batch_size=8, lr=1e-3,
                    seed=0, device="cpu", save_path=os.path.join(tmp, "ddp"))
    torch.save({"losses": res.losses, "state": res.model.state_dict()}, os.path.join(tmp, f"rank{rank}.pt"))
    ddist.cleanup()


def test_train_dit_under_ddp_two_processes(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.spawn(_ddp_worker, args=(port, str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert r0["losses"] != r1["losses"]                  # each rank saw its own shard and noise
    for k in r0["state"]:                                 # but DDP kept the replicas identical
        assert torch.equal(r0["state"][k], r1["state"][k])
    assert (tmp_path / "ddp.safetensors").exists()       # written once, by rank 0


# ----------------------------------------------------------------------------- sampling

def test_sampling_is_deterministic_and_batch_size_independent():
    m = randomize(tiny("dlc"), std=0.05)
    d = create_diffusion()
    c = make_cond("dlc", 5)
    kw = dict(cfg_scale=3.0, steps=8, seed=11, device="cpu")
    a = sample_dit(m, d, c, batch_size=5, **kw)
    b = sample_dit(m, d, c, batch_size=2, **kw)
    assert a.shape == (5, 3, 16, 16) and a.dtype == torch.float32
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    assert torch.equal(a, sample_dit(m, d, c, batch_size=5, **kw))
    tail = sample_dit(m, d, c[3:], start_index=3, batch_size=1, **kw)     # global indices 3, 4
    torch.testing.assert_close(tail, a[3:], rtol=1e-4, atol=1e-4)
    other = sample_dit(m, d, c, batch_size=5, **{**kw, "seed": 12})
    assert (other - a).abs().max() > 0.1
    ddim = sample_dit(m, d, c, batch_size=5, sampler="ddim", **kw)
    assert ddim.shape == a.shape and not torch.allclose(ddim, a)


def test_sampling_cfg_one_equals_conditional_sampling_and_guidance_changes_it():
    m = randomize(tiny("class"), std=0.05)
    d = create_diffusion()
    y = make_cond("class", 3)
    plain = sample_dit(m, d, y, cfg_scale=1.0, steps=5, device="cpu")
    manual = d.respace(5).p_sample_loop(lambda x, t: m(x, t, y), (3, 3, 16, 16), PerSampleRNG(0, range(3)))
    torch.testing.assert_close(plain, manual, rtol=1e-5, atol=1e-5)
    guided = sample_dit(m, d, y, cfg_scale=4.0, guided_channels=3, steps=5, device="cpu")
    assert (guided - plain).abs().max() > 1e-3


def test_unconditional_sampling_and_errors():
    m = randomize(tiny("none"), std=0.05)
    d = create_diffusion()
    out = sample_dit(m, d, None, num_samples=3, steps=4, device="cpu")
    assert out.shape == (3, 3, 16, 16)
    with pytest.raises(ValueError, match="num_samples"):
        sample_dit(m, d, None, steps=4, device="cpu")
    with pytest.raises(ValueError, match="needs a condition"):
        sample_dit(m, d, None, num_samples=2, cfg_scale=2.0, steps=4, device="cpu")
    with pytest.raises(ValueError, match=r"tokens must lie in"):
        sample_dit(tiny("dlc"), d, torch.full((2, L), V), steps=4, device="cpu")


# ----------------------------------------------------------------------------- VAE

@pytest.fixture(scope="module")
def tiny_vae_dir(tmp_path_factory):
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    ae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                       up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), latent_channels=4,
                       norm_num_groups=4, layers_per_block=1, sample_size=16)
    path = tmp_path_factory.mktemp("vae") / "tiny-vae"
    ae.save_pretrained(path)
    return path, ae.eval()


def test_sd_vae_encode_decode_match_diffusers(tiny_vae_dir):
    path, ae = tiny_vae_dir
    vae = load_vae(path, device="cpu")
    assert (vae.channels, vae.downsample, vae.scale_factor) == (4, 2, 0.18215)
    assert vae.latent_shape(16) == (4, 8, 8)
    x = torch.rand(3, 3, 16, 16) * 2 - 1
    z = vae.encode(x)
    with torch.no_grad():
        torch.testing.assert_close(z, ae.encode(x).latent_dist.mean * 0.18215)
        torch.testing.assert_close(vae.decode(z), ae.decode(z / 0.18215).sample)
        dist = ae.encode(x).latent_dist
    zs = vae.encode(x, rng=PerSampleRNG(5, range(3)))                 # posterior samples, per-sample seeded
    eps = PerSampleRNG(5, range(3)).randn(4, 8, 8)
    torch.testing.assert_close(zs, (dist.mean + dist.std * eps) * 0.18215)
    torch.testing.assert_close(vae.encode(x[1:], rng=PerSampleRNG(5, [1, 2])), zs[1:])
    imgs = decode_latents(vae, z, batch_size=2, device="cpu")
    assert imgs.shape == (3, 16, 16, 3) and imgs.dtype == torch.uint8


def test_vae_errors(tiny_vae_dir, tmp_path):
    path, _ = tiny_vae_dir
    vae = load_vae(path)
    with pytest.raises(ValueError, match="multiples of 2"):
        vae.encode(torch.zeros(1, 3, 15, 16))
    with pytest.raises(ValueError, match="have 1 channels; expected 3"):
        vae.encode(torch.zeros(1, 1, 16, 16))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_vae(tmp_path / "no-such-vae")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_vae(tmp_path / "empty")
    assert os.environ.get("HF_HUB_OFFLINE") == "1"   # set by conftest: nothing may be downloaded
    with pytest.raises(FileNotFoundError, match="nonexistent-org/missing-vae.*local directory"):
        load_vae("nonexistent-org/missing-vae")


def test_pixel_vae_and_uint8_conversion():
    pv = load_vae("pixel")
    assert isinstance(pv, PixelVAE) and pv.latent_shape(16) == (3, 16, 16)
    x = torch.rand(2, 3, 8, 8) * 2 - 1
    assert torch.equal(pv.decode(pv.encode(x)), x)
    u = to_uint8(torch.tensor([-1.0, -0.5, 0.0, 0.999, 1.0, 2.0]).reshape(1, 1, 1, 6))
    np.testing.assert_array_equal(u.flatten().numpy(), np.clip(np.array([-1, -0.5, 0, 0.999, 1, 2]) * 127.5 + 128,
                                                              0, 255).astype(np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        pv.encode(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))


# ----------------------------------------------------------------------------- respacing against ADM's respace.py

def _adm_space_timesteps(T: int, counts: list[int]) -> list[int]:
    """ADM/DiT `respace.space_timesteps`, written from its spec: per section, round the running float sum of
    the stride (size−1)/(count−1) (1 for a count ≤ 1), starting at 0.0; the first T mod len sections are one
    step longer."""
    size_per, extra = divmod(T, len(counts))
    start, steps = 0, []
    for i, count in enumerate(counts):
        size = size_per + (i < extra)
        stride, cur = (1 if count <= 1 else (size - 1) / (count - 1)), 0.0
        for _ in range(count):
            steps.append(start + round(cur))
            cur += stride
        start += size
    return sorted(set(steps))


def _digest(rows) -> str:
    import hashlib
    import json
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:16]


# Computed by running facebookresearch/DiT diffusion/respace.py (commit ed81ce2) on the same inputs:
# sha256 of json.dumps([sorted(space_timesteps(T, [n])) for n in 1..T]), and of the section strings below.
_ADM_ALL_N = {250: "c9c66b8c3b30180b", 1000: "c6f7236b85606b3d"}
_ADM_SPECS = ["10,15,20", "1,1,1", "3,5,7,11", "21,21", "60,70,74"]
_ADM_SPEC_DIGEST = {300: "2a843ef5bd376edb", 1000: "08dec79d04e21250", 1001: "16354a4caacda2f5"}


@pytest.mark.parametrize("T", [250, 1000])
def test_space_timesteps_equals_adm_respace_for_every_step_count(T):
    from dlc.dit import space_timesteps
    ours = [space_timesteps(T, n) for n in range(1, T + 1)]
    assert _digest(ours) == _ADM_ALL_N[T]
    assert ours == [_adm_space_timesteps(T, [n]) for n in range(1, T + 1)]
    assert all(space_timesteps(T, str(n)) == ours[n - 1] for n in range(1, T + 1))
    # the accumulated sum is not round(j·stride): 64 (T=250) / 278 (T=1000) step counts tell the two apart
    naive = [n for n in range(2, T + 1) if ours[n - 1] != sorted({round(j * ((T - 1) / (n - 1))) for j in range(n)})]
    assert len(naive) == {250: 64, 1000: 278}[T] and naive[0] == 21


def test_space_timesteps_sections_and_ddim_equal_adm_respace():
    from dlc.dit import space_timesteps
    assert space_timesteps(1000, 21) == [0, 50, 100, 150, 200, 250, 300, 350, 400, 450, 499, 549, 599, 649, 699, 749,
                                         799, 849, 899, 949, 999]   # respace.py: 499, not round(10·49.95) = 500
    assert space_timesteps(300, "10,15,20") == [
        0, 11, 22, 33, 44, 55, 66, 77, 88, 99, 100, 107, 114, 121, 128, 135, 142, 149, 157, 164, 171, 178, 185, 192,
        199, 200, 205, 210, 216, 221, 226, 231, 236, 242, 247, 252, 257, 263, 268, 273, 278, 283, 289, 294, 299]
    assert space_timesteps(1001, [3, 5, 7, 11]) == [0, 125, 250, 251, 313, 375, 438, 500, 501, 543, 584, 625, 667,
                                                    709, 750, 751, 776, 801, 826, 851, 875, 900, 925, 950, 975, 1000]
    for T, digest in _ADM_SPEC_DIGEST.items():
        rows = [space_timesteps(T, spec) for spec in _ADM_SPECS]
        assert _digest(rows) == digest
        assert rows == [_adm_space_timesteps(T, [int(c) for c in spec.split(",")]) for spec in _ADM_SPECS]
    for n in range(2, 251):   # ddimN: the smallest stride in 1..T−1 with exactly N steps, else refused
        strides = [k for k in range(1, 250) if len(range(0, 250, k)) == n]
        if strides:
            assert space_timesteps(250, f"ddim{n}") == list(range(0, 250, strides[0]))
        else:
            with pytest.raises(ValueError, match="DDIM steps"):
                space_timesteps(250, f"ddim{n}")
    with pytest.raises(ValueError, match="DDIM steps"):   # respace.py has no stride T either
        space_timesteps(1000, "ddim1")
    with pytest.raises(ValueError, match="bad timestep respacing"):
        space_timesteps(1000, "ddimx")


def test_dlc_sum_pooling_starts_equal_to_mean_and_is_l_times_the_mean_of_its_table():
    """dlc_pool='sum': Σ_l E[l, c_l] with a table initialised 1/L smaller, so at initialisation both poolings
    give the same output (hard and soft codes, and the null); afterwards sum = L · mean of the same table."""
    from dlc.dit.models import DLCEmbedder

    torch.manual_seed(0)
    mean = DLCEmbedder(8, 5, 16, "mean")
    torch.manual_seed(0)
    summed = DLCEmbedder(8, 5, 16, "sum")
    c = torch.randint(0, 5, (4, 8))
    soft = torch.nn.functional.one_hot(c, 5).float()
    torch.manual_seed(1); mean.reset_parameters()
    torch.manual_seed(1); summed.reset_parameters()
    torch.testing.assert_close(summed(c), mean(c))
    torch.testing.assert_close(summed(soft), summed(c))
    torch.testing.assert_close(summed.null(), mean.null())
    with torch.no_grad():
        summed.table.copy_(mean.table)
    torch.testing.assert_close(summed(c), 8 * mean(c))
    torch.testing.assert_close(summed.table[:, :5].gather(1, c.T[:, :, None].expand(8, 4, 16)).sum(0), summed(c))
    with pytest.raises(ValueError, match="dlc_pool"):
        DLCEmbedder(8, 5, 16, "max")


def test_flow_training_is_repeatable_with_two_threads():
    """Same seed, same EMA weights bit for bit under 2 intra-op threads (as the SEDD prior's test)."""
    from dlc.dit.flow import create_flow

    g = torch.Generator().manual_seed(0)
    x, c = torch.randn(128, 3, 8, 8, generator=g), torch.randint(0, 8, (128, 4), generator=g)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        runs = []
        for _ in range(3):
            torch.manual_seed(0)
            model = build_dit("DiT-tiny/4", input_size=8, in_channels=3, cond="dlc", dlc_length=4, dlc_vocab=8,
                              learn_sigma=False, dlc_pool="sum")
            ema = train_dit(model, create_flow(), x, c, steps=20, batch_size=32, lr=1e-3, seed=1, device="cpu").ema
            runs.append(torch.cat([p.detach().flatten() for p in ema.parameters()]))
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(r, runs[0]) for r in runs[1:])
