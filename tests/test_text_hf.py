"""dlc.text.hf: a pretrained masked LM (here a tiny random BERT with the offline MiniLM tokenizer, saved to a local
directory and loaded back) as the text-to-DLC network, with the shared loss, sampler and training loop."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

transformers = pytest.importorskip("transformers")

from dlc.text import TextDLCTrainConfig, encode_batch, minilm_path, sample_codes, train_text_dlc  # noqa: E402
from dlc.text.hf import (LLADA_8B, START_SEM, HFCodeModel, HFLayout, LLaDAFinetuneConfig,  # noqa: E402
                         add_code_tokens, load_masked_lm, sem_token)

V, L, T = 8, 4, 12
CAPTIONS = ["a small red circle on a white background", "a large blue square"]


def _tiny_bert(vocab_size: int):
    cfg = transformers.BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                                  vocab_size=vocab_size, max_position_embeddings=64, hidden_dropout_prob=0.0,
                                  attention_probs_dropout_prob=0.0)
    torch.manual_seed(0)
    return transformers.BertForMaskedLM(cfg)


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    """A local directory holding the MiniLM tokenizer and a tiny random BertForMaskedLM of its vocabulary."""
    d = tmp_path_factory.mktemp("tiny-bert")
    tok = transformers.AutoTokenizer.from_pretrained(minilm_path())
    tok.save_pretrained(d)
    _tiny_bert(len(tok)).save_pretrained(d)
    return str(d), len(tok)


@pytest.fixture()
def loaded(bert_dir):
    return load_masked_lm(bert_dir[0], V=V, L=L, T=T, dtype="float32")


def test_code_tokens_are_added_and_the_embeddings_resized(bert_dir, loaded):
    net, layout, tok = loaded
    n_before = bert_dir[1]
    assert len(tok) == n_before + V + 1                    # <|start_sem|> + V sem tokens; BERT has pad and mask
    assert net.hf.get_input_embeddings().weight.shape[0] == len(tok)
    assert net.hf.get_output_embeddings().weight.shape[0] == len(tok)
    assert net.hf.config.vocab_size == len(tok)
    assert layout.V == V and layout.L == L and layout.T == T and layout.length == 1 + T + 1 + L + 1
    assert layout.sem_ids == tuple(tok.tok.convert_tokens_to_ids(sem_token(i)) for i in range(V))
    assert layout.start_sem == tok.tok.convert_tokens_to_ids(START_SEM)
    assert (layout.bos, layout.eos, layout.pad, layout.mask) == (tok.tok.cls_token_id, tok.tok.sep_token_id,
                                                                tok.tok.pad_token_id, tok.tok.mask_token_id)
    assert tok.pad_id == layout.pad
    # sem tokens are whole tokens of the tokenizer; a second call reuses them
    assert tok.tok(sem_token(3), add_special_tokens=False)["input_ids"] == [layout.sem_ids[3]]
    again = add_code_tokens(tok.tok, None, V)
    assert again.added == () and again.sem_ids == layout.sem_ids and len(tok) == n_before + V + 1


def test_pad_and_mask_tokens_are_added_when_missing_or_pad_is_eos(bert_dir):
    tok = transformers.AutoTokenizer.from_pretrained(bert_dir[0])
    tok.add_special_tokens({"eos_token": "[SEP]"})
    tok.pad_token = tok.eos_token                          # LLaDA's tokenizer pads with EOS
    tok.mask_token = None
    n = len(tok)
    model = _tiny_bert(n)
    tokens = add_code_tokens(tok, model, 5)
    assert set(tokens.added) >= {"<|pad|>", "<|mask|>", START_SEM} and len(tok) == n + 5 + 3
    assert tokens.pad != tokens.eos and tokens.mask == tok.convert_tokens_to_ids("<|mask|>")
    assert model.get_input_embeddings().weight.shape[0] == len(tok)
    tokens.layout(L=3, T=4)                                # distinct ids: a valid layout


def test_layout_puts_bos_first_and_exactly_L_code_slots_after_start_sem(loaded):
    net, layout, tok = loaded
    text, cut = encode_batch(tok, CAPTIONS + ["red"], T)
    assert cut == 0
    codes = torch.tensor([[0, 1, 2, 3], [7, 6, 5, 4], [3, 3, 0, 7]])
    lens = (text != tok.pad_id).sum(1)
    for x in (layout.sequence(codes, text, tok.pad_id), layout.sequence(None, text, tok.pad_id)):
        assert x.shape == (3, layout.length)
        assert (x[:, 0] == layout.bos).all()               # BOS at position 0 in training and sampling alike
        start = (x == layout.start_sem).long().argmax(1)
        assert torch.equal(start, 1 + lens)                # the caption is not padded
        slots = layout.code_slots(x)
        assert (slots.sum(1) == L).all()
        for i in range(3):
            assert slots[i, start[i] + 1:start[i] + 1 + L].all()
            assert torch.equal(x[i, 1:1 + lens[i]], text[i, :lens[i]])
            assert x[i, start[i] + 1 + L] == layout.eos and (x[i, start[i] + 2 + L:] == layout.pad).all()
        assert torch.equal(layout.text_slots(x).sum(1), lens)
    x = layout.sequence(codes, text, tok.pad_id)
    assert torch.equal(layout.to_codes(x), codes)
    assert (layout.to_codes(layout.sequence(None, text, tok.pad_id)) == -1).all()
    # what the trainer does for prompt dropout: masked captions keep the code slots where they were
    xm = torch.where(layout.text_slots(x), torch.full_like(x, layout.mask), x)
    assert torch.equal(layout.code_slots(xm), layout.code_slots(x)) and torch.equal(layout.to_codes(xm), codes)
    assert torch.equal(layout.code_ids(), torch.tensor(layout.sem_ids))
    with pytest.raises(ValueError, match="T=12"):
        layout.sequence(None, encode_batch(tok, ["one two three four five six seven eight nine ten eleven twelve "
                                                 "thirteen"], 20)[0], tok.pad_id)
    with pytest.raises(ValueError, match=r"\[0, 8\)"):
        layout.sequence(codes + 1, text, tok.pad_id)


def test_sampling_gives_codes_in_range_even_from_an_untrained_model(loaded):
    net, layout, tok = loaded
    text, _ = encode_batch(tok, CAPTIONS, T)
    with torch.no_grad():                                  # the untrained model prefers other tokens
        logits = net(layout.sequence(None, text, tok.pad_id))
    assert logits.dtype == torch.float32 and logits.shape == (2, layout.length, len(tok))
    codes = sample_codes(net, layout, text, tok.pad_id, steps=2, seed=1)
    assert codes.shape == (2, L) and codes.min() >= 0 and codes.max() < V
    again = sample_codes(net, layout, text, tok.pad_id, steps=2, seed=1, cfg_scale=1.0)
    assert again.shape == (2, L) and again.min() >= 0 and again.max() < V


def test_fine_tuning_learns_a_known_caption_to_code_map(bert_dir):
    torch.manual_seed(0)                                   # the new embedding rows are drawn at resizing
    net, layout, tok = load_masked_lm(bert_dir[0], V=V, L=L, T=T, dtype="float32")
    text, _ = encode_batch(tok, CAPTIONS, T)
    codes = torch.tensor([[1, 5, 2, 7], [6, 0, 3, 4]])
    # the loss covers the caption tokens too (joint masking) over BERT's 30k-token vocabulary
    cfg = TextDLCTrainConfig(steps=120, batch_size=4, lr=3e-3, warmup=10, p_uncond=0.0, ema=0.0, log_every=50)
    model, _, losses = train_text_dlc(net, layout, codes, text, tok.pad_id, cfg)
    first, last = sum(losses[:15]) / 15, sum(losses[-15:]) / 15
    assert last < 0.5 * first, (first, last)
    got = sample_codes(model, layout, text, tok.pad_id, steps=L, temperature=0.0)
    assert torch.equal(got, codes)


def test_bfloat16_loads_bfloat16_weights_and_gives_float32_logits(bert_dir):
    net, layout, tok = load_masked_lm(bert_dir[0], V=V, L=L, T=T, dtype="bfloat16")
    assert {p.dtype for p in net.parameters()} == {torch.bfloat16}
    text, _ = encode_batch(tok, CAPTIONS, T)
    with torch.no_grad():
        assert net(layout.sequence(None, text, tok.pad_id)).dtype == torch.float32


def test_a_model_that_only_AutoModel_knows_is_loaded_through_it(tmp_path, bert_dir):
    """LLaDA's remote code registers AutoModel → LLaDAModelLM (logits, `embedding_size` in its config)."""
    from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel
    from transformers.modeling_outputs import CausalLMOutputWithPast

    class TinyMDMConfig(PretrainedConfig):
        model_type = "tiny-mdm-test"

        def __init__(self, vocab_size=8, d_model=16, embedding_size=None, **kw):
            self.vocab_size, self.d_model, self.embedding_size = vocab_size, d_model, embedding_size
            super().__init__(**kw)

    class TinyMDM(PreTrainedModel):
        config_class = TinyMDMConfig

        def __init__(self, config):
            super().__init__(config)
            self.wte = nn.Embedding(config.embedding_size or config.vocab_size, config.d_model)
            self.mix = nn.TransformerEncoderLayer(config.d_model, 2, 32, 0.0, batch_first=True)
            self.ff_out = nn.Linear(config.d_model, config.embedding_size or config.vocab_size, bias=False)
            self.post_init()

        def forward(self, input_ids, attention_mask=None):
            h = self.mix(self.wte(input_ids), src_key_padding_mask=None if attention_mask is None
                         else attention_mask == 0)
            return CausalLMOutputWithPast(logits=self.ff_out(h))

        def get_input_embeddings(self):
            return self.wte

        def set_input_embeddings(self, value):
            self.wte = value

        def get_output_embeddings(self):
            return self.ff_out

        def set_output_embeddings(self, value):
            self.ff_out = value

    AutoConfig.register(TinyMDMConfig.model_type, TinyMDMConfig, exist_ok=True)
    AutoModel.register(TinyMDMConfig, TinyMDM, exist_ok=True)
    tok = transformers.AutoTokenizer.from_pretrained(bert_dir[0])
    tok.save_pretrained(tmp_path)
    TinyMDM(TinyMDMConfig(vocab_size=len(tok), embedding_size=len(tok))).save_pretrained(tmp_path)
    net, layout, ctok = load_masked_lm(str(tmp_path), V=V, L=L, T=T, dtype="float32")
    assert isinstance(net.hf, TinyMDM)
    assert net.hf.config.embedding_size == len(ctok) == net.hf.wte.weight.shape[0]
    codes = sample_codes(net, layout, encode_batch(ctok, CAPTIONS, T)[0], ctok.pad_id, steps=2)
    assert codes.min() >= 0 and codes.max() < V


