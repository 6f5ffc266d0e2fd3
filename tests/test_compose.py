"""dlc.compose: per-position uniform source choice, averaged-soft sampling at a temperature (the DLC reference
recipe), re-tempering, continuous averaging; statistics checked with chi-square tests against exact frequencies."""
import numpy as np
import pytest
import torch
from scipy.stats import chisquare

from dlc.compose import (average_soft, compose_continuous, compose_soft, compose_tokens, retemper,
                         sample_positions)

K, L, V = 3, 6, 10
SOURCES = torch.tensor([[0, 1, 2, 3, 4, 5],
                        [6, 7, 8, 9, 0, 1],
                        [2, 3, 4, 5, 6, 1]])                                # position 5: token 1 from two sources


def _freqs(samples: torch.Tensor, pos: int) -> np.ndarray:
    return np.bincount(samples[:, pos].numpy(), minlength=V)


def _expected_uniform_choice(pos: int) -> np.ndarray:
    p = np.zeros(V)
    for k in range(K):
        p[int(SOURCES[k, pos])] += 1 / K
    return p


def _chi2_ok(counts: np.ndarray, probs: np.ndarray) -> float:
    keep = probs > 0
    assert counts[~keep].sum() == 0                                      # never a token outside the support
    expected = probs[keep].astype(np.float64)
    return chisquare(counts[keep], expected / expected.sum() * counts.sum()).pvalue


def test_compose_tokens_take_each_source_with_prob_one_over_k():
    n = 3000
    out = compose_tokens(SOURCES, n, seed=0, V=V)
    assert out.shape == (n, L) and out.dtype == torch.long
    from_source = (out[:, None, :] == SOURCES[None]).any(1)               # (n, L): token belongs to some source
    assert from_source.all()
    for pos in range(L):
        assert _chi2_ok(_freqs(out, pos), _expected_uniform_choice(pos)) > 1e-3
    # positions choose independently: the pair (source at 0, source at 1) is uniform over K² cells
    which0 = (out[:, 0:1] == SOURCES[:, 0][None]).float().argmax(1)
    which1 = (out[:, 1:2] == SOURCES[:, 1][None]).float().argmax(1)
    cells = np.bincount((which0 * K + which1).numpy(), minlength=K * K)
    assert chisquare(cells).pvalue > 1e-3


def test_compose_depends_only_on_global_indices():
    full = compose_tokens(SOURCES, 40, seed=7)
    part = compose_tokens(SOURCES, seed=7, indices=range(25, 40))
    assert torch.equal(full[25:], part)
    assert not torch.equal(full, compose_tokens(SOURCES, 40, seed=8))
    soft = torch.softmax(torch.randn(K, L, V, generator=torch.Generator().manual_seed(0)), -1)
    a = compose_soft(soft, 30, temperature=0.5, seed=3)
    b = torch.cat([compose_soft(soft, temperature=0.5, seed=3, indices=range(s, s + 10)) for s in (0, 10, 20)])
    assert torch.equal(a, b)


def test_averaged_soft_at_zero_temperature_equals_uniform_source_choice():
    """Soft SEMs whose argmax is each source's token: at T → 0 the averaged-soft sample has the same distribution
    as compose_tokens (exact for T = 0, and for a tiny T)."""
    logits = torch.randn(K, L, V, generator=torch.Generator().manual_seed(1))
    logits.scatter_(2, SOURCES[..., None], 6.0)                           # argmax = the source token
    soft = torch.softmax(logits, -1)                                      # encoded at τ_s = 1
    n = 3000
    for temperature in (0.0, 1e-3):
        out = compose_soft(soft, n, temperature=temperature, seed=1)
        for pos in range(L):
            assert _chi2_ok(_freqs(out, pos), _expected_uniform_choice(pos)) > 1e-3


def test_averaged_soft_sampling_matches_the_average_distribution():
    g = torch.Generator().manual_seed(2)
    soft = torch.softmax(torch.randn(K, L, V, generator=g) * 2, -1)
    T = 0.7
    exact = np.mean([np_softmax(np.log(soft[k].double().numpy()) / T) for k in range(K)], axis=0)   # (L, V)
    torch.testing.assert_close(average_soft(soft, T), torch.from_numpy(exact))
    out = compose_soft(soft, 4000, temperature=T, seed=2)
    for pos in range(L):
        assert _chi2_ok(_freqs(out, pos), exact[pos]) > 1e-3
    # soft SEMs already at the wanted temperature are used as they are
    out2 = compose_soft(soft, 4000, seed=2)
    for pos in range(L):
        assert _chi2_ok(_freqs(out2, pos), soft[:, pos].double().mean(0).numpy()) > 1e-3


def np_softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_retemper_equals_softmax_at_the_new_temperature():
    logits = torch.randn(4, 5, 9, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    for ts, t in ((1.0, 0.3), (0.5, 2.0), (2.0, 2.0)):
        torch.testing.assert_close(retemper(torch.softmax(logits / ts, -1), t, ts), torch.softmax(logits / t, -1))
    onehot = torch.nn.functional.one_hot(logits.argmax(-1), 9).double()
    assert torch.equal(retemper(torch.softmax(logits, -1), 0.0), onehot)
    assert torch.equal(retemper(onehot, 5.0, source_temperature=0.0), onehot)


def test_sample_positions_matches_multinomial_probabilities():
    probs = torch.tensor([[0.5, 0.25, 0.25, 0.0], [0.0, 0.0, 0.0, 1.0], [0.1, 0.2, 0.3, 0.4]])
    out = sample_positions(probs, 4000, seed=4)
    assert (out[:, 1] == 3).all()
    for pos in (0, 2):
        counts = np.bincount(out[:, pos].numpy(), minlength=4)
        assert _chi2_ok(counts, probs[pos].numpy()) > 1e-3


def test_compose_continuous_averages():
    e = torch.tensor([[1.0, 2.0], [3.0, 6.0]])
    torch.testing.assert_close(compose_continuous(e), torch.tensor([2.0, 4.0]))
    torch.testing.assert_close(compose_continuous(e, weights=[3, 1]), torch.tensor([1.5, 3.0]))


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"\(K, L\)"):
        compose_tokens(torch.rand(3, 4), 2)
    with pytest.raises(ValueError, match=r"\[0, V=5\)"):
        compose_tokens(torch.tensor([[0, 5]]), 2, V=5)
    with pytest.raises(ValueError, match="n ≥ 1"):
        compose_tokens(SOURCES)
    with pytest.raises(ValueError, match="agree"):
        compose_tokens(SOURCES, 3, indices=[0, 1])
    with pytest.raises(ValueError, match="probabilities"):
        compose_soft(torch.rand(2, 3, 4) * 3, 2)
    with pytest.raises(ValueError, match=r"\(K, L, V\)"):
        compose_soft(torch.rand(3, 4), 2)
    with pytest.raises(ValueError, match="≥ 0"):
        retemper(torch.full((1, 2, 2), 0.5), -1.0)
    with pytest.raises(ValueError, match="weights"):
        compose_continuous(torch.ones(2, 3), weights=[1.0])
