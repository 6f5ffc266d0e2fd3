"""token-diffusion (seed 004): the smoke preset end to end, the findings on cases with a known answer, config
validation and the paper preset (built, its network instantiated on the meta device)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from bench.config import load_config
from bench.errors import UserError
from bench.experiment import get_experiment
from bench.experiments.token_diffusion_report import CLAIMS, by_class, token_findings, verdict
from bench.run import execute

pytestmark = pytest.mark.filterwarnings("ignore:.*rank-deficient:RuntimeWarning")


def _cfg(*overrides, preset="smoke"):
    exp = get_experiment("token-diffusion")
    return load_config(exp.config_cls, "token-diffusion", preset, list(overrides))[0]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    exp = get_experiment("token-diffusion")
    cfg, seeds = load_config(exp.config_cls, "token-diffusion", "smoke", [])
    root = tmp_path_factory.mktemp("tokens")
    res = execute(exp, cfg, preset="smoke", seeds=seeds, out_dir=root / "out", cache_dir=root / "cache",
                  device="cpu", quiet=True)
    return exp, cfg, seeds, root, res


def _rows(res, metric, **labels):
    return [r for r in res["metrics"] if r["metric"] == metric and r.get("seed") is not None
            and all(r.get(k) == v for k, v in labels.items())]


def test_smoke_run_measures_every_variant_at_every_step_count(smoke_run):
    _, cfg, seeds, root, res = smoke_run
    n = cfg.eval.n_samples
    for variant in ("absorb", "uniform", "absorb-2d", "maskgit"):
        for steps in cfg.steps_list:
            (fd,) = _rows(res, "fd_effnet", variant=variant, steps=steps)
            assert fd["value"] > 0 and fd["n"] == n and fd["ci_low"] <= fd["value"] <= fd["ci_high"]
            for k in ("precision", "recall", "vendi", "sample_seconds_per_image", "forwards_per_image"):
                assert len(_rows(res, k, variant=variant, steps=steps)) == 1, (k, variant, steps)
            by_reader = {r["reader"]: r for r in _rows(res, "class_agreement", variant=variant, steps=steps)}
            assert set(by_reader) == {"classifier", "render"}
            assert 0 <= by_reader["classifier"]["value"] <= 1 and "ceiling" in by_reader["classifier"]
        (f,) = _rows(res, "forward_mflops", variant=variant)
        assert f["value"] > 0
        fwd = {r["steps"]: r["value"] for r in _rows(res, "forwards_per_image", variant=variant)}
        extra = 0 if variant == "maskgit" else 1                               # SEDD's final denoising step
        assert fwd == {s: 2 * (s + extra) for s in cfg.steps_list}           # CFG: two forwards per step
    # the floors: the real images and the tokenizer's reconstructions; the exact-render reader is right on real images
    for floor in ("vq-recon", "real-train"):
        assert len(_rows(res, "fd_effnet", variant=floor)) == 1
    (real,) = _rows(res, "class_agreement", variant="real-test", reader="render")
    assert real["value"] == 1.0
    (p,) = _rows(res, "psnr", variant="vq-recon")
    assert 5 < p["value"] < 60
    assert 0 < _rows(res, "codebook_usage", variant="vq-recon")[0]["value"] <= 1
    gaps = _rows(res, "fd_effnet_gap")
    assert {(r["variant"], r["against"]) for r in gaps} == {("absorb-2d", "absorb"), ("absorb", "uniform"),
                                                            ("absorb-2d", "uniform"), ("maskgit", "absorb"),
                                                            ("maskgit", "uniform"), ("maskgit", "absorb-2d")}
    fd = {r["variant"]: r["value"] for r in _rows(res, "fd_effnet", steps=cfg.sampling.steps)}
    for r in gaps:       # the paired difference is the difference of the two FDs
        assert r["value"] == pytest.approx(fd[r["variant"]] - fd[r["against"]], rel=1e-6, abs=1e-9)
    assert sum(r["value"] for r in _rows(res, "best_frac")) == pytest.approx(1.0)
    out = root / "out"
    for f in ("results.json", "report.html", "figures/fd_vs_steps.png", "figures/samples_by_class.png"):
        assert (out / f).is_file(), f
    with np.load(out / "samples" / "absorb-2d.npz", allow_pickle=False) as z:
        assert z["arr_0"].shape == (n, 32, 32, 3) and z["arr_0"].dtype == np.uint8
    notes = json.loads((out / "results.json").read_text())["notes"]
    assert sum("Absorb-2D < Absorb" in s for s in notes) == len(seeds)


def test_samples_carry_their_class_and_a_rerun_trains_nothing(smoke_run):
    exp, cfg, seeds, root, first = smoke_run
    res = execute(exp, cfg, preset="smoke", seeds=seeds, out_dir=root / "again", cache_dir=root / "cache",
                  device="cpu", quiet=True)
    assert res["cache"]["misses"] == 0 and res["cache"]["hits"] > 0
    key = lambda r: (r["metric"], r.get("variant"), r.get("steps"), r.get("reader"), r.get("against"))  # noqa: E731
    a = {key(r): r["value"] for r in first["metrics"] if r.get("seed") is not None}
    b = {key(r): r["value"] for r in res["metrics"] if r.get("seed") is not None}
    assert a == b
    # another guidance scale re-samples and trains nothing
    from bench.config import load_config as lc
    cfg2, _ = lc(exp.config_cls, "token-diffusion", "smoke", ["sampling.cfg_scale=0", "variants=[absorb, maskgit]"])
    res2 = execute(exp, cfg2, preset="smoke", seeds=seeds, out_dir=root / "w0", cache_dir=root / "cache",
                   device="cpu", quiet=True)
    computed = {s["stage"] for s in res2["stages"] if not s["cached"]}
    assert computed <= {"token-samples", "features"} and "token-samples" in computed
    fwd = {r["steps"]: r["value"] for r in _rows(res2, "forwards_per_image", variant="absorb")}
    assert fwd == {s: s + 1 for s in cfg.steps_list}


def test_verdicts_decide_only_where_the_intervals_exclude_zero():
    gaps = {("absorb-2d", "absorb"): (-2.0, -3.0, -1.0), ("absorb", "uniform"): (-1.0, -2.5, 0.5),
            ("maskgit", "absorb"): (-4.0, -5.0, -3.0), ("maskgit", "uniform"): (-5.0, -6.0, -4.0),
            ("maskgit", "absorb-2d"): (1.0, 0.5, 1.5)}
    assert verdict(gaps, CLAIMS[0][1]) == "reproduced"
    assert verdict(gaps, CLAIMS[1][1]).startswith("not reproduced (undecided")
    assert verdict(gaps, CLAIMS[2][1]) == "contradicted"        # MaskGIT significantly worse than absorb-2d
    assert verdict({}, CLAIMS[0][1]) == "not measured"
    notes = token_findings({0: {"gaps": gaps, "best": "maskgit", "values": {"absorb": 3.0, "uniform": 4.0,
                                                                              "absorb-2d": 1.0, "maskgit": 2.0}}},
                           "fd_effnet")
    assert any("Absorb-2D < Absorb" in s and "— reproduced" in s and "-2.00 [-3.00, -1.00]" in s for s in notes)
    assert any("ordering absorb-2d 1.00 < maskgit 2.00 < absorb 3.00 < uniform 4.00" in s for s in notes)


def test_class_grids_hold_each_class_in_its_row():
    imgs = torch.arange(12, dtype=torch.uint8).view(12, 1, 1, 1).expand(12, 3, 2, 2).contiguous()
    labels = torch.arange(12) % 3
    g = by_class(imgs, labels, 3, 2)
    assert g[:, 0, 0, 0].tolist() == [0, 3, 1, 4, 2, 5]
    g = by_class(imgs, labels, 3, 5)                         # 4 of each class: the rest padded white
    assert g[4, 0, 0, 0] == 255 and g.shape[0] == 15


@pytest.mark.parametrize("override, fragment", [
    (["variants=[absorb, absorb2d]"], "Did you mean 'absorb-2d'"),
    (["class_factor=hue"], "not a shapes factor"),
    (["data.dataset=fashion-mnist", "class_factor=colour"], "needs factor labels"),
    (["tokenizer.vq.image_size=16"], "differs from data.image_size"),
    (["eval.n_samples=100"], "exceeds data.n_test"),
    (["sampling.steps_grid=[0, 4]"], "positive integers"),
    (["net.model=huge"], "net.model"),
    (["net.train.objective=masked-ce"], "set by each variant"),
])
def test_bad_configs_are_one_line_errors_with_the_fix(override, fragment):
    with pytest.raises(UserError, match=fragment):
        _cfg(*override)


def test_paper_preset_is_the_seed_setting_and_its_network_builds_on_meta():
    from dlc.tokens import TokenSEDD

    cfg = _cfg(preset="paper")
    assert cfg.data.dataset == "imagefolder" and cfg.data.image_size == 256
    assert cfg.tokenizer.pretrained == "amused/amused-256" and cfg.tokenizer.subfolder == "vqvae"
    assert (cfg.net.hidden, cfg.net.n_blocks) == (768, 24) and cfg.net.train.steps == 200_000
    assert cfg.eval.features == "inception-v3-compat" and cfg.eval.n_samples == 50_000
    with torch.device("meta"):
        for variant in ("absorb", "uniform", "absorb-2d", "maskgit"):
            model = TokenSEDD(cfg.net.model_config(variant, vocab_size=8192, seq_len=256, num_classes=1000))
            params = sum(p.numel() for p in model.parameters())
            assert 180e6 < params < 210e6, params                       # the seed: 186M
    assert model.config.grid == (16, 16)