def test_a_model_without_an_lm_head_is_refused(tmp_path, bert_dir):
    tok = transformers.AutoTokenizer.from_pretrained(bert_dir[0])
    tok.save_pretrained(tmp_path)
    transformers.GPT2Model(transformers.GPT2Config(vocab_size=len(tok), n_embd=16, n_layer=1, n_head=2,
                                                   n_positions=32)).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="not a masked LM"):
        load_masked_lm(str(tmp_path), V=V, L=L, T=T, dtype="float32")


def test_loading_llada_offline_raises_one_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))    # no cached copy either
    with pytest.raises(OSError, match="cannot load GSAI-ML/LLaDA-8B-Base .*local directory"):
        load_masked_lm(LLADA_8B, V=256, L=512, T=64)
    with pytest.raises(OSError, match="no such directory"):
        load_masked_lm(str(tmp_path / "missing"), V=V, L=L, T=T)


def test_layout_and_config_validation():
    with pytest.raises(ValueError, match="pad id"):
        HFLayout(L=2, T=2, bos=0, eos=1, pad=1, mask=2, start_sem=3, sem_ids=(4, 5))
    with pytest.raises(ValueError, match="sem token"):
        HFLayout(L=2, T=2, bos=0, eos=1, pad=6, mask=2, start_sem=4, sem_ids=(4, 5))
    lay = HFLayout(L=2, T=0, bos=0, eos=0, pad=6, mask=2, start_sem=3, sem_ids=(5, 4))   # BOS may be EOS
    x = lay.sequence(torch.tensor([[1, 0]]), None, 0)
    assert x.tolist() == [[0, 3, 4, 5, 0]] and lay.to_codes(x).tolist() == [[1, 0]]
    cfg = LLaDAFinetuneConfig()
    assert cfg.model == LLADA_8B and cfg.dtype == "bfloat16" and (cfg.V, cfg.L) == (256, 512)
    assert cfg.seq_len == 640 and cfg.train_config().lr == cfg.lr
    with pytest.raises(ValueError, match="lr"):
        LLaDAFinetuneConfig(lr=0)
    with pytest.raises(ValueError, match="dtype"):
        LLaDAFinetuneConfig(dtype="int8")


