"""The metric registry: keys, specs, did-you-mean, grouped computation, input and sample-count checks."""
from __future__ import annotations

import inspect

import numpy as np
import pytest

from bench import metrics as M
from bench.errors import UserError
from bench.metrics import GROUPS, METRICS, MetricSpec, compute_metrics

EXPECTED = {"fd", "fd_inf", "is_adm", "is_fidelity", "kid", "precision", "recall", "density", "coverage", "vendi",
            "probe_top1", "probe_top5", "nn_max_sim", "nn_copy_frac"}


def test_keys_and_spec_fields():
    assert EXPECTED <= set(METRICS.names())
    for key, spec in METRICS.items():
        assert isinstance(spec, MetricSpec) and spec.key == key
        assert spec.higher_is_better in (True, False, None)
        assert isinstance(spec.version, int) and spec.version >= 1
        assert spec.description and spec.min_samples >= 1
        assert spec.group is None or spec.group in GROUPS
    assert METRICS.get("fd").higher_is_better is False and METRICS.get("precision").higher_is_better is True


def test_unknown_key_did_you_mean():
    with pytest.raises(UserError, match="Did you mean 'precision'"):
        METRICS.get("presicion")
    with pytest.raises(UserError, match="unknown metric"):
        compute_metrics(["fid_inf"], real=np.zeros((3, 2)), fake=np.zeros((3, 2)))


def test_module_level_functions_take_real_and_fake_as_keywords_only():
    for fn in (M.fd, M.fd_infinity, M.kid, M.prdc, M.precision_recall, M.density_coverage):
        params = inspect.signature(fn).parameters
        assert params["real"].kind is inspect.Parameter.KEYWORD_ONLY, fn.__name__
        assert params["fake"].kind is inspect.Parameter.KEYWORD_ONLY, fn.__name__


def test_compute_metrics_values_match_direct_calls_and_groups_run_once(monkeypatch):
    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=(120, 6)), rng.normal(size=(100, 6)) + 0.3
    calls = []
    original = GROUPS["prdc"]
    monkeypatch.setitem(GROUPS, "prdc", lambda **kw: calls.append(1) or original(**kw))
    out = compute_metrics(["fd", "precision", "recall", "density", "coverage", "vendi"], real=real, fake=fake)
    assert len(calls) == 1
    ref = M.prdc(real=real, fake=fake)
    assert out["fd"] == M.fd(real=real, fake=fake)
    assert all(out[k] == ref[k] for k in ("precision", "recall", "density", "coverage"))
    assert out["vendi"] == M.vendi_score(fake)
    assert METRICS.get("recall").fn(real=real, fake=fake) == ref["recall"]  # a member alone works too


def test_compute_metrics_options_per_key_and_group():
    rng = np.random.default_rng(1)
    real, fake = rng.normal(size=(60, 4)), rng.normal(size=(60, 4))
    out = compute_metrics(["kid", "kid_std", "vendi"], real=real, fake=fake,
                          options={"kid": {"subsets": 3, "subset_size": 20, "seed": 1}, "vendi": {"q": 2}})
    ref = M.kid(real=real, fake=fake, subsets=3, subset_size=20, seed=1)
    assert out["kid"] == ref["mean"] and out["kid_std"] == ref["std"]
    assert out["vendi"] == M.vendi_score(fake, q=2)


def test_compute_metrics_missing_inputs_and_too_few_samples():
    x = np.random.default_rng(2).normal(size=(5, 3))
    with pytest.raises(UserError, match="missing real"):
        compute_metrics(["fd"], fake=x)
    with pytest.raises(UserError, match="'coverage' needs at least 6 samples, real has 5"):
        compute_metrics(["coverage"], real=x, fake=x)
    with pytest.raises(UserError, match="missing labels"):
        compute_metrics(["probe_top1"], features=x)
