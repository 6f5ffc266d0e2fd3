"""Linear probe: separable data → 100 %, random labels → chance, sparse one-hot tokens."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse

from bench.errors import UserError
from bench.metrics import linear_probe, one_hot_tokens
from bench.metrics.probe import random_split

CS = (0.01, 0.1, 1.0)


def test_one_hot_tokens_matches_dense_reference():
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 7, size=(20, 5))
    oh = one_hot_tokens(tokens, 7)
    assert scipy.sparse.issparse(oh) and oh.shape == (20, 35) and oh.nnz == 100
    dense = np.eye(7)[tokens].reshape(20, 35)  # (N, L, V) -> (N, L·V)
    np.testing.assert_array_equal(oh.toarray(), dense)


def test_separable_features_give_100_percent():
    rng = np.random.default_rng(1)
    centers = rng.normal(scale=10.0, size=(6, 20))
    y = rng.integers(0, 6, 600)
    x = centers[y] + rng.normal(size=(600, 20))
    out = linear_probe(x, y, Cs=CS, seed=0)
    assert out.top1 == 1.0 and out.top5 == 1.0
    assert out.n_train + out.n_val + out.n_test == 600 and out.n_classes == 6 and out.n_features == 20
    assert set(out.val_top1) == set(CS) and out.C in CS


def test_random_labels_give_chance():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(1500, 10))
    y = rng.integers(0, 10, 1500)
    out = linear_probe(x, y, Cs=(0.01, 1.0), seed=0)
    assert 0.04 < out.top1 < 0.17  # chance = 0.10 on 300 test samples (±3.5σ)
    assert 0.38 < out.top5 < 0.62  # chance = 0.50


def test_tokens_that_determine_the_label_give_100_percent():
    rng = np.random.default_rng(3)
    tokens = rng.integers(0, 16, size=(800, 8))
    y = tokens[:, 2] % 4  # label is a function of one position
    out = linear_probe(tokens, y, vocab_size=16, Cs=CS, seed=0)
    assert out.top1 == 1.0
    assert out.n_features == 8 * 16
    shuffled = linear_probe(tokens, rng.permutation(y), vocab_size=16, Cs=CS, seed=0)
    assert shuffled.top1 < 0.45  # chance = 0.25


def test_given_split_is_used_and_seeded_split_is_disjoint():
    sp = random_split(100, 0.1, 0.2, seed=5)
    allidx = np.concatenate([sp["train"], sp["val"], sp["test"]])
    assert np.array_equal(np.sort(allidx), np.arange(100)) and sp["test"].size == 20 and sp["val"].size == 10
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(60, 3)), np.arange(60) % 3
    out = linear_probe(x, y, split={"train": np.arange(40), "val": np.arange(40, 45), "test": np.arange(45, 60)},
                       Cs=(1.0,))
    assert (out.n_train, out.n_val, out.n_test) == (40, 5, 15)
    assert out.top5 == 1.0  # 3 classes: top-5 is top-3


def test_bad_input():
    rng = np.random.default_rng(5)
    with pytest.raises(UserError, match=r"token 9 out of range \[0, 8\)"):
        linear_probe(np.full((30, 4), 9), np.arange(30) % 2, vocab_size=8)
    with pytest.raises(UserError, match="one label per sample"):
        linear_probe(rng.normal(size=(30, 4)), np.arange(29) % 2)
    with pytest.raises(UserError, match="must be integers"):
        one_hot_tokens(np.zeros((3, 2), dtype=np.float32), 4)
    with pytest.raises(UserError, match="missing"):
        linear_probe(rng.normal(size=(30, 4)), np.arange(30) % 2, split={"train": np.arange(10)})
    with pytest.raises(UserError, match="1 class"):
        linear_probe(rng.normal(size=(30, 4)), np.zeros(30, dtype=int))
