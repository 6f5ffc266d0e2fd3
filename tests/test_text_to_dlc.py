"""text-to-dlc: its pieces on cases with a known answer (held-out split, prompts, retrieval, findings), config
validation, and the smoke preset end to end."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.config import load_config
from bench.errors import UserError
from bench.experiment import get_experiment
from bench.experiments.text_to_dlc import holdout_mask, make_prompts, matching, parse_rule, retrieve
from bench.experiments.text_to_dlc_report import text_findings
from bench.run import execute
from dlc.data.shapes import make_shapes
from dlc.text import shapes_captions, shapes_prompt

pytestmark = pytest.mark.filterwarnings("ignore:.*rank-deficient:RuntimeWarning")


def _cfg(*overrides, preset="smoke"):
    exp = get_experiment("text-to-dlc")
    return load_config(exp.config_cls, "text-to-dlc", preset, list(overrides))[0]


def test_holdout_mask_removes_exactly_the_held_out_combinations():
    d = make_shapes(3000, seed=0)
    rules = [parse_rule("colour=red,background=white"), parse_rule("colour=green , background=black")]
    m = holdout_mask(d.factors, d.factor_values, rules)
    col, bg = d.factors["colour"].numpy(), d.factors["background"].numpy()
    v = d.factor_values
    expect = ((col == v["colour"].index("red")) & (bg == v["background"].index("white"))) | \
             ((col == v["colour"].index("green")) & (bg == v["background"].index("black")))
    assert (m == expect).all() and 0.04 < m.mean() < 0.12          # 2 of 24 colour × background pairs
    # the shapes generator's own held-out split is the complement: every image of it matches a rule
    held = make_shapes(200, split="holdout", seed=0, holdout=rules)
    assert holdout_mask(held.factors, held.factor_values, rules).all()
    with pytest.raises(ValueError, match="not 'factor=value"):
        parse_rule("colour:red")


def test_prompts_cover_the_rules_and_in_distribution_prompts_avoid_them():
    cfg = _cfg("n_prompts=12")
    values = make_shapes(1).factor_values
    rules = [parse_rule(r) for r in cfg.holdout]
    held = make_prompts(cfg, values, rules, True, seed=0)
    inside = make_prompts(cfg, values, rules, False, seed=0)
    assert len(held) == len(inside) == 12
    assert all(any(all(p[f] == v for f, v in r.items()) for r in rules) for p in held)
    assert not any(any(all(p[f] == v for f, v in r.items()) for r in rules) for p in inside)
    assert {tuple(sorted(r.items())) for r in rules} <= {tuple(sorted((f, p[f]) for f in r)) for p in held for r in
                                                         rules if all(p[f] == v for f, v in r.items())}
    assert make_prompts(cfg, values, rules, True, seed=0) == held


def test_retrieval_finds_training_images_with_the_prompted_factors():
    """Captions naming every factor, and a prompt worded like them: the nearest captions are of images with the
    prompt's colour and background (a lookup with a known answer); the oracle pool matches exactly."""
    d = make_shapes(2000, seed=1)
    caps = shapes_captions(d.factors, d.factor_values, seed=0, p_omit=0.0, templates=1)
    combos = [{"colour": "cyan", "background": "navy"}, {"colour": "red", "background": "grey"}]
    idx = retrieve(caps, [shapes_prompt(c) for c in combos], 5)
    v = d.factor_values
    for c, row in zip(combos, idx):
        assert all(v["colour"][int(d.factors["colour"][i])] == c["colour"] for i in row)
        assert all(v["background"][int(d.factors["background"][i])] == c["background"] for i in row)
    exact = matching(d.factors, v, combos, 7, "test")
    assert exact.shape == (2, 7) and holdout_mask({f: t[exact[0]] for f, t in d.factors.items()}, v, [combos[0]]).all()


def test_findings_say_which_method_wins_from_known_numbers():
    rows = []
    for s, m, val in (("held-out", "text", 0.6), ("held-out", "retrieval", 0.1), ("in-distribution", "text", 0.8)):
        for f in ("colour", "all"):
            rows.append({"metric": "factor_agreement", "value": val, "ci_low": val - 0.1, "ci_high": val + 0.1,
                         "n": 64, "seed": 0, "set": s, "method": m, "factor": f, "chance": 0.05})
    per = {(0, "held-out", "text"): np.array([0.5, 0.75, 0.5, 0.625]),
           (0, "held-out", "retrieval"): np.array([0.0, 0.125, 0.25, 0.0]),
           (0, "in-distribution", "text"): np.array([0.75, 0.875, 0.875, 0.75])}
    notes = text_findings(rows, per, 0, ["colour"])
    assert any("held-out prompts: text − retrieval +0.50" in n and "generation beats lookup" in n for n in notes)
    assert any("gap in whole-combination agreement is +0.22" in n and "drawn less faithfully" in n for n in notes)
    assert any(n.startswith("Paper claim") and "reproduced with text at this scale" in n for n in notes)
    per[(0, "held-out", "retrieval")] = per[(0, "held-out", "text")] + 0.1
    notes = text_findings(rows, per, 0, ["colour"])
    assert any("lookup beats generation" in n for n in notes)
    assert any(n.startswith("Paper claim") and "not reproduced" in n for n in notes)
    # a second generator: the pretrained-encoder path compared with the word path over the same prompts
    rows += [{**r, "method": "text-prefix", "value": 0.9, "ci_low": 0.8, "ci_high": 0.95} for r in rows
             if r["method"] == "text" and r["set"] == "held-out"]
    per[(0, "held-out", "text-prefix")] = per[(0, "held-out", "retrieval")] + 0.2
    notes = text_findings(rows, per, 0, ["colour"])
    assert any("held-out prompts: text-prefix − text +0.30" in n and "encoder helps" in n for n in notes)
    assert any(n.startswith("Paper claim") and "reproduced with text-prefix at this scale" in n for n in notes)


