"""composition's pieces on cases with a known answer: the pairs, the composed conditions, and the attribute-level
measures read from exact renders of known factor combinations; the run itself is in test_pipeline.py (it reuses
the pipeline's stages)."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from bench.config import load_config
from bench.experiment import get_experiment
from bench.experiments.composition import choose_pairs, conditions, pair_measures


def _factors(n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {f: torch.randint(0, 3, (n,), generator=g) for f in ("shape", "colour", "size", "x")}


def test_pairs_differ_in_enough_factors_are_disjoint_and_repeatable():
    f = _factors()
    pairs = choose_pairs(f, 40, 8, 3, seed=1)
    assert pairs.shape == (8, 2) and len(set(pairs.ravel())) == 16
    fa = np.stack([v.numpy() for v in f.values()], 1)
    assert all((fa[a] != fa[b]).sum() >= 3 for a, b in pairs)
    assert (choose_pairs(f, 40, 8, 3, seed=1) == pairs).all() and not (choose_pairs(f, 40, 8, 3, seed=2) == pairs).all()
    assert choose_pairs({}, 40, 5, 3, seed=0).shape == (5, 2)          # no labels: pairs of the permutation
    with pytest.raises(Exception, match="only"):
        choose_pairs(f, 40, 8, 5, seed=1)                               # 4 factors cannot differ in 5


def test_composed_conditions_take_each_position_from_a_source():
    L, V, K = 12, 5, 6
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, V, (10, L), generator=g)
    soft = torch.softmax(torch.randn(10, L, V, generator=g), -1)
    src = SimpleNamespace(codes={"test": SimpleNamespace(tokens=tokens, soft=soft)}, k_codes="k")
    cfg = SimpleNamespace(soft_temperature=1.0, encoder=SimpleNamespace(tau=1.0))
    pairs = np.array([[0, 1], [2, 3]])
    mixed, keys = conditions("dlc", src, pairs, K, cfg, seed=0)
    assert mixed.shape == (2 * K, L) and keys == ["k"]
    for p, (a, b) in enumerate(pairs):
        rows = mixed[p * K:(p + 1) * K]
        assert ((rows == tokens[a]) | (rows == tokens[b])).all()
        assert (rows == tokens[a]).any() and (rows == tokens[b]).any()       # both sources contribute
    single, _ = conditions("dlc-single", src, pairs, K, cfg, seed=0)
    assert (single == tokens[[0] * K + [2] * K]).all()
    softmix, _ = conditions("dlc-soft", src, pairs, K, cfg, seed=0)
    assert softmix.shape == (2 * K, L) and int(softmix.max()) < V
    # sampling the average of two distributions: a token neither source puts mass on never appears
    onehot = torch.nn.functional.one_hot(tokens, V).double()
    src.codes["test"].soft = onehot
    hard, _ = conditions("dlc-soft", src, pairs, K, cfg, seed=0)
    assert ((hard[:K] == tokens[0]) | (hard[:K] == tokens[1])).all()


def test_measures_of_exact_renders_of_known_combinations():
    """Samples rendered with known factors and read back exactly: a copy of a, a mix, a sample with a factor
    neither source has, and one whose combination no training image has."""
    from bench.metrics.factors import ShapesRenderReader
    from dlc.data.shapes import render_shapes

    names = ["shape", "colour", "size", "x", "y", "background"]
    a, b = [0, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1]
    samples = [a, [0, 1, 0, 1, 0, 1], [2, 0, 0, 0, 0, 0], [1, 0, 1, 0, 1, 0]]     # copy, mix, foreign, mix
    source = {f: np.array([a[i], b[i]]) for i, f in enumerate(names)}
    imgs = render_shapes({f: torch.tensor([s[i] for s in samples]) for i, f in enumerate(names)}, 32, 3)
    read = ShapesRenderReader(32).read(imgs).factors
    assert [list(r) for r in zip(*(read[f] for f in names))] == samples
    train_combos = {tuple(a), tuple(b), (0, 1, 0, 1, 0, 1), (2, 0, 0, 0, 0, 0)}   # the last sample is novel
    m = pair_measures({f: read[f] for f in names}, source, np.array([[0, 1]]), 4, train_combos)
    assert m["mix_frac"].tolist() == [0.5] and m["from_sources_frac"].tolist() == [0.75]
    assert m["copy_source_frac"].tolist() == [0.25] and m["novel_combo_frac"].tolist() == [0.25]


@pytest.mark.parametrize("override, message", [
    ("methods=[dlc, dlcsoft]", "dlc-soft"),
    ("k_samples=1", "k_samples"),
    ("n_pairs=40", "held-out images"),
    ("factors=[colour, size]", "exceeds the 2 factors"),
])
def test_bad_composition_configs_are_rejected_with_the_fix(override, message):
    from bench.errors import UserError

    exp = get_experiment("composition")
    with pytest.raises((UserError, ValueError), match=message):
        load_config(exp.config_cls, "composition", "smoke", [override])


def test_composition_presets_train_exactly_the_pipeline_s_stages():
    comp, pipe = get_experiment("composition"), get_experiment("dlc-pipeline")
    for preset in ("smoke", "laptop", "paper"):
        a, _ = load_config(comp.config_cls, "composition", preset, [])
        b, _ = load_config(pipe.config_cls, "dlc-pipeline", preset, [])
        for group in ("data", "encoder", "prior", "dit", "representation"):
            assert getattr(a, group) == getattr(b, group), (preset, group)
