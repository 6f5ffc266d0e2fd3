"""eta-sweep's statistics (paired resamples of FD over a grid, the optimum and the shape of the curve) on cases
with a known answer, and its config checks; the run itself is in test_pipeline.py (it reuses the pipeline's
stages)."""
from __future__ import annotations

import numpy as np
import pytest

from bench.aggregate import grid_optimum
from bench.config import load_config
from bench.experiment import get_experiment
from bench.metrics.frechet import fd, fd_difference_ci, fd_paired_resamples


def _gauss(n, d, shift, seed, noise=None):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)) if noise is None else noise
    return x + shift


def test_paired_resamples_reproduce_each_fd_and_the_paired_difference():
    real = _gauss(600, 16, 0.0, 0)
    noise = np.random.default_rng(1).standard_normal((300, 16))
    fakes = [noise + s for s in (0.5, 0.0, 0.5 + 1e-9)]
    values, res = fd_paired_resamples(real=real, fakes=fakes, n_resamples=40, seed=3)
    assert values == pytest.approx([fd(real=real, fake=f) for f in fakes], rel=1e-9)
    assert res.shape == (40, 3)
    assert np.allclose(res[:, 0], res[:, 2], atol=1e-6)       # the same samples, shifted by 1e-9: the same draws
    ci = fd_difference_ci(real=real, fake_a=fakes[0], fake_b=fakes[1], n_resamples=40, seed=3)
    d = res[:, 1] - res[:, 0]
    assert ci.value == pytest.approx(values[1] - values[0])
    shift = ci.value - np.median(d)                             # recentred percentile interval of the same draws
    assert (ci.low, ci.high) == pytest.approx(tuple(np.quantile(d, [0.025, 0.975]) + shift))
    with pytest.raises(Exception, match="one size"):
        fd_paired_resamples(real=real, fakes=[fakes[0], fakes[1][:200]], n_resamples=5)


def test_a_u_shaped_grid_is_found_with_its_optimum():
    """Mean shifts 0.6, 0.3, 0, 0.3, 0.6 from the reference: FD ≈ d·shift², lowest in the middle."""
    real = _gauss(2000, 8, 0.0, 0)
    noise = np.random.default_rng(5).standard_normal((400, 8))
    shifts = [0.6, 0.3, 0.0, 0.3, 0.6]
    values, res = fd_paired_resamples(real=real, fakes=[noise + s for s in shifts], n_resamples=100, seed=0)
    opt = grid_optimum(values, res)
    assert opt["best"] == 2 and opt["shape"] == "U-shaped"
    assert opt["best_frac"][2] > 0.9 and opt["best_frac"].sum() == pytest.approx(1.0)
    assert opt["vs_best"][0][1] > 0 and opt["vs_best"][4][1] > 0          # both ends significantly worse
    assert opt["vs_first"][0].tolist() == [0.0, 0.0, 0.0] and opt["vs_first"][2][2] < 0
    assert 2 in opt["tied"] and 0 not in opt["tied"]


@pytest.mark.parametrize("shifts, shape", [([0.0, 0.3, 0.6], "monotone"), ([0.6, 0.3, 0.0], "monotone"),
                                           ([0.0, 0.0, 0.0], "flat")])
def test_grids_without_an_inner_optimum_are_not_called_u_shaped(shifts, shape):
    real = _gauss(2000, 8, 0.0, 0)
    noise = np.random.default_rng(5).standard_normal((400, 8))
    fakes = [noise + s + 1e-6 * i for i, s in enumerate(shifts)]   # flat: the same set (tiny offsets, no ties)
    opt = grid_optimum(*fd_paired_resamples(real=real, fakes=fakes, n_resamples=60, seed=0))
    assert opt["shape"] == shape
    if shape == "flat":
        assert opt["tied"] == [0, 1, 2]


def test_an_inner_optimum_within_an_end_s_interval_is_undecided():
    values = np.array([1.0, 0.9, 2.0])
    res = values + np.random.default_rng(0).normal(0, 0.5, (200, 1)) * np.array([1.0, 1.0, 0.0])
    res[:, 0] += np.random.default_rng(1).normal(0, 0.5, 200)       # the first point's difference is noisy
    assert grid_optimum(values, res)["shape"] == "undecided"


def test_eta_findings_say_reproduced_only_for_a_u_shape_around_0_01():
    from bench.experiments.eta_sweep_report import eta_findings

    etas = [0.0, 0.01, 0.1]
    base = {"best": 1, "best_frac": np.array([0.0, 0.9, 0.1]), "tied": [1],
            "vs_best": np.array([[3.0, 1.0, 5.0], [0, 0, 0], [2.0, 0.5, 4.0]]),
            "vs_first": np.array([[0, 0, 0], [-3.0, -5.0, -1.0], [-1.0, -3.0, 1.0]])}
    text = " ".join(eta_findings(etas, {**base, "shape": "U-shaped"}, "fd_effnet", 0, 200, window_steps=64))
    assert "is U-shaped" in text and "a U-shaped curve: reproduced at this scale" in text
    assert "optimum at η = 0.01: reproduced (here η = 0.01)" in text and "the optimum here is 0.64" in text
    assert "significantly against η = 0 at η = 0.01 (-3 [-5, -1])" in text
    text = " ".join(eta_findings(etas, {**base, "shape": "undecided"}, "fd_effnet", 0, 200))
    assert "not established" in text and "a U-shaped curve: not reproduced" in text
    moved = {**base, "shape": "U-shaped", "best": 2, "tied": [2]}        # a U-shape with its optimum elsewhere
    text = " ".join(eta_findings([0.0, 0.01, 0.3, 0.9], {**moved, "best_frac": np.array([0, 0, 1.0, 0]),
                                 "vs_best": np.zeros((4, 3)) + [1, 0.5, 2], "vs_first": np.zeros((4, 3))},
                                 "fd_effnet", 0, 200))
    assert "a U-shaped curve: reproduced" in text and "optimum at η = 0.01: not reproduced (here η = 0.3)" in text


@pytest.mark.parametrize("override, message", [
    ("etas=[0.01, 0.1, 0.3]", "including 0"),
    ("etas=[0.0, 0.1]", "≥ 3"),
    ("etas=[0.0, 0.3, 0.1]", "increasing"),
    ("prior_sampling.sampler=analytic", "does not remask"),
    ("eval.variants=[dlc, unconditional]", "must be dlc"),
])
def test_bad_eta_sweep_configs_are_rejected_with_the_fix(override, message):
    from bench.errors import UserError

    exp = get_experiment("eta-sweep")
    with pytest.raises((UserError, ValueError), match=message):
        load_config(exp.config_cls, "eta-sweep", "smoke", [override])


def test_eta_sweep_presets_train_exactly_the_pipeline_s_stages():
    """Every stage config the sweep trains equals dlc-pipeline's of the same scale, so it retrains nothing."""
    sweep, pipe = get_experiment("eta-sweep"), get_experiment("dlc-pipeline")
    for preset in ("smoke", "laptop", "paper"):
        a, _ = load_config(sweep.config_cls, "eta-sweep", preset, [])
        b, _ = load_config(pipe.config_cls, "dlc-pipeline", preset, [])
        for group in ("data", "encoder", "prior", "dit"):
            assert getattr(a, group) == getattr(b, group), (preset, group)