@pytest.mark.parametrize("override, message", [
    ("holdout=[colour=purple]", "not a value of colour"),
    ("holdout=[x=left]", "which no prompt states"),
    ("prompt_factors=[hue]", "not a shapes factor"),
    ("methods=[text, lookup]", "unknown 'lookup'"),
    ("text_sampling.steps=64", "exceeds the 8 code slots"),
    ("text.model=huge", "huge"),
    ("text_sampling.order=left", "left"),
    ("data.dataset=digits", "neither generated captions nor image files"),
    ("data.dataset=imagefolder", "needs factor labels"),
])
def test_bad_configs_are_refused_with_the_key_and_a_fix(override, message):
    with pytest.raises(UserError, match=message):
        _cfg(override)


def test_paper_preset_is_the_paper_setting():
    cfg = _cfg(preset="paper")
    assert cfg.text.backbone == "GSAI-ML/LLaDA-8B-Base" and cfg.text.dtype == "bfloat16"
    assert cfg.encoder.L == 512 and cfg.encoder.V == 256 and cfg.dit.model == "DiT-XL/2"
    assert cfg.data.dataset == "imagefolder" and cfg.captions.captions_file and cfg.prompts and not cfg.holdout
    assert cfg.methods == ("text",)
    from dataclasses import replace

    from dlc.text.hf import LLaDAFinetuneConfig

    ref = LLaDAFinetuneConfig()
    assert cfg.text.train == replace(ref.train_config(), log_every=cfg.text.train.log_every)
    assert cfg.text.max_text_len == ref.max_caption_tokens and cfg.encoder.V == ref.V and cfg.encoder.L == ref.L


def test_smoke_run_measures_every_prompt_set_and_method(tmp_path):
    exp = get_experiment("text-to-dlc")
    cfg, seeds = load_config(exp.config_cls, "text-to-dlc", "smoke", [])
    res = execute(exp, cfg, preset="smoke", seeds=seeds, out_dir=tmp_path / "out", cache_dir=tmp_path / "cache",
                  device="cpu", quiet=True)
    rows = [r for r in res["metrics"] if r.get("seed") is not None]
    for s in ("in-distribution", "held-out"):
        for m in cfg.methods:
            agree = [r for r in rows if r["metric"] == "factor_agreement" and r["set"] == s and r["method"] == m]
            assert {r["factor"] for r in agree} == {*cfg.prompt_factors, "all"}
            assert all(r["n"] == cfg.n_prompts * cfg.k_samples and r["ci_low"] <= r["value"] <= r["ci_high"]
                       for r in agree)
    valid = [r for r in rows if r["metric"] == "code_valid_frac"]
    assert {(r["set"], r["method"]) for r in valid} == {(s, m) for s in ("in-distribution", "held-out", "free text")
                                                         for m in ("text", "text-prefix")}
    assert all(r["value"] == 1.0 for r in valid)
    assert {r["set"] for r in rows if r["metric"] == "nn_max_sim"} == {"in-distribution", "held-out", "free text",
                                                                      "real held-out"}
    stages = {(s["stage"], s["desc"]) for s in res["stages"]}
    assert ("text-dlc", "text → DLC model (text) seed=0") in stages and \
        ("text-dlc", "text → DLC model (text-prefix) seed=0") in stages
    assert any(n.startswith("Paper claim (the paper (Sec. 6") for n in res["notes"])
    for f in ("samples_in_distribution", "samples_held_out", "samples_free_text", "nearest_neighbours"):
        assert (tmp_path / "out" / "figures" / f"{f}.png").is_file()
    # a re-run is all cache hits, with the same numbers
    again = execute(exp, cfg, preset="smoke", seeds=seeds, out_dir=tmp_path / "out2", cache_dir=tmp_path / "cache",
                    device="cpu", quiet=True)
    assert all(s["cached"] for s in again["stages"])
    assert [r["value"] for r in again["metrics"]] == [r["value"] for r in res["metrics"]]


