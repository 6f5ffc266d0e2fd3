"""dlc.text: captions, tokenizers, the joint vocabulary, the masked-diffusion loss and sampler, and a model that
must learn a known caption → code map."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from dlc.common import PerSampleRNG
from dlc.data.shapes import make_shapes, shapes_factor_values
from dlc.text import (TEXT_DLC_MODELS, JointVocab, TextDLCModel, TextDLCTrainConfig, WordTokenizer, captions_for_files,
                      encode_batch, load_captions_jsonl, masked_diffusion_loss, reveal_counts, sample_codes,
                      sample_slots, shapes_captions, shapes_prompt, train_text_dlc)


# ----------------------------------------------------------------------------- captions
def test_shapes_captions_name_the_factors_and_are_reproducible():
    d = make_shapes(200, seed=3)
    caps = shapes_captions(d.factors, d.factor_values, seed=1, p_omit=0.0)
    again = shapes_captions(d.factors, d.factor_values, seed=1, p_omit=0.0)
    assert caps == again
    values = d.factor_values
    for i in range(20):
        c = caps[i]
        for f in ("colour", "size", "background"):
            assert values[f][int(d.factors[f][i])] in c, (f, c)
        assert values["shape"][int(d.factors["shape"][i])] in c
    # one image's caption depends on its global index only, not on the batch it was captioned in
    part = shapes_captions({f: v[50:60] for f, v in d.factors.items()}, values, seed=1, p_omit=0.0,
                           indices=range(50, 60))
    assert part == caps[50:60]
    assert len(set(caps)) > 100                        # several templates and factor values


def test_shapes_captions_omit_factors_at_the_rate_asked_and_keep_what_is_kept():
    d = make_shapes(2000, seed=0)
    caps = shapes_captions(d.factors, d.factor_values, seed=0, p_omit=0.5, keep=("colour",))
    colours = d.factor_values["colour"]
    assert all(colours[int(c)] in cap for c, cap in zip(d.factors["colour"], caps))
    bgs = d.factor_values["background"]
    has_bg = np.mean([f"{bgs[int(b)]} background" in cap for b, cap in zip(d.factors["background"], caps)])
    assert 0.45 < has_bg < 0.55
    with pytest.raises(ValueError, match="p_omit"):
        shapes_captions(d.factors, d.factor_values, p_omit=1.0)
    with pytest.raises(ValueError, match="keep names 'hue'"):
        shapes_captions(d.factors, d.factor_values, keep=("hue",))


def test_prompts_read_like_captions():
    assert shapes_prompt({"colour": "red", "background": "white"}) == "a red shape on a white background"
    assert shapes_prompt({"size": "large", "colour": "cyan", "shape": "ring", "x": "left", "y": "top"}) == \
        "a large cyan ring in the top left"
    assert shapes_prompt({"shape": "ring", "x": "centre", "y": "middle"}, template=1) == "a ring at the centre"


def test_captions_jsonl(tmp_path):
    p = tmp_path / "caps.jsonl"
    p.write_text(json.dumps({"file": "cat/a.jpg", "caption": "a cat"}) + "\n\n"
                 + json.dumps({"file": "b.jpg", "caption": "a dog"}) + "\n")
    caps = load_captions_jsonl(p)
    assert caps == {"cat/a.jpg": "a cat", "b.jpg": "a dog"}
    root = tmp_path / "train"
    assert captions_for_files([root / "cat" / "a.jpg", root / "dog" / "b.jpg"], caps, root) == ["a cat", "a dog"]
    with pytest.raises(ValueError, match="no caption, e.g. 'dog/c.jpg'"):
        captions_for_files([root / "dog" / "c.jpg"], caps, root)
    (tmp_path / "bad.jsonl").write_text('{"file": "a.jpg"}\n')
    with pytest.raises(ValueError, match="bad.jsonl:1: needs string fields"):
        load_captions_jsonl(tmp_path / "bad.jsonl")
    (tmp_path / "dup.jsonl").write_text('{"file": "a", "caption": "x"}\n{"file": "a", "caption": "y"}\n')
    with pytest.raises(ValueError, match="dup.jsonl:2: a second caption"):
        load_captions_jsonl(tmp_path / "dup.jsonl")


# ----------------------------------------------------------------------------- tokenizer, vocabulary
def test_word_tokenizer_round_trip_and_unknown_words():
    tok = WordTokenizer.build(["a small red circle, on grey", "a cyan ring"])
    ids = tok.encode("A small red ring, on grey")
    assert tok.decode(ids) == "a small red ring , on grey"
    assert tok.encode("purple")[0] == tok.unk_id
    assert WordTokenizer.from_dict(json.loads(json.dumps(tok.to_dict()))).words == tok.words
    batch, cut = encode_batch(tok, ["a cyan ring", "a small red circle , on grey"], max_len=4)
    assert batch.shape == (2, 4) and cut == 1 and batch[0, 3] == tok.pad_id


def test_joint_vocab_layout_round_trips_codes():
    v = JointVocab(n_text=10, V=5, L=3, T=4)
    codes = torch.tensor([[0, 4, 2], [1, 1, 3]])
    text = torch.tensor([[2, 3, 0, 0], [5, 6, 7, 8]])
    x = v.sequence(codes, text, text_pad=0)
    assert x.shape == (2, v.length) and v.size == 18
    assert (x[:, 3] == v.sep).all() and (x[0, 6:] == v.pad).all() and x[1, 4:].tolist() == [5, 6, 7, 8]
    assert torch.equal(v.to_codes(x), codes)
    assert v.text_slots(x).sum().item() == 6 and v.code_slots(x).sum().item() == 6
    masked = v.sequence(None, text, 0)
    assert (v.to_codes(masked) == -1).all()


# ----------------------------------------------------------------------------- loss and sampler
def test_masked_loss_of_a_uniform_predictor_is_log_k():
    """Uniform logits over K ids: every masked token costs log K and E[#masked] = p·N, so the loss → log K."""
    K, S = 7, 12
    x = torch.randint(K, (4000, S))
    maskable = torch.ones_like(x, dtype=torch.bool)
    maskable[:, -3:] = False                           # padding is never masked nor counted
    loss = masked_diffusion_loss(lambda xt: torch.zeros(*xt.shape, K), x, maskable, mask_id=K - 1, eps=0.05,
                                 generator=torch.Generator().manual_seed(0))
    assert loss.item() == pytest.approx(math.log(K), rel=0.02)


def test_masked_loss_is_zero_for_a_perfect_predictor():
    K = 6
    x = torch.randint(K - 1, (50, 9))
    perfect = lambda xt: torch.nn.functional.one_hot(x, K).float() * 50.0    # knows the clean sequence
    loss = masked_diffusion_loss(perfect, x, torch.ones_like(x, dtype=torch.bool), K - 1)
    assert loss.item() < 1e-12


def test_reveal_counts():
    assert reveal_counts(10, 4) == [3, 3, 2, 2] and reveal_counts(5, 5) == [1] * 5
    with pytest.raises(ValueError, match="steps must be in"):
        reveal_counts(4, 5)


def _fixed_logits(target: torch.Tensor, K: int, scale: float = 20.0):
    """Logits putting (almost) all mass on target (N, S) ids."""
    return lambda xt: torch.nn.functional.one_hot(target, K).float() * scale


def test_sampler_fills_only_slots_with_allowed_ids_and_is_batch_independent():
    K, S, N = 12, 8, 6
    allowed = torch.tensor([3, 4, 5, 6])
    x0 = torch.randint(K, (N, S))
    slots = torch.zeros(N, S, dtype=torch.bool)
    slots[:, :5] = True
    # logits favouring a disallowed id (0) everywhere, then the allowed ones at random: 0 must never appear
    base = torch.randn(N, S, K)
    base[..., 0] = 100.0

    def logits_fn(x, base=base):
        return base[:len(x)]

    out = sample_slots(logits_fn, x0, slots, allowed, mask_id=11, rng=PerSampleRNG(1, range(N)), steps=3)
    assert torch.isin(out[slots], allowed).all()
    assert torch.equal(out[~slots], x0[~slots])
    # the same samples drawn in two batches (global indices 0-2 and 3-5)
    a = sample_slots(lambda x: base[:3], x0[:3], slots[:3], allowed, 11, PerSampleRNG(1, range(3)), steps=3)
    b = sample_slots(lambda x: base[3:], x0[3:], slots[3:], allowed, 11, PerSampleRNG(1, range(3, 6)), steps=3)
    assert torch.equal(torch.cat([a, b]), out)


def test_sampler_recovers_a_deterministic_target_and_unmasks_the_most_confident_first():
    K, S, N = 10, 6, 4
    target = torch.randint(2, 8, (N, S))
    slots = torch.ones(N, S, dtype=torch.bool)
    seen = []

    def logits_fn(x):
        seen.append((x == 9).clone())
        conf = torch.arange(S, 0, -1).float()[None, :, None]              # position 0 most confident
        return torch.nn.functional.one_hot(target, K).float() * conf
    out = sample_slots(logits_fn, torch.zeros(N, S, dtype=torch.long), slots, torch.arange(2, 8), 9,
                       PerSampleRNG(0, range(N)), steps=S, temperature=0.0)
    assert torch.equal(out, target)
    # at step k exactly the positions ≥ k are still masked
    for k, m in enumerate(seen):
        assert m[0].tolist() == [j >= k for j in range(S)]


def test_guidance_follows_the_guided_logits():
    """cfg w: ℓ = ℓ_u + (1 + w)(ℓ_c − ℓ_u). Cond prefers id 1 slightly, uncond prefers id 1 strongly and id 2
    less: guidance pushes towards id 2 (cond − uncond largest there)."""
    N, S = 3, 2
    c = torch.tensor([0.0, 2.0, 1.9, 0.0])
    u = torch.tensor([0.0, 3.0, 0.0, 0.0])
    cond = lambda x: c.expand(len(x), S, 4)
    unc = lambda x: u.expand(len(x), S, 4)
    args = dict(slots=torch.ones(N, S, dtype=torch.bool), allowed=torch.arange(3), mask_id=3, steps=1,
                temperature=0.0)
    plain = sample_slots(cond, torch.zeros(N, S, dtype=torch.long), rng=PerSampleRNG(0, range(N)), **args)
    guided = sample_slots(cond, torch.zeros(N, S, dtype=torch.long), rng=PerSampleRNG(0, range(N)), cfg_scale=1.0,
                          uncond_fn=unc, **args)
    assert (plain == 1).all() and (guided == 2).all()
    with pytest.raises(ValueError, match="needs uncond_fn"):
        sample_slots(cond, torch.zeros(N, S, dtype=torch.long), rng=PerSampleRNG(0, range(N)), cfg_scale=1.0, **args)


# ----------------------------------------------------------------------------- a known map must be learnt
def test_model_learns_a_caption_to_code_map():
    """Eight one-word captions, each with its own fixed 4-token code: after training, the sampler given a caption
    returns its code (greedy), and the codes of different captions differ — the prompt is used."""
    torch.manual_seed(0)
    words = [f"w{i}" for i in range(8)]
    tok = WordTokenizer.build(words)
    table = torch.randint(0, 6, (8, 4))
    which = torch.randint(0, 8, (512,))
    text, _ = encode_batch(tok, [words[i] for i in which], max_len=2)
    vocab = JointVocab(n_text=len(tok), V=6, L=4, T=2)
    model = TextDLCModel(TEXT_DLC_MODELS["tiny"](vocab_size=vocab.size, seq_len=vocab.length, pad_id=vocab.pad,
                                                 hidden=64, n_layers=2))
    cfg = TextDLCTrainConfig(steps=400, batch_size=64, lr=2e-3, warmup=20, ema=0.9, p_uncond=0.1)
    _, ema, losses = train_text_dlc(model, vocab, table[which], text, tok.pad_id, cfg)
    assert np.mean(losses[-50:]) < 0.5 * np.mean(losses[:50])
    prompts, _ = encode_batch(tok, words, max_len=2)
    got = sample_codes(ema, vocab, prompts, tok.pad_id, steps=4, temperature=0.0)
    assert (got == table).all(1).float().mean() >= 0.875
    guided = sample_codes(ema, vocab, prompts, tok.pad_id, steps=2, temperature=0.0, cfg_scale=1.0)
    assert (guided == table).all(1).float().mean() >= 0.875
    assert ((got >= 0) & (got < 6)).all()


def test_a_frozen_pretrained_text_encoder_conditions_as_a_prefix():
    """The second text path: all-MiniLM-L6-v2's token states (the offline pip package) as a prefix. Its states
    separate the words, and a model reading them learns the same caption → code map; with the prefix dropped
    (CFG's unconditional branch) the codes no longer follow the caption."""
    from dlc.text.encoder import FrozenTextEncoder

    enc = FrozenTextEncoder("minilm")
    words = ["red", "green", "blue", "yellow", "white", "black"]
    states, mask = enc.encode(words, max_len=4)
    assert states.shape == (6, 4, enc.dim) and enc.dim == 384 and mask[:, :3].all()
    torch.manual_seed(0)
    table = torch.randint(0, 6, (6, 4))
    which = torch.randint(0, 6, (384,))
    vocab = JointVocab(n_text=0, V=6, L=4, T=0)
    model = TextDLCModel(TEXT_DLC_MODELS["tiny"](vocab_size=vocab.size, seq_len=vocab.length, pad_id=vocab.pad,
                                                 hidden=64, n_layers=2, prefix_dim=enc.dim, prefix_len=4))
    cfg = TextDLCTrainConfig(steps=300, batch_size=64, lr=2e-3, warmup=20, ema=0.9)
    _, ema, _ = train_text_dlc(model, vocab, table[which], None, 0, cfg, prefix=states[which], prefix_mask=mask[which])
    got = sample_codes(ema, vocab, None, 0, steps=4, temperature=0.0, prefix=states, prefix_mask=mask)
    assert (got == table).all(1).float().mean() >= 5 / 6
    blind = sample_codes(ema, vocab, None, 0, steps=4, temperature=0.0, prefix=states,
                         prefix_mask=torch.zeros_like(mask))
    assert (blind == blind[0]).all()                  # without the caption every prompt gets the same code
