"""dlc.tokens.vq: the VQ image tokenizer through diffusers' VQModel.

Numerics are checked against independent references: PSNR's closed form (and scikit-image when installed), code
statistics of hand-made token tensors, the model's own quantise-and-decode forward, a brute-force nearest-code
search for the token layout, the VQ-VAE loss gradients in closed form, and aMUSEd's pipeline formula for models
with `lookup_from_codebook`. One tiny tokenizer is trained once per module (~10 s on one core).
"""
import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from dlc.tokens import vq
from dlc.tokens.vq import (VQConfig, VQTrainConfig, build_vq, codebook_stats, decode_tokens, encode_tokens, load_vq,
                           psnr, reconstruct, save_vq, train_vq)
from dlc.validate import ConfigError

TINY = VQConfig(image_size=16, block_out_channels=(16, 32), layers_per_block=1, latent_channels=8,
                num_vq_embeddings=32, norm_num_groups=8)
TRAIN = VQTrainConfig(steps=150, batch_size=32, lr=2e-3, warmup=10, restart_dead=25, seed=0, log_every=25)
PALETTE = torch.tensor([[230, 40, 40], [40, 200, 60], [50, 80, 230], [240, 220, 40], [20, 20, 20], [250, 250, 250]],
                       dtype=torch.uint8)


def squares(n: int, size: int = 16, seed: int = 0) -> torch.Tensor:
    """n uint8 images (n, 3, size, size): a plain background with a square of another palette colour."""
    g = torch.Generator().manual_seed(seed)
    x = torch.empty(n, 3, size, size, dtype=torch.uint8)
    for i in range(n):
        back, front = torch.randperm(len(PALETTE), generator=g)[:2]
        x[i] = PALETTE[back][:, None, None]
        s = int(torch.randint(4, 9, (1,), generator=g))
        r, c = torch.randint(0, size - s + 1, (2,), generator=g).tolist()
        x[i, :, r:r + s, c:c + s] = PALETTE[front][:, None, None]
    return x


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Two intra-op threads on a shared 2-core machine spin-wait on each other: this file runs on one."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def data():
    return squares(128)


@pytest.fixture(scope="module")
def trained(data):
    logs = []
    model = train_vq(data, TINY, TRAIN, device="cpu", callback=lambda step, log: logs.append((step, log)))
    return model, logs


def mse(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a.double() - b.double()) ** 2).mean())


def to_float(x: torch.Tensor) -> torch.Tensor:
    return x.float() / 127.5 - 1.0


