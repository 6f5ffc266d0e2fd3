"""Precision/recall against torch-fidelity; density/coverage against a brute-force Naeem et al. reference."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

from bench.errors import UserError
from bench.metrics import density_coverage, prdc, precision_recall


@pytest.fixture(scope="module")
def feats():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(400, 16))
    fake = rng.normal(size=(300, 16)) * 0.8 + 0.4
    return real, fake


def _naeem_reference(real, fake, k):
    """clovaai/generative-evaluation-prdc's formulas on full scipy distance matrices."""
    d_rr, d_ff, d_rf = cdist(real, real), cdist(fake, fake), cdist(real, fake)
    r_real = np.sort(d_rr, axis=1)[:, k]  # k-th neighbour excluding self (index 0 = self)
    r_fake = np.sort(d_ff, axis=1)[:, k]
    return {
        "precision_lt": (d_rf < r_real[:, None]).any(0).mean(),
        "recall_lt": (d_rf < r_fake[None, :]).any(1).mean(),
        "density": (d_rf < r_real[:, None]).sum(0).mean() / k,
        "coverage": (d_rf.min(1) < r_real).mean(),
    }


def test_precision_recall_equal_torch_fidelity(feats):
    from torch_fidelity.metric_prc import calculate_precision_recall_full

    real, fake = feats
    p_ref, r_ref = calculate_precision_recall_full(torch.from_numpy(fake), torch.from_numpy(real), neighborhood=3)
    ours = precision_recall(real=real, fake=fake)
    # torch-fidelity averages in float32: compare the counts
    assert round(ours["precision"] * len(fake)) == round(p_ref * len(fake))
    assert round(ours["recall"] * len(real)) == round(r_ref * len(real))
    assert 0.05 < ours["precision"] < 0.95 and 0.05 < ours["recall"] < 0.95  # a non-trivial fixture


def test_density_coverage_equal_naeem_reference(feats):
    real, fake = feats
    ref = _naeem_reference(real, fake, k=5)
    ours = density_coverage(real=real, fake=fake)
    assert ours["density"] == pytest.approx(ref["density"], abs=1e-12)
    assert ours["coverage"] == pytest.approx(ref["coverage"], abs=1e-12)
    assert 0.05 < ours["coverage"] < 0.95


def test_blocking_does_not_change_results(feats):
    real, fake = feats[0][:80], feats[1][:60]
    full = prdc(real=real, fake=fake)
    for block in (7, 200, 1000):  # row blocks of 1, 2-3 and 12-16 rows
        assert prdc(real=real, fake=fake, max_block_elems=block) == full


def test_identical_sets_and_disjoint_sets(feats):
    real, _ = feats
    same = prdc(real=real, fake=real.copy())
    assert same["precision"] == 1.0 and same["recall"] == 1.0 and same["coverage"] == 1.0
    far = prdc(real=real, fake=real + 1000.0)
    assert far["precision"] == far["recall"] == far["density"] == far["coverage"] == 0.0


def test_tie_conventions_le_for_pr_lt_for_density():
    """1-D real points 0, 2, 4, 6 (3rd-NN radius of point 0 is 6); a fake point exactly on a ball boundary."""
    real = np.array([[0.0], [2.0], [4.0], [6.0]])
    fake = np.array([[-6.0], [100.0], [101.0], [102.0]])  # -6 is at distance 6 from 0: on the boundary
    out = prdc(real=real, fake=fake, k_pr=3, k_dc=3)
    assert out["precision"] == 0.25  # `<=` counts the boundary point
    assert out["density"] == 0.0  # `<` does not


def test_tie_conventions_one_exact_tie_per_metric():
    """Each metric has exactly one pair at distance equal to the radius, so flipping any one comparison in
    bench/metrics/prdc.py (`<=` ↔ `<`) changes that metric. 1-D integers: the squared distances are exact.
    Default k: 3 for precision/recall, 5 for density/coverage (radius = distance to the k-th other point).
    - precision `<=`: fake 12 lies on the ball of real 9 (radius 3)                  → 2/7 (1/7 with `<`)
    - recall `<=`: real 5 lies on the ball of fake 11 (radius 6 among the fakes)      → 5/7 (4/7 with `<`)
    - density `<`: fake 11 lies on the 5-NN ball of real 7 (radius 4)                 → 5/35 (6/35 with `<=`)
    - coverage `<`: real 7's nearest fake, 11, is exactly at its 5-NN radius 4         → 2/7 (3/7 with `<=`)
    Checked by running the official `prdc` package (clovaai, 0.2, `<` throughout) on these points: density and
    coverage (nearest_k=5) as here, precision 1/7 and recall 4/7 (nearest_k=3, its `<`); `<=` is ADM's and
    torch-fidelity's rule for precision/recall (compared below)."""
    from torch_fidelity.metric_prc import calculate_precision_recall_full

    real = np.array([0, 3, 5, 6, 7, 8, 9], dtype=np.float64)[:, None]
    fake = np.array([11, 12, 14, 17, 18, 22, 23], dtype=np.float64)[:, None]
    out = prdc(real=real, fake=fake)
    assert round(out["precision"] * 7, 9) == 2 and round(out["recall"] * 7, 9) == 5
    assert round(out["density"] * 35, 9) == 5 and round(out["coverage"] * 7, 9) == 2
    ref5, ref3 = _naeem_reference(real, fake, k=5), _naeem_reference(real, fake, k=3)   # `<` throughout
    assert out["density"] == pytest.approx(ref5["density"], abs=1e-12) and out["coverage"] == ref5["coverage"]
    assert (round(ref3["precision_lt"] * 7, 9), round(ref3["recall_lt"] * 7, 9)) == (1, 4)   # the ties matter
    p_ref, r_ref = calculate_precision_recall_full(torch.from_numpy(fake), torch.from_numpy(real), neighborhood=3)
    assert (round(p_ref * 7), round(r_ref * 7)) == (2, 5)
    assert precision_recall(real=real, fake=fake) == {k: out[k] for k in ("precision", "recall", "f_score")}
    assert density_coverage(real=real, fake=fake) == {k: out[k] for k in ("density", "coverage")}


def test_keyword_only_and_bad_input(feats):
    real, fake = feats
    with pytest.raises(TypeError):
        prdc(real, fake)  # noqa: keyword-only
    with pytest.raises(UserError, match="5 samples; this metric needs at least 6"):
        prdc(real=real, fake=fake[:5])
    with pytest.raises(UserError, match="real has d=16, fake has d=15"):
        precision_recall(real=real, fake=fake[:, :15])
    bad = fake.copy()
    bad[3, 2] = np.nan
    with pytest.raises(UserError, match="NaN/inf"):
        density_coverage(real=real, fake=bad)