def test_an_image_folder_with_a_captions_file_runs_free_text_prompts(tmp_path):
    """The real-data path: an imagefolder (two classes of PNGs), one caption per training file in JSON lines (by
    path under data_dir), free-text prompts only; codes are valid and the samples are shown and searched."""
    import json

    from PIL import Image

    from dlc.data.shapes import make_shapes

    d = make_shapes(40, seed=2)
    lines = []
    for split, n in (("train", 32), ("test", 8)):
        for i in range(n):
            k = i if split == "train" else 32 + i
            folder = tmp_path / "data" / split / ("round" if int(d.factors["shape"][k]) in (1, 5) else "other")
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(d.images[k].permute(1, 2, 0).numpy()).save(folder / f"{k}.png")
            if split == "train":
                lines.append(json.dumps({"file": f"train/{folder.name}/{k}.png", "caption": f"a picture number {k}"}))
    (tmp_path / "caps.jsonl").write_text("\n".join(lines) + "\n")
    exp = get_experiment("text-to-dlc")
    cfg, seeds = load_config(exp.config_cls, "text-to-dlc", "smoke", [
        "data.dataset=imagefolder", f"data.data_dir={tmp_path / 'data'}", "data.n_train=32", "data.n_test=8",
        "holdout=[]", f"captions.captions_file={tmp_path / 'caps.jsonl'}", "methods=[text]",
        "prompts=[a picture number 3, a picture number 40]", "n_train_nn=16", "eval.n_samples=8",
        "eval.probe_n=16", "eval.grid=8", "dit.monitor_n=8"])
    res = execute(exp, cfg, preset="smoke", seeds=seeds, out_dir=tmp_path / "out", cache_dir=tmp_path / "cache",
                  device="cpu", quiet=True)
    valid = [r for r in res["metrics"] if r["metric"] == "code_valid_frac" and r.get("seed") is not None]
    assert [(r["set"], r["method"], r["value"]) for r in valid] == [("free text", "text", 1.0)]
    assert (tmp_path / "out" / "figures" / "samples_free_text.png").is_file()
    (tmp_path / "caps.jsonl").write_text(lines[0] + "\n")          # captions for one file only
    with pytest.raises(Exception, match="have no caption"):
        execute(exp, cfg, preset="smoke", seeds=seeds, out_dir=tmp_path / "out2", cache_dir=tmp_path / "cache",
                device="cpu", quiet=True)


def test_the_text_stage_trains_the_same_model_whatever_the_global_rng():
    """train_text_model draws its initial weights from its seed: two trainings with the global RNG in different
    states give identical weights (a recomputed stage equals the cached one)."""
    from contextlib import nullcontext
    from types import SimpleNamespace

    from bench.stages import text as stext
    from dlc.text import TextDLCTrainConfig

    bar = SimpleNamespace(n=0, set_postfix=lambda *a: None, refresh=lambda: None, close=lambda: None)
    ctx = SimpleNamespace(device="cpu", timer=lambda name: nullcontext(), progress=lambda **kw: bar)
    cfg = stext.TextModelConfig(hidden=32, n_layers=1, n_heads=2, max_text_len=8,
                                train=TextDLCTrainConfig(steps=3, batch_size=4, warmup=1))
    codes, caps = torch.randint(0, 5, (12, 4)), [f"a red shape {i}" for i in range(12)]
    torch.manual_seed(1)
    a = stext.train_text_model(ctx, cfg, codes, caps, 5, seed=7)
    torch.rand(100)
    b = stext.train_text_model(ctx, cfg, codes, caps, 5, seed=7)
    c = stext.train_text_model(ctx, cfg, codes, caps, 5, seed=8)
    sa, sb, sc = (v["model"].state_dict() for v in (a, b, c))
    assert all(torch.equal(sa[k], sb[k]) for k in sa) and not all(torch.equal(sa[k], sc[k]) for k in sa)


@pytest.mark.parametrize("override, message", [
    ("text.text_encoder=/no/such/model", "text.text_encoder='/no/such/model' is not a directory"),
    ("text.tokenizer=./no-tokenizer", "text.tokenizer='./no-tokenizer' is not a directory"),
    ("prefix_encoder=/no/such/encoder", "prefix_encoder='/no/such/encoder' is not a directory"),
    ("captions.captions_file=/no/captions.jsonl", "captions.captions_file='/no/captions.jsonl' is not a file"),
])
def test_text_sources_that_this_machine_lacks_are_refused_before_any_work(override, message):
    from bench.config import preflight

    with pytest.raises(UserError, match=message):
        preflight(_cfg(override), device="cpu")
    preflight(_cfg(), device="cpu")                          # the preset's own sources: 'words' and 'minilm'
    preflight(_cfg("prefix_encoder=/no/such/encoder", "methods=[text, retrieval]"), device="cpu")   # not used
