"""dlc.tokens: 2-D RoPE, the class-conditional score network, classifier-free guidance, MaskGIT's masked
cross-entropy, and training + sampling on token data whose class-conditional law is known."""
from __future__ import annotations

import math

import pytest
import torch

from dlc.sedd import SEDD
from dlc.sedd.model import apply_rotary, rotary_cos_sin
from dlc.tokens import (Guided, TokenSEDD, TokenTrainConfig, load_token_model, mask_ratio, masked_ce_loss,
                        rotary_cos_sin_2d, sample_tokens, save_token_model, token_config, train_token_model)
from dlc.validate import ConfigError


def _rotate(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    cos, sin = rotary_cos_sin_2d(h, w, x.shape[-1])
    return apply_rotary(x, cos, sin)


def test_2d_rope_logits_depend_only_on_the_relative_grid_offset():
    """q·k after rotation is a function of (Δrow, Δcol): the same q and k placed at two pairs of grid positions with
    one offset give one logit; offsets with the same flattened distance but different rows/columns do not."""
    g = torch.Generator().manual_seed(0)
    h, w, hd = 5, 6, 16
    q, k = torch.randn(hd, generator=g), torch.randn(hd, generator=g)
    Q = _rotate(q.expand(h * w, hd).clone(), h, w)              # (h·w, hd): q placed at every position
    K = _rotate(k.expand(h * w, hd).clone(), h, w)

    def logit(p, r):
        return float(Q[p[0] * w + p[1]] @ K[r[0] * w + r[1]])

    for d in [(0, 1), (1, 0), (2, -3), (-1, 2)]:
        vals = [logit((a, b), (a + d[0], b + d[1])) for a in range(h) for b in range(w)
                if 0 <= a + d[0] < h and 0 <= b + d[1] < w]
        assert max(vals) - min(vals) < 1e-4, d
    # flattened distance 6 = one row down (Δ = (1, 0)) or six columns right on a wider grid: different logits
    assert abs(logit((0, 0), (1, 0)) - logit((0, 0), (0, 5))) > 1e-3
    # and with 1-D RoPE over the flattened index they would be equal (what 2-D RoPE fixes)
    cos, sin = rotary_cos_sin(h * w, hd)
    Q1, K1 = apply_rotary(q.expand(h * w, hd).clone(), cos, sin), apply_rotary(k.expand(h * w, hd).clone(), cos, sin)
    assert abs(float(Q1[0] @ K1[w]) - float(Q1[1] @ K1[w + 1])) < 1e-4


def test_2d_rope_on_a_one_row_grid_is_1d_rope_of_half_the_head():
    """On a 1 × w grid the column pairs (k < hd/4, i.e. channels [0, hd/4) and [hd/2, 3hd/4)) are exactly 1-D RoPE
    of a head of hd/2 channels, and the row pairs do not turn; on an h × 1 grid it is the other way round."""
    g = torch.Generator().manual_seed(1)
    hd, n = 16, 7
    x = torch.randn(2, 3, n, hd, generator=g)                       # (N, heads, L, hd)
    col = list(range(hd // 4)) + list(range(hd // 2, 3 * hd // 4))
    row = [c for c in range(hd) if c not in col]
    cos1, sin1 = rotary_cos_sin(n, hd // 2)
    one_row = _rotate(x, 1, n)
    torch.testing.assert_close(one_row[..., col], apply_rotary(x[..., col], cos1, sin1))
    torch.testing.assert_close(one_row[..., row], x[..., row])
    one_col = _rotate(x, n, 1)
    torch.testing.assert_close(one_col[..., row], apply_rotary(x[..., row], cos1, sin1))
    torch.testing.assert_close(one_col[..., col], x[..., col])
    with pytest.raises(ValueError, match="divisible by 4"):
        rotary_cos_sin_2d(2, 2, 6)


def test_the_label_enters_only_through_the_conditioning_vector():
    """With the label embedding set to zero, TokenSEDD (1-D RoPE) is SEDD with the same weights: the base network is
    unchanged; a non-zero embedding changes the scores per label, and the entry at the current token stays 0."""
    cfg = token_config("tiny", vocab_size=12, seq_len=16, num_classes=3)
    torch.manual_seed(0)
    m = TokenSEDD(cfg).eval()
    for p in m.parameters():                                        # adaLN-zero: give the blocks some weight
        torch.nn.init.normal_(p, std=0.05) if p.ndim > 1 else None
    base = SEDD(cfg).eval()
    base.load_state_dict({k: v for k, v in m.state_dict().items() if not k.startswith("label_embed")})
    x, s = torch.randint(0, 13, (4, 16)), torch.rand(4) + 0.1
    with torch.no_grad():
        m.label_embed.weight.zero_()
        torch.testing.assert_close(m(x, s, torch.tensor([0, 1, 2, 3])), base(x, s))
        torch.nn.init.normal_(m.label_embed.weight)
        a, b = m(x, s, torch.zeros(4, dtype=torch.long)), m(x, s, torch.ones(4, dtype=torch.long))
    assert (a - b).abs().max() > 1e-3
    assert (a.gather(-1, x[..., None]) == 0).all()
    with pytest.raises(ValueError, match="labels must lie in"):
        m(x, s, torch.tensor([0, 1, 2, 4]))
    with pytest.raises(ValueError, match="integer tensor of shape"):
        m(x, s, torch.zeros(4))


def test_guidance_is_the_geometric_combination_of_the_scores():
    """log s = (1 + w) log s_c − w log s_u (seed 004): checked against two separate forwards; w = 0 is s_c."""
    cfg = token_config("tiny", vocab_size=8, seq_len=9, num_classes=2, rope="2d")
    torch.manual_seed(0)
    m = TokenSEDD(cfg).eval()
    for p in m.parameters():
        torch.nn.init.normal_(p, std=0.1) if p.ndim > 1 else None
    x, s, y = torch.randint(0, 9, (3, 9)), torch.rand(3) + 0.1, torch.tensor([0, 1, 0])
    with torch.no_grad():
        c, u = m(x, s, y), m(x, s, torch.full((3,), 2))
        torch.testing.assert_close(Guided(m, y, 0.0)(x, s), c)
        torch.testing.assert_close(Guided(m, y, 1.5)(x, s), 2.5 * c - 1.5 * u, rtol=1e-5, atol=1e-5)


def test_masked_ce_closed_forms():
    """Uniform logits give exactly log V; logits that put everything on the true token give ~0; the number of
    masked positions is ⌈r·L⌉ with r = cos(π/2·u), and E[r] = 2/π."""
    V, L = 10, 20
    x0 = torch.randint(0, V, (64, L), generator=torch.Generator().manual_seed(0))
    seen = {}

    def uniform(xt, sigma, labels):
        seen["masked"] = (xt == V).sum(1)
        seen["sigma"] = sigma
        return torch.zeros(*xt.shape, V + 1)

    def oracle(xt, sigma, labels):
        return 50.0 * torch.nn.functional.one_hot(x0, V + 1).float()

    g = torch.Generator().manual_seed(1)
    loss = masked_ce_loss(uniform, x0, torch.zeros(64, dtype=torch.long), V, 7.0, generator=g)
    torch.testing.assert_close(loss, torch.full((64,), math.log(V)))
    g = torch.Generator().manual_seed(1)
    u = torch.rand(64, generator=g)
    expect = torch.ceil(torch.cos(math.pi / 2 * u) * L).clamp(1, L)
    assert (seen["masked"] == expect).all()
    frac = expect / L
    assert torch.allclose(seen["sigma"], torch.where(frac < 1, -torch.log1p(-frac.clamp(max=1 - 1e-6)),
                                                     torch.tensor(7.0)).clamp(max=7.0))
    assert masked_ce_loss(oracle, x0, torch.zeros(64, dtype=torch.long), V, 7.0).max() < 1e-6
    r = mask_ratio(torch.rand(200_000, generator=torch.Generator().manual_seed(2)))
    assert abs(float(r.mean()) - 2 / math.pi) < 0.005


def _two_class_data(n: int, V: int, L: int, seed: int = 0):
    """Class 0: every token in {0, 1}; class 1: every token in {V−2, V−1} (independent, uniform)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    tok = torch.randint(0, 2, (n, L), generator=g) + torch.where(y[:, None] == 1, V - 2, 0)
    return tok, y


@pytest.mark.parametrize("graph, objective, sampler, rope", [
    ("absorb", "score-entropy", "analytic", "2d"), ("uniform", "score-entropy", "analytic", "1d"),
    ("absorb", "masked-ce", "maskgit", "1d")])
def test_a_trained_model_draws_its_class_and_the_null_label_draws_both(graph, objective, sampler, rope):
    """Known law: labelled samples stay in their class's two tokens; guidance keeps them there; the null label
    (trained through label dropout) draws both classes, each sample from one class (the tokens are not mixed)."""
    V, L = 8, 16
    tok, y = _two_class_data(512, V, L)
    cfg = token_config("tiny", vocab_size=V, seq_len=L, num_classes=2, rope=rope, graph=graph)
    tc = TokenTrainConfig(steps=400, batch_size=64, lr=3e-3, warmup=20, ema=0.99, objective=objective,
                          label_dropout=0.2, log_every=50)
    _, ema = train_token_model(tok, y, cfg, tc, device="cpu")
    labels = torch.tensor([0] * 16 + [1] * 16)
    for w in (0.0, 2.0):
        out = sample_tokens(ema, labels, sampler=sampler, steps=16, cfg_scale=w, device="cpu", batch_size=11)
        assert (out[:16] < 2).float().mean() > 0.95 and (out[16:] >= V - 2).float().mean() > 0.95, w
    free = sample_tokens(ema, torch.full((40,), 2), sampler=sampler, steps=16, device="cpu")
    low = (free < 2).float().mean(1)
    assert 0.15 < float((low > 0.5).float().mean()) < 0.85                   # both classes drawn
    # each sample mostly one class: tokens drawn independently of each other would give this for ~2 % of samples
    assert float(((low > 0.8) | (low < 0.2)).float().mean()) > 0.6


def test_sampling_is_independent_of_the_batch_size_and_checkpoints_round_trip(tmp_path):
    cfg = token_config("tiny", vocab_size=8, seq_len=9, num_classes=3, rope="2d")
    torch.manual_seed(0)
    m = TokenSEDD(cfg).eval()
    for p in m.parameters():
        torch.nn.init.normal_(p, std=0.1) if p.ndim > 1 else None
    labels = torch.tensor([0, 1, 2, 3, 1, 0, 2])
    a = sample_tokens(m, labels, steps=6, cfg_scale=1.0, seed=3, batch_size=7, device="cpu")
    b = sample_tokens(m, labels, steps=6, cfg_scale=1.0, seed=3, batch_size=2, device="cpu")
    assert torch.equal(a, b) and a.shape == (7, 9) and int(a.max()) < 8
    tail = sample_tokens(m, labels[4:], steps=6, cfg_scale=1.0, seed=3, start_index=4, device="cpu")
    assert torch.equal(tail, a[4:])
    save_token_model(tmp_path / "m", m)
    m2, meta = load_token_model(tmp_path / "m")
    assert meta["kind"] == "token-sedd" and m2.config == cfg
    assert torch.equal(sample_tokens(m2, labels, steps=6, cfg_scale=1.0, seed=3, device="cpu"), a)


def test_bad_configs_name_the_fix():
    with pytest.raises(ConfigError, match="grid"):
        token_config("tiny", seq_len=10, vocab_size=4)                       # not a square
    assert token_config("tiny", seq_len=10, vocab_size=4, grid_h=2).grid == (2, 5)
    with pytest.raises(ConfigError, match="multiple of 4"):
        token_config("tiny", seq_len=16, vocab_size=4, hidden=12, n_heads=2, rope="2d")
    with pytest.raises(ConfigError, match="rope"):
        token_config("tiny", seq_len=16, vocab_size=4, rope="3d")
    with pytest.raises(ConfigError, match="objective"):
        TokenTrainConfig(objective="ce")
    cfg = token_config("tiny", vocab_size=4, seq_len=4, num_classes=2, graph="uniform")
    with pytest.raises(ConfigError, match="no mask token"):
        train_token_model(torch.zeros(8, 4, dtype=torch.long), torch.zeros(8, dtype=torch.long), cfg,
                          TokenTrainConfig(steps=1, batch_size=4, objective="masked-ce"), device="cpu")
    with pytest.raises(ValueError, match="num_classes"):
        train_token_model(torch.zeros(8, 4, dtype=torch.long), torch.full((8,), 2), cfg,
                          TokenTrainConfig(steps=1, batch_size=4), device="cpu")