def test_a_fine_tuned_backbone_is_stored_and_read_back_by_the_text_stage(bert_dir, tmp_path):
    """bench.stages.text keeps a fine-tuned backbone (save_pretrained, safetensors) and reads it back through
    load_masked_lm: the same layout, tokenizer and logits, the code tokens found rather than added twice."""
    from bench.stages import text as stext

    torch.manual_seed(0)
    net, layout, tok = load_masked_lm(bert_dir[0], V=V, L=L, T=T, dtype="float32")
    cfg = stext.TextModelConfig(backbone=bert_dir[0], max_text_len=T)
    value = {"model": net.eval(), "vocab": layout, "tokenizer": tok, "config": cfg, "losses": np.array([1.0, 0.5]),
             "cut": 0}
    stext.TEXT_MODEL.save(value, tmp_path)
    back = stext.TEXT_MODEL.load(tmp_path)
    assert back["vocab"] == layout and back["config"] == cfg and back["losses"].tolist() == [1.0, 0.5]
    assert len(back["tokenizer"]) == len(tok) and back["tokenizer"].pad_id == tok.pad_id
    text, _ = encode_batch(tok, CAPTIONS, T)
    x = layout.sequence(None, text, tok.pad_id)
    with torch.no_grad():
        assert torch.allclose(back["model"](x), net(x), atol=1e-5)
    assert not list(tmp_path.rglob("*.bin"))                 # safetensors only
