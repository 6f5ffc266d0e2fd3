"""The dlc-pipeline experiment end to end (smoke preset), its caching/resume and its config validation."""
from __future__ import annotations

import json

import pytest

from bench.config import load_config
from bench.errors import UserError
from bench.experiment import get_experiment
from bench.run import execute


pytestmark = pytest.mark.filterwarnings("ignore:.*rank-deficient:RuntimeWarning")


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    exp = get_experiment("dlc-pipeline")
    cfg, seeds = load_config(exp.config_cls, "dlc-pipeline", "smoke", [])
    root = tmp_path_factory.mktemp("pipe")
    res = execute(exp, cfg, preset="smoke", seeds=seeds, out_dir=root / "out", cache_dir=root / "cache",
                  device="cpu", quiet=True)
    return exp, cfg, seeds, root, res


def _rows(res, metric, **labels):
    return [r for r in res["metrics"] if r["metric"] == metric and r.get("seed") is not None
            and all(r.get(k) == v for k, v in labels.items())]


def test_smoke_run_produces_every_variant_and_metric(smoke_run):
    _, cfg, seeds, root, res = smoke_run
    for variant in ("dlc", "unconditional", "dlc-recon", "real-train"):
        (fd,) = _rows(res, "fd_effnet", variant=variant)
        assert fd["value"] > 0 and fd["n"] == cfg.eval.n_samples and fd["higher_is_better"] is False
        for k in ("precision", "recall", "density", "coverage", "vendi"):
            assert len(_rows(res, k, variant=variant)) == 1
    # the real-train floor is far below untrained generators: the metric separates real from (bad) fake
    floor = _rows(res, "fd_effnet", variant="real-train")[0]["value"]
    assert floor < 0.5 * _rows(res, "fd_effnet", variant="unconditional")[0]["value"]
    for rep in ("dlc", "embedding"):
        for factor in ("shape", "colour"):
            (p,) = _rows(res, "probe_top1", representation=rep, factor=factor)
            assert 0.0 <= p["value"] <= 1.0
    assert 0.0 <= _rows(res, "code_tv", variant="dlc")[0]["value"] <= 1.0
    out = root / "out"
    for f in ("results.json", "results.csv", "report.html", "figures/samples.png", "figures/composition.png"):
        assert (out / f).is_file(), f
    html = (out / "report.html").read_text()
    assert "fd_effnet" in html and "dlc-recon" in html
    stored = json.loads((out / "results.json").read_text())
    assert stored["config"]["encoder"]["L"] == cfg.encoder.L
    assert any("Finding" in n for n in stored["notes"])


def test_rerun_reuses_every_stage(smoke_run):
    exp, cfg, seeds, root, first = smoke_run
    res = execute(exp, cfg, preset="smoke", seeds=seeds, out_dir=root / "out2", cache_dir=root / "cache",
                  device="cpu", quiet=True, render=False)
    assert res["cache"]["misses"] == 0 and res["cache"]["hits"] == first["cache"]["misses"]
    a = {(r["metric"], r.get("variant"), r.get("representation"), r.get("factor"), r.get("stage")): r["value"]
         for r in first["metrics"] if r.get("seed") is not None}
    b = {(r["metric"], r.get("variant"), r.get("representation"), r.get("factor"), r.get("stage")): r["value"]
         for r in res["metrics"] if r.get("seed") is not None}
    assert a == b


def test_changing_a_sampling_setting_recomputes_only_downstream(smoke_run):
    exp, cfg, seeds, root, _ = smoke_run
    cfg2, _ = load_config(exp.config_cls, "dlc-pipeline", "smoke", ["dit.sample_steps=4"])
    res = execute(exp, cfg2, preset="smoke", seeds=seeds, out_dir=root / "out3", cache_dir=root / "cache",
                  device="cpu", quiet=True, render=False)
    missed = {s["stage"] for s in res["stages"] if not s["cached"]}
    assert missed == {"samples-dlc", "samples-unconditional", "samples-dlc-recon", "features", "compose"}
    hit = {s["stage"] for s in res["stages"] if s["cached"]}
    assert {"encoder", "codes", "sedd", "prior", "dit-dlc", "dit-uncond"} <= hit


@pytest.mark.parametrize("override, message", [
    (["eval.variants=[dlc,bogus]"], "unknown variant"),
    (["eval.n_samples=100"], "exceeds data.n_test"),
    (["encoder.Lx=3"], "encoder.L"),
])
def test_bad_configs_are_rejected_with_the_fix(override, message):
    exp = get_experiment("dlc-pipeline")
    with pytest.raises((UserError, ValueError), match=message):
        load_config(exp.config_cls, "dlc-pipeline", "smoke", override)


def test_paper_preset_is_the_paper_setting():
    exp = get_experiment("dlc-pipeline")
    cfg, _ = load_config(exp.config_cls, "dlc-pipeline", "paper", [])
    assert (cfg.encoder.backbone, cfg.encoder.L, cfg.encoder.V) == ("dinov2", 512, 256)
    assert "registers-large" in cfg.encoder.backbone_path
    assert cfg.prior.model == "medium" and cfg.prior.sampler == "corrector"
    assert (cfg.prior.t0, cfg.prior.t1) == (0.3, 0.55)
    assert cfg.dit.model == "DiT-XL/2" and cfg.dit.vae == "stabilityai/sd-vae-ft-ema"
    assert cfg.data.image_size == 256 and cfg.eval.features == "inception-v3-compat"
    assert cfg.eval.n_samples == 50_000
