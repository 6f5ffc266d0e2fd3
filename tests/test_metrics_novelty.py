"""Nearest-neighbour novelty against brute-force numpy cosine similarity, and the image grid layout."""
from __future__ import annotations

import numpy as np
import pytest

from bench.errors import UserError
from bench.metrics import nearest_neighbour_grid, nearest_neighbours, novelty


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    train = rng.normal(size=(500, 24)).astype(np.float32)
    gen = rng.normal(size=(40, 24)).astype(np.float32)
    gen[7] = train[123] * 3.0  # a (rescaled) copy of a training sample
    return train, gen


def test_matches_brute_force_cosine(data):
    train, gen = data
    sims, idx = nearest_neighbours(train=train, generated=gen, k=4)
    a = train.astype(np.float64) / np.linalg.norm(train, axis=1, keepdims=True)
    b = gen.astype(np.float64) / np.linalg.norm(gen, axis=1, keepdims=True)
    full = b @ a.T  # (40, 500)
    ref_idx = np.argsort(-full, axis=1)[:, :4]
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(sims, np.take_along_axis(full, ref_idx, 1), atol=1e-6)
    assert sims.dtype == np.float32 and idx.dtype == np.int64


def test_copied_sample_has_similarity_one_and_its_own_index(data):
    train, gen = data
    out = novelty(train=train, generated=gen, k=2, threshold=0.99)
    assert out.indices[7, 0] == 123
    assert out.max_sim[7] == pytest.approx(1.0, abs=1e-6)
    assert out.frac_above == pytest.approx(1 / 40)
    m = out.max_sim.astype(np.float64)
    assert out.mean == pytest.approx(m.mean(), rel=1e-12)
    assert out.quantiles[0.5] == pytest.approx(np.median(m), rel=1e-12)
    s = out.summary()
    assert s["n"] == 40 and s["threshold"] == 0.99 and "q0.95" in s


def test_gpu_request_without_gpu_is_a_clear_error(data):
    import faiss

    if faiss.get_num_gpus() > 0:
        pytest.skip("a GPU is visible")
    train, gen = data
    with pytest.raises(UserError, match="no GPU"):
        nearest_neighbours(train=train, generated=gen, use_gpu=True)


def test_bad_input(data):
    train, gen = data
    with pytest.raises(UserError, match="train has d=24, generated has d=23"):
        novelty(train=train, generated=gen[:, :23])
    with pytest.raises(UserError, match="k=501"):
        novelty(train=train, generated=gen, k=501)
    z = gen.copy()
    z[0] = 0
    with pytest.raises(UserError, match="all-zero rows"):
        novelty(train=train, generated=z)
    with pytest.raises(TypeError):
        novelty(train, gen)  # noqa: keyword-only


def test_grid_layout_nhwc_and_nchw():
    rng = np.random.default_rng(1)
    gen = rng.integers(0, 256, size=(3, 8, 6, 3), dtype=np.uint8)
    train = rng.integers(0, 256, size=(10, 8, 6, 3), dtype=np.uint8)
    idx = np.array([[4, 2], [0, 9], [7, 7]])
    grid = nearest_neighbour_grid(gen, train, idx, pad=2, gap=5)
    assert grid.dtype == np.uint8
    assert grid.shape == (2 + 3 * (8 + 2), 2 + (6 + 2) + 5 + 2 * (6 + 2), 3)
    for r in range(3):
        y = 2 + r * 10
        np.testing.assert_array_equal(grid[y:y + 8, 2:8], gen[r])
        for j in range(2):
            x = 2 + 8 + 5 + j * 8
            np.testing.assert_array_equal(grid[y:y + 8, x:x + 6], train[idx[r, j]])
    nchw = nearest_neighbour_grid(gen.transpose(0, 3, 1, 2), list(train.transpose(0, 3, 1, 2)), idx, pad=2, gap=5)
    np.testing.assert_array_equal(nchw, grid)
    one = nearest_neighbour_grid(gen, train, idx[:, 0], max_rows=2)
    assert one.shape[0] == 2 + 2 * 10


def test_grid_bad_input():
    gen = np.zeros((2, 8, 8, 3), dtype=np.uint8)
    with pytest.raises(UserError, match="uint8"):
        nearest_neighbour_grid(gen.astype(np.float32), gen, [0, 1])
    with pytest.raises(UserError, match="same size"):
        nearest_neighbour_grid(gen, np.zeros((2, 5, 5, 3), dtype=np.uint8), [0, 1])
    with pytest.raises(UserError, match="could be NCHW or NHWC"):        # the rule of bench.inputs: never guessed
        nearest_neighbour_grid(np.zeros((2, 3, 4, 3), dtype=np.uint8), gen, [0, 1])
    with pytest.raises(UserError, match="N = 2 generated"):
        nearest_neighbour_grid(gen, gen, [0, 1, 1])