def to_uint8(y: torch.Tensor) -> torch.Tensor:
    return ((y + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)


# ----------------------------------------------------------------------------- measures
def test_psnr_closed_form():
    base = torch.full((4, 3, 8, 8), 100, dtype=torch.uint8)
    offsets = torch.tensor([1, 5, 17, 0], dtype=torch.uint8)
    other = base + offsets[:, None, None, None]
    got = psnr(other, base)
    assert got.shape == (4,) and isinstance(got, np.ndarray)
    np.testing.assert_allclose(got[:3], [20 * math.log10(255 / d) for d in (1, 5, 17)], rtol=1e-12)
    assert got[3] == np.inf
    half = base.clone()
    half[:, :, :4] += 10                                    # half the pixels off by 10: mse = 50
    np.testing.assert_allclose(psnr(half, base), 10 * math.log10(255 ** 2 / 50), rtol=1e-12)
    np.testing.assert_allclose(psnr(base, half), psnr(half, base))   # symmetric, and no uint8 wrap-around


def test_psnr_matches_skimage():
    metrics = pytest.importorskip("skimage.metrics")
    g = torch.Generator().manual_seed(3)
    a = torch.randint(0, 256, (3, 3, 12, 12), generator=g, dtype=torch.uint8)
    b = torch.randint(0, 256, (3, 3, 12, 12), generator=g, dtype=torch.uint8)
    ref = [metrics.peak_signal_noise_ratio(x.numpy(), y.numpy(), data_range=255) for x, y in zip(a, b)]
    np.testing.assert_allclose(psnr(a, b), ref, rtol=1e-10)


def test_psnr_rejects_bad_input():
    a = torch.zeros(2, 3, 4, 4, dtype=torch.uint8)
    with pytest.raises(ValueError, match="uint8"):
        psnr(a.float(), a)
    with pytest.raises(ValueError, match="one shape"):
        psnr(a, a[:1])


def test_codebook_stats_hand_made():
    K = 16
    uniform = torch.arange(K).repeat(5)                     # every code equally often
    s = codebook_stats(uniform, K)
    assert s["usage"] == 1.0 and s["perplexity"] == pytest.approx(K, rel=1e-12)
    one = torch.full((7, 9), 3)                             # a single code
    s = codebook_stats(one, K)
    assert s["usage"] == pytest.approx(1 / K) and s["perplexity"] == pytest.approx(1.0, abs=1e-12)
    two = torch.tensor([0, 0, 0, 5])                        # p = (3/4, 1/4)
    h = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    s = codebook_stats(two, K)
    assert s["usage"] == pytest.approx(2 / K) and s["perplexity"] == pytest.approx(math.exp(h), rel=1e-12)
    with pytest.raises(ValueError, match=r"\[0, K=16\)"):
        codebook_stats(torch.tensor([0, 16]), K)
    with pytest.raises(ValueError, match="integer"):
        codebook_stats(torch.tensor([0.0, 1.0]), K)


# ----------------------------------------------------------------------------- configs
def test_config_grid_and_validation():
    assert (VQConfig().grid, VQConfig().seq_len) == (8, 64)              # 32 px, f = 4
    assert (TINY.grid, TINY.seq_len) == (8, 64)                          # 16 px, f = 2
    assert VQConfig(block_out_channels=[32, 64]).block_out_channels == (32, 64)
    with pytest.raises(ConfigError, match="norm_num_groups"):
        VQConfig(block_out_channels=(32, 20))
    with pytest.raises(ConfigError, match="image_size=30 is not a multiple of the downsampling factor 4"):
        VQConfig(image_size=30)
    with pytest.raises(ConfigError, match="block_out_channels"):
        VQConfig(block_out_channels=())
    with pytest.raises(ConfigError, match="num_vq_embeddings"):
        VQConfig(num_vq_embeddings=0)
    with pytest.raises(ConfigError, match="beta"):
        VQTrainConfig(beta=-0.1)
    with pytest.raises(ConfigError, match="steps"):
        VQTrainConfig(steps=0)


def test_build_vq_architecture():
    model = build_vq(TINY)
    assert not model.training
    assert model.config.num_vq_embeddings == 32 and model.quantize.vq_embed_dim == 8
    z = model.encode(torch.zeros(2, 3, 16, 16)).latents
    assert z.shape == (2, 8, TINY.grid, TINY.grid)


# ----------------------------------------------------------------------------- the VQ loss
def test_vq_loss_gradients_match_closed_form():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(2, 4, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    e = torch.randn(2, 4, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    beta, n = 0.3, z.numel()
    codebook, commit = vq._vq_loss(z, e, beta)
    d = (z - e).detach()
    assert codebook.item() == pytest.approx(float((d ** 2).mean()))
    assert commit.item() == pytest.approx(beta * float((d ** 2).mean()))
    (codebook + commit).backward()
    torch.testing.assert_close(z.grad, beta * 2 * d / n)                 # the encoder is pulled with weight β
    torch.testing.assert_close(e.grad, -2 * d / n)                       # the codebook with weight 1


def test_diffusers_legacy_quantizer_weights_commitment_by_one():
    """What the module docstring says of VQModel's quantizer (legacy=True, β = 0.25): its loss pulls the encoder
    with weight 1 and the codebook with weight β, the reverse of VQ-VAE's — hence train_vq's own loss."""
    torch.manual_seed(0)
    model = build_vq(TINY)
    q = model.quantize
    assert q.legacy and q.beta == 0.25
    z = torch.randn(2, 8, 3, 3, requires_grad=True)
    z_q, loss, (perplexity, encodings, k) = q(z)
    assert perplexity is None and encodings is None and k.shape == (2 * 3 * 3,)   # flat (N·h·w,) indices
    e = q.embedding.weight[k].view(2, 3, 3, 8).permute(0, 3, 1, 2).detach()
    d = (z - e).detach()
    assert loss.item() == pytest.approx(1.25 * float((d ** 2).mean()), rel=1e-5)
    loss.backward()
    torch.testing.assert_close(z.grad, 2 * d / z.numel())                # weight 1 on the commitment term
    torch.testing.assert_close(z_q, e)                                   # straight-through value is the code


def test_restart_dead_reinitialises_only_dead_codes():
    torch.manual_seed(0)
    model = build_vq(TINY).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.quantize.embedding.weight.sum().backward()
    opt.step()
    before = model.quantize.embedding.weight.detach().clone()
    dead = torch.zeros(32, dtype=torch.bool)
    dead[[2, 7, 30]] = True
    z_flat = torch.randn(50, 8)
    n = vq._restart_dead(model, opt, dead, z_flat, torch.Generator().manual_seed(0))
    after = model.quantize.embedding.weight.detach()
    assert n == 3
    torch.testing.assert_close(after[~dead], before[~dead], rtol=0, atol=0)
    for row in after[dead]:                                              # each a (distinct) encoder output
        assert (z_flat == row).all(dim=1).sum() == 1
    assert len({tuple(r.tolist()) for r in after[dead]}) == 3
    state = opt.state[model.quantize.embedding.weight]
    assert (state["exp_avg"][dead] == 0).all() and (state["exp_avg_sq"][dead] == 0).all()
    assert (state["exp_avg"][~dead] != 0).any()


# ----------------------------------------------------------------------------- training
def test_training_lowers_reconstruction_error(trained, data):
    model, logs = trained
    assert not model.training and next(model.parameters()).device.type == "cpu"
    torch.manual_seed(123)
    untrained = build_vq(TINY)
    err = mse(reconstruct(model, data, device="cpu"), data)
    err_untrained = mse(reconstruct(untrained, data, device="cpu"), data)
    err_mean = mse(data.double().mean(0, keepdim=True).expand_as(data), data)
    assert err < 0.25 * err_mean, (err, err_mean)
    assert err < 0.25 * err_untrained, (err, err_untrained)
    assert psnr(reconstruct(model, data, device="cpu"), data).mean() > 15
    stats = codebook_stats(encode_tokens(model, data, device="cpu"), TINY.num_vq_embeddings)
    assert stats["usage"] >= 0.5 and stats["perplexity"] > 8, stats
    assert [s for s, _ in logs] == [25, 50, 75, 100, 125, 150]
    assert {"loss", "recon", "usage", "steps_per_s"} <= set(logs[-1][1])
    assert logs[-1][1]["recon"] < 0.5 * logs[0][1]["recon"]
    assert all(0 < log["usage"] <= 1 and log["steps_per_s"] > 0 for _, log in logs)


def test_training_is_deterministic(data):
    short = VQTrainConfig(steps=12, batch_size=16, warmup=2, restart_dead=5, seed=7, log_every=100)
    rng = torch.random.get_rng_state()
    a = train_vq(data[:40], TINY, short, device="cpu").state_dict()
    assert torch.equal(torch.random.get_rng_state(), rng)               # the global RNG is left alone
    b = train_vq(data[:40], TINY, short, device="cpu").state_dict()
    c = train_vq(data[:40], TINY, dataclasses.replace(short, seed=8), device="cpu").state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


# ----------------------------------------------------------------------------- images ↔ tokens
def test_tokens_shape_range_and_forward_equivalence(trained, data):
    model, _ = trained
    x = data[:24]
    tokens = encode_tokens(model, x, batch_size=10, device="cpu")       # several batches
    assert tokens.dtype == torch.long and tokens.shape == (24, TINY.seq_len)
    assert int(tokens.min()) >= 0 and int(tokens.max()) < TINY.num_vq_embeddings
    assert torch.equal(tokens, encode_tokens(model, x, device="cpu"))   # batching does not change them
    images = decode_tokens(model, tokens, batch_size=7, device="cpu")
    assert images.dtype == torch.uint8 and images.shape == x.shape
    with torch.no_grad():
        ref = to_uint8(model(to_float(x)).sample)                        # VQModel's quantise-and-decode forward
    assert ref.float().std() > 30                                        # a real image, not a constant grey
    assert (images.int() - ref.int()).abs().max() <= 1
    assert torch.equal(reconstruct(model, x, device="cpu"), images)


def test_token_grid_is_row_major(trained, data):
    model, _ = trained
    x = data[:6]
    g = TINY.grid
    tokens = encode_tokens(model, x, device="cpu").view(6, g, g)        # [n, i, j]
    with torch.no_grad():
        z = model.encode(to_float(x)).latents.double()                   # (6, D, g, g)
    codebook = model.quantize.embedding.weight.detach().double()         # (K, D)
    dist = ((z.permute(0, 2, 3, 1)[..., None, :] - codebook) ** 2).sum(-1)   # (6, g, g, K)
    brute = dist.argmin(-1)
    mismatch = brute != tokens
    if mismatch.any():                                                   # only float32 near-ties may differ
        gap = dist.gather(-1, tokens[..., None]).squeeze(-1) - dist.gather(-1, brute[..., None]).squeeze(-1)
        assert gap[mismatch].max() < 1e-4
    assert mismatch.float().mean() < 0.02
    # permuting the token grid = permuting the quantised latent: decode the transposed grid
    flipped = tokens.transpose(1, 2).reshape(6, -1)
    e = model.quantize.embedding.weight.detach()[tokens].permute(0, 3, 1, 2)    # (6, D, g, g)
    with torch.no_grad():
        ref = to_uint8(model.decode(e.transpose(2, 3), force_not_quantize=True).sample)
    out = decode_tokens(model, flipped, device="cpu")
    assert (out.int() - ref.int()).abs().max() <= 1
    assert (out.int() - decode_tokens(model, tokens.reshape(6, -1), device="cpu").int()).abs().max() > 10


def test_lookup_from_codebook_models_follow_amused_conventions(trained, data):
    """aMUSEd-style VQModels (lookup_from_codebook=True) take [0, 1] pixels and indices in decode."""
    from diffusers import VQModel

    model, _ = trained
    # (not {**model.config, ...}: its "_use_default_values" entry would make from_config drop the override)
    kwargs = {k: v for k, v in model.config.items() if not k.startswith("_")}
    amused = VQModel.from_config({**kwargs, "lookup_from_codebook": True}).eval()
    assert amused.config.lookup_from_codebook
    amused.load_state_dict(model.state_dict())
    x = data[:5]
    g = TINY.grid
    tokens = encode_tokens(amused, x, device="cpu")
    with torch.no_grad():                                                # aMUSEd's pipeline formulas
        ref_tokens = amused.quantize(amused.encode(x.float() / 255).latents)[2][2].reshape(5, -1)
        ref = amused.decode(tokens.reshape(-1), force_not_quantize=True, shape=(5, g, g, 8)).sample.clip(0, 1)
    assert torch.equal(tokens, ref_tokens)
    out = decode_tokens(amused, tokens, device="cpu")
    assert (out.int() - (ref * 255).round().to(torch.uint8).int()).abs().max() <= 1
    amused.dlc_pixel_range = (-1, 1)                                     # the override: back to [-1, 1]
    assert torch.equal(encode_tokens(amused, x, device="cpu"), encode_tokens(model, x, device="cpu"))
    assert torch.equal(decode_tokens(amused, tokens, device="cpu"), decode_tokens(model, tokens, device="cpu"))


def test_empty_batches(trained):
    model, _ = trained
    assert encode_tokens(model, torch.zeros(0, 3, 16, 16, dtype=torch.uint8)).shape == (0, 64)
    assert decode_tokens(model, torch.zeros(0, 64, dtype=torch.long)).shape == (0, 3, 16, 16)


# ----------------------------------------------------------------------------- bad inputs
def test_bad_images_are_refused(trained, data):
    model, _ = trained
    with pytest.raises(ValueError, match="uint8"):
        encode_tokens(model, data[:2].float())
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        encode_tokens(model, data[:2, :1])
    with pytest.raises(ValueError, match="square"):
        encode_tokens(model, data[:2, :, :, :8])
    with pytest.raises(ValueError, match="multiple of the tokenizer's downsampling factor 2"):
        encode_tokens(model, data[:2, :, :15, :15])
    with pytest.raises(ValueError, match="image_size is 16"):
        train_vq(data[:4, :, :12, :12], TINY, TRAIN, device="cpu")
    with pytest.raises(ValueError, match="uint8"):
        train_vq(data[:4].float(), TINY, TRAIN, device="cpu")
    with pytest.raises(ValueError, match="batch_size"):
        encode_tokens(model, data[:2], batch_size=0)


def test_bad_tokens_are_refused(trained):
    model, _ = trained
    ok = torch.zeros(2, 64, dtype=torch.long)
    with pytest.raises(ValueError, match=r"\[0, K=32\).*max 32"):
        decode_tokens(model, ok + 32)
    with pytest.raises(ValueError, match="min -1"):
        decode_tokens(model, ok - 1)
    with pytest.raises(ValueError, match="length 63, which is not a square grid"):
        decode_tokens(model, ok[:, :63])
    with pytest.raises(ValueError, match="integer"):
        decode_tokens(model, ok.float())
    with pytest.raises(ValueError, match=r"shape \(N, h·w\)"):
        decode_tokens(model, ok[0])


# ----------------------------------------------------------------------------- save and load
def test_save_load_round_trip_and_subfolder(trained, data, tmp_path):
    model, _ = trained
    x = data[:8]
    tokens = encode_tokens(model, x, device="cpu")
    path = save_vq(tmp_path / "tok", model)
    assert (path / "config.json").is_file() and (path / "diffusion_pytorch_model.safetensors").is_file()
    loaded = load_vq(path)
    assert not loaded.training
    assert torch.equal(encode_tokens(loaded, x, device="cpu"), tokens)
    assert torch.equal(decode_tokens(loaded, tokens, device="cpu"), decode_tokens(model, tokens, device="cpu"))

    save_vq(tmp_path / "repo" / "vqvae", model)                          # an aMUSEd-like layout
    assert torch.equal(encode_tokens(load_vq(str(tmp_path / "repo"), subfolder="vqvae"), x, device="cpu"), tokens)
    with pytest.raises(FileNotFoundError, match="subfolder='vqvae'"):
        load_vq(tmp_path / "repo")
    with pytest.raises(FileNotFoundError, match="no subfolder 'vae'; its model subfolders are vqvae"):
        load_vq(tmp_path / "repo", subfolder="vae")


def test_load_errors_are_clear(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="does not exist: pass a directory written by save_vq"):
        load_vq(tmp_path / "missing")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError) as info:
        load_vq("dlc-bench-tests/no-such-vq", subfolder="vqvae")
    text = str(info.value)
    assert "HF_HUB_OFFLINE is set" in text and "not in the local Hugging Face cache" in text
    assert "download dlc-bench-tests/no-such-vq --include 'vqvae/*'" in text and "local directory" in text
    other = tmp_path / "kl"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKL", "latent_channels": 4}))
    with pytest.raises(ValueError, match="holds a config of class AutoencoderKL, not a VQModel"):
        load_vq(other)
    (other / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ValueError, match="without a diffusers _class_name"):
        load_vq(other)
