"""bench.stages.representation: RCG / embedding vectors and their RDM prior as cached stages, run through a real
RunContext by a throwaway experiment on a fake (randomly drawn) codes artifact."""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pytest
import torch

from bench.run import execute
from bench.stages import representation as srep

N_TRAIN, N_TEST, EMB_DIM, OUT_DIM, SEED = 64, 16, 12, 16, 3
STAGES = ("representation", "rdm", "rdm-samples")


def _projector(**kw):
    from dlc.baselines import RCGProjectorConfig

    return RCGProjectorConfig(**{"in_dim": 0, "hidden": 32, "out_dim": OUT_DIM, "seed": 0, **kw})


@dataclass(frozen=True)
class TinyConfig:
    rep: srep.RepresentationConfig = field(default_factory=lambda: srep.RepresentationConfig(projector=_projector()))
    rdm: srep.RDMStageConfig = field(default_factory=lambda: srep.RDMStageConfig(
        model="RDM-tiny", steps=20, batch_size=32, lr=2e-3, ema=0.9, log_every=5))
    rdm_sampling: srep.RDMSamplingConfig = field(default_factory=lambda: srep.RDMSamplingConfig(steps=5,
                                                                                                batch_size=4))
    n: int = 10


def _fake_codes() -> dict:
    from dlc.encoder import DLCArtifact

    g = torch.Generator().manual_seed(0)
    return {s: DLCArtifact(tokens=torch.randint(0, 8, (n, 4), generator=g), V=8,
                           embedding=torch.randn(n, EMB_DIM, generator=g) * 2 + 0.5,
                           factors={"shape": torch.randint(0, 3, (n,), generator=g)})
            for s, n in (("train", N_TRAIN), ("test", N_TEST))}


def _pipeline(ctx, out: dict) -> None:
    from bench.stages import encoder as senc

    c = ctx.config
    k_codes = ctx.key(senc.CODES, {"fake": "random codes"}, seed=SEED)
    codes = ctx.stage(senc.CODES, k_codes, _fake_codes)
    k_rep = ctx.key(srep.REPRESENTATION, c.rep, upstream=[k_codes], seed=SEED)
    rep = ctx.stage(srep.REPRESENTATION, k_rep, lambda: srep.make_representation(ctx, c.rep, codes, SEED))
    k_rdm = ctx.key(srep.RDM, c.rdm, upstream=[k_rep], seed=SEED)
    rdm = ctx.stage(srep.RDM, k_rdm, lambda: srep.train_prior(ctx, c.rdm, rep["train"], SEED, kind=c.rep.kind))
    k_s = ctx.key(srep.RDM_SAMPLES, {"sampling": c.rdm_sampling, "n": c.n}, upstream=[k_rdm], seed=SEED)
    samples = ctx.stage(srep.RDM_SAMPLES, k_s, lambda: srep.sample_prior(ctx, c.rdm_sampling, rdm["model"], c.n,
                                                                         SEED))
    out.update(codes=codes, rep=rep, rdm=rdm, samples=samples)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """run(config) → (outputs, {stage: cached}) of one execution, all sharing one stage cache."""
    from bench.experiment import EXPERIMENTS, experiment

    root = tmp_path_factory.mktemp("rep")
    name, out = "unit-representation", {}
    EXPERIMENTS.unregister(name)
    experiment(name, description="representation stages on fake codes", config=TinyConfig)(
        lambda ctx: _pipeline(ctx, out))
    count = iter(range(100))

    def go(cfg: TinyConfig):
        out.clear()
        res = execute(EXPERIMENTS.get(name), cfg, preset=None, seeds=(SEED,), out_dir=root / f"out{next(count)}",
                      cache_dir=root / "cache", device="cpu", quiet=True, render=False)
        return dict(out), {s["stage"]: s["cached"] for s in res["stages"] if s["stage"] in STAGES}

    try:
        yield go
    finally:
        EXPERIMENTS.unregister(name)


@pytest.fixture(scope="module")
def first(run):
    return run(TinyConfig())


def test_rcg_vectors_are_the_standardised_random_projection(first):
    from dlc.baselines import RCGProjector, rcg_representation

    out, cached = first
    assert cached == {s: False for s in STAGES}
    rep = out["rep"]
    proj = RCGProjector(replace(_projector(), in_dim=EMB_DIM, seed=SEED))
    for split, n in (("train", N_TRAIN), ("test", N_TEST)):
        v = rep[split]
        assert v.shape == (n, OUT_DIM) and v.dtype == torch.float32
        a = v.numpy().astype(np.float64)
        np.testing.assert_allclose(a.mean(axis=1), 0.0, atol=1e-5)
        np.testing.assert_allclose(a.std(axis=1, ddof=1), 1.0, atol=1e-5)
        torch.testing.assert_close(v, rcg_representation(out["codes"][split].embedding, proj))
    stored = rep["projector"].state_dict()
    assert rep["projector"].config == proj.config
    assert all(torch.equal(stored[k], w) for k, w in proj.state_dict().items())


def test_rerun_hits_the_cache_and_a_sampling_change_redraws_only_the_samples(run, first):
    out, _ = first
    again, cached = run(TinyConfig())
    assert cached == {s: True for s in STAGES}
    for split in ("train", "test"):
        assert torch.equal(again["rep"][split], out["rep"][split])
    assert torch.equal(again["samples"], out["samples"])
    assert again["rdm"]["losses"] == out["rdm"]["losses"]
    m0, m1 = out["rdm"]["model"].state_dict(), again["rdm"]["model"].state_dict()
    assert all(torch.equal(m0[k], m1[k]) for k in m0)

    more, cached = run(TinyConfig(rdm_sampling=srep.RDMSamplingConfig(steps=5, batch_size=3), n=13))
    assert cached == {"representation": True, "rdm": True, "rdm-samples": False}
    fewer, cached = run(TinyConfig(rdm_sampling=srep.RDMSamplingConfig(steps=5, batch_size=7), n=6))
    assert cached == {"representation": True, "rdm": True, "rdm-samples": False}
    # sample i depends on the seed and i only: not on n, nor on the batch size
    torch.testing.assert_close(more["samples"][:10], out["samples"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fewer["samples"], out["samples"][:6], rtol=1e-5, atol=1e-5)
    other, cached = run(TinyConfig(rdm_sampling=srep.RDMSamplingConfig(steps=3, batch_size=4)))
    assert cached == {"representation": True, "rdm": True, "rdm-samples": False}
    assert not torch.allclose(other["samples"], out["samples"])


def test_tiny_rdm_trains_and_samples_finite_vectors(first):
    out, _ = first
    rdm, s = out["rdm"], out["samples"]
    assert len(rdm["losses"]) == 20 and all(np.isfinite(rdm["losses"]))
    assert rdm["model"].config.dim == OUT_DIM
    assert torch.equal(rdm["model"].data_mean, torch.zeros(OUT_DIM))     # rcg: no per-dimension standardisation
    assert s.shape == (10, OUT_DIM) and s.dtype == torch.float32 and torch.isfinite(s).all()
    assert not torch.allclose(s[0], s[1])


def test_embedding_kind_gives_the_raw_embedding(run):
    from dlc.baselines import raw_representation

    out, cached = run(TinyConfig(rep=srep.RepresentationConfig(kind="embedding", projector=_projector())))
    assert cached == {s: False for s in STAGES}
    for split in ("train", "test"):
        assert torch.equal(out["rep"][split], raw_representation(out["codes"][split].embedding))
    assert out["rep"]["projector"] is None
    emb = out["codes"]["train"].embedding.double()
    torch.testing.assert_close(out["rdm"]["model"].data_mean, emb.mean(0).float())   # auto: standardised
    assert out["samples"].shape == (10, EMB_DIM) and torch.isfinite(out["samples"]).all()


def test_conditionings_are_registered_and_a_vector_dit_takes_the_vectors(first):
    from bench.conditioning import CONDITIONING
    from dlc.dit import build_dit

    for name in ("rcg", "embedding"):
        c = CONDITIONING.get(name)
        assert (c.dit_cond, c.representation, c.prior) == ("vector", "representation", "rdm")
        assert c.representation == srep.REPRESENTATION.name and c.prior == srep.RDM.name
    v = first[0]["samples"]
    torch.manual_seed(0)
    dit = build_dit("DiT-tiny/4", input_size=8, in_channels=3, cond="vector", **srep.dit_shape(v)).eval()
    y = dit(torch.randn(len(v), 3, 8, 8), torch.randint(0, 1000, (len(v),)), v)
    assert y.shape == (len(v), 6, 8, 8) and torch.isfinite(y).all()


@pytest.mark.parametrize("make, match", [
    (lambda: srep.RepresentationConfig(kind="rgc"), r"representation.kind='rgc'.*Did you mean 'rcg'"),
    (lambda: srep.RepresentationConfig(kind="embeding"), r"Did you mean 'embedding'"),
    (lambda: srep.RDMStageConfig(model="RDM-tiyn"), r"rdm.model.*Did you mean 'RDM-tiny'"),
    (lambda: srep.RDMSamplingConfig(steps=0), r"steps ≥ 1"),
])
def test_bad_settings_raise_with_a_suggestion(make, match):
    with pytest.raises(ValueError, match=match):
        make()
