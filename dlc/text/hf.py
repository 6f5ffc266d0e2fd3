"""Text → DLC with a pretrained masked-diffusion LM (DLC paper, Sec. 6): LLaDA-8B (or any Hugging Face masked LM)
fine-tuned on [caption | <|start_sem|> | DLC] sequences with the loss, sampler and training loop of
`dlc.text.diffusion` / `dlc.text.train`.

The tokenizer gains V + 1 special tokens, `<|start_sem|>` and `<|sem_vocab_0|>` … `<|sem_vocab_{V−1}|>` (a code
value v is the token <|sem_vocab_v|>), plus `<|pad|>` when it has no pad token distinct from EOS and `<|mask|>` when
it has no mask token (LLaDA's is `<|mdm_mask|>`, id 126336); the embeddings are resized to match. A sequence has the
fixed length S = 1 + T + 1 + L + 1:

    position        0      1 … n          n+1             n+2 … n+1+L       n+2+L     n+3+L … S−1
    token           BOS    caption        <|start_sem|>   sem_1 … sem_L     EOS       PAD …

n ≤ T is the caption's length in tokens: the caption is not padded, so the code slots (the L positions after
<|start_sem|>) sit at a different place in each row and are found from <|start_sem|>. BOS is at position 0 in
training and sampling sequences alike. PAD is never attended to and never predicted; BOS, the caption,
<|start_sem|>, the codes and EOS are all maskable (joint masking). `HFLayout` has the duck interface of
`dlc.text.model.JointVocab` that `train_text_dlc` / `sample_codes` use; `HFCodeModel` maps (N, S) ids to (N, S, K)
float32 logits with attention_mask = (x != PAD).

Nothing downloads unless `load_masked_lm` is given a hub id on a machine with access (HF_HUB_OFFLINE=1 or
TRANSFORMERS_OFFLINE=1: local directories and the local cache only).
"""
from __future__ import annotations

import inspect
import os
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn

from ..validate import check, choice, in_range
from .tokenizer import HFTokenizer
from .train import TextDLCTrainConfig

__all__ = ["LLADA_8B", "START_SEM", "sem_token", "CodeTokens", "HFLayout", "add_code_tokens", "HFCodeModel",
           "HFCaptionTokenizer", "load_masked_lm", "LLaDAFinetuneConfig"]

LLADA_8B = "GSAI-ML/LLaDA-8B-Base"
START_SEM = "<|start_sem|>"
LLADA_MASK = "<|mdm_mask|>"                     # LLaDA's diffusion mask token (id 126336)
PAD_TOKEN, MASK_TOKEN, BOS_TOKEN, EOS_TOKEN = "<|pad|>", "<|mask|>", "<|bos|>", "<|eos|>"


def sem_token(i: int) -> str:
    """The token of code value i."""
    return f"<|sem_vocab_{i}|>"


#################################################################################
#                                    Layout                                     #
#################################################################################

@dataclass(frozen=True)
class CodeTokens:
    """The token ids a layout needs (what `add_code_tokens` returns); `added`: the tokens it added."""
    bos: int
    eos: int
    pad: int
    mask: int
    start_sem: int
    sem_ids: tuple[int, ...]
    added: tuple[str, ...] = ()

    def layout(self, *, L: int, T: int) -> "HFLayout":
        return HFLayout(L=L, T=T, bos=self.bos, eos=self.eos, pad=self.pad, mask=self.mask,
                        start_sem=self.start_sem, sem_ids=self.sem_ids)


@dataclass(frozen=True)
class HFLayout:
    """[BOS] caption [<|start_sem|>] sem_1 … sem_L [EOS] PAD… sequences of length 1+T+1+L+1 (see the module doc):
    the `JointVocab` interface (L, V, T, mask, pad, length, sequence, text_slots, code_slots, code_ids, to_codes)
    over a pretrained tokenizer's ids."""
    L: int
    T: int
    bos: int
    eos: int
    pad: int
    mask: int
    start_sem: int
    sem_ids: tuple[int, ...]
    _sorted: tuple[torch.Tensor, torch.Tensor] = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "sem_ids", tuple(int(i) for i in self.sem_ids))
        if self.L < 1 or self.T < 0:
            raise ValueError(f"an HFLayout needs L ≥ 1 code slots and T ≥ 0 caption tokens (got L={self.L}, "
                             f"T={self.T})")
        if not self.sem_ids or len(set(self.sem_ids)) != len(self.sem_ids):
            raise ValueError("sem_ids must be V ≥ 1 distinct token ids (one per code value)")
        named = {"pad": self.pad, "mask": self.mask, "start_sem": self.start_sem}
        for name, i in named.items():      # BOS may equal EOS (BOS is found by position, EOS never looked for)
            others = {n: j for n, j in {**named, "bos": self.bos, "eos": self.eos}.items() if n != name}
            clash = [f"the {n} id" for n, j in others.items() if j == i] + (["a sem token"] if i in self.sem_ids
                                                                              else [])
            if clash:
                raise ValueError(f"the {name} id {i} is also {clash[0]}; the layout needs distinct "
                                 "pad, mask and <|start_sem|> tokens (add_code_tokens adds <|pad|> / <|mask|>)")
        if {self.bos, self.eos} & set(self.sem_ids):
            raise ValueError("BOS / EOS must not be sem tokens")
        ids = torch.tensor(self.sem_ids, dtype=torch.long)
        object.__setattr__(self, "_sorted", ids.sort())          # (values, order): id → code value lookups

    @property
    def V(self) -> int:
        return len(self.sem_ids)

    @property
    def length(self) -> int:
        return 1 + self.T + 1 + self.L + 1

    def code_ids(self, device=None) -> torch.Tensor:
        """(V,) the token ids of the code values, in value order."""
        return torch.tensor(self.sem_ids, dtype=torch.long, device=device)

    def sequence(self, codes: torch.Tensor | None, text: torch.Tensor | None, text_pad: int) -> torch.Tensor:
        """(N, S) ids: BOS, the caption's tokens (text (N, W) tokenizer ids, `text_pad` entries dropped, at most T
        left per row; None: no caption), <|start_sem|>, the codes (N, L) in [0, V) as sem tokens (None: MASK), EOS,
        then PAD."""
        if codes is None and text is None:
            raise ValueError("give codes, text or both")
        n = len(codes) if codes is not None else len(text)
        dev = codes.device if codes is not None else text.device
        x = torch.full((n, self.length), self.pad, dtype=torch.long, device=dev)  # (N, S)
        x[:, 0] = self.bos
        if text is not None and text.shape[1]:
            text = text.to(dev).long()
            if len(text) != n:
                raise ValueError(f"text has {len(text)} rows but codes {n}")
            keep = text != text_pad                                                 # (N, W)
            lens = keep.sum(1)                                                      # (N,)
            if n and int(lens.max()) > self.T:
                raise ValueError(f"a caption has {int(lens.max())} tokens; this layout holds T={self.T} (cut "
                                 "captions with encode_batch(tokenizer, captions, T))")
            if (text[keep] == self.start_sem).any():
                raise ValueError(f"a caption holds the {START_SEM} token; captions must not contain it")
            order = torch.sort((~keep).to(torch.uint8), dim=1, stable=True).indices  # caption tokens first
            w = min(text.shape[1], self.T)
            packed = text.gather(1, order)[:, :w]                                   # (N, w)
            x[:, 1:1 + w] = torch.where(torch.arange(w, device=dev)[None] < lens[:, None], packed, self.pad)
        else:
            lens = torch.zeros(n, dtype=torch.long, device=dev)
        start = 1 + lens[:, None]                                                   # (N, 1) <|start_sem|>
        x.scatter_(1, start, self.start_sem)
        if codes is None:
            c = torch.full((n, self.L), self.mask, dtype=torch.long, device=dev)
        else:
            if codes.shape != (n, self.L):
                raise ValueError(f"codes must be (N, {self.L}) values in [0, {self.V}) (got {tuple(codes.shape)})")
            codes = codes.to(dev).long()
            if len(codes) and (int(codes.min()) < 0 or int(codes.max()) >= self.V):
                raise ValueError(f"codes must be in [0, {self.V})")
            c = self.code_ids(dev)[codes]                                           # (N, L)
        x.scatter_(1, start + 1 + torch.arange(self.L, device=dev)[None], c)
        x.scatter_(1, start + 1 + self.L, self.eos)
        return x

    def _start(self, x: torch.Tensor) -> torch.Tensor:
        """(N,) the position of each row's first <|start_sem|>."""
        is_start = x == self.start_sem                                              # (N, S)
        if len(x) and not is_start.any(1).all():
            raise ValueError(f"a row holds no {START_SEM} token: not a sequence of this layout")
        return is_start.to(torch.uint8).argmax(1)                                   # first maximum

    def code_slots(self, x: torch.Tensor) -> torch.Tensor:
        """(N, S) bool: the L positions after <|start_sem|>."""
        pos = torch.arange(x.shape[1], device=x.device)[None]                      # (1, S)
        s = self._start(x)[:, None]
        return (pos > s) & (pos <= s + self.L)

    def text_slots(self, x: torch.Tensor) -> torch.Tensor:
        """(N, S) bool: the caption positions (between BOS and <|start_sem|>)."""
        pos = torch.arange(x.shape[1], device=x.device)[None]
        return (pos >= 1) & (pos < self._start(x)[:, None])

    def to_codes(self, x: torch.Tensor) -> torch.Tensor:
        """(N, L) code values of the code slots; −1 where a slot holds no sem token."""
        s = self._start(x)[:, None]
        c = x.gather(1, s + 1 + torch.arange(self.L, device=x.device)[None])       # (N, L) token ids
        ids, order = (t.to(x.device) for t in self._sorted)
        at = torch.searchsorted(ids, c).clamp_max(len(ids) - 1)
        return torch.where(ids[at] == c, order[at], torch.full_like(c, -1))


#################################################################################
#                           Tokens, model and loading                           #
#################################################################################

def add_code_tokens(tokenizer, model: nn.Module | None, V: int) -> CodeTokens:
    """Add <|start_sem|> and the V <|sem_vocab_i|> tokens (and <|pad|> / <|mask|> / <|bos|> / <|eos|> where the
    tokenizer lacks one) as special tokens, then resize the model's token embeddings to len(tokenizer). Tokens
    already in the vocabulary (a tokenizer saved after fine-tuning) are reused, not added twice.

    BOS: bos_token, else cls_token; EOS: eos_token, else sep_token; PAD: pad_token unless it is missing or equals
    EOS (LLaDA's does); MASK: <|mdm_mask|> if in the vocabulary (LLaDA's pretraining mask), else mask_token."""
    if V < 1:
        raise ValueError(f"V must be ≥ 1 (got {V})")
    vocab = before_vocab = tokenizer.get_vocab()
    before = len(tokenizer)
    named: dict[str, str] = {}
    if tokenizer.bos_token_id is None and tokenizer.cls_token_id is None:
        named["bos_token"] = BOS_TOKEN
    if tokenizer.eos_token_id is None and tokenizer.sep_token_id is None:
        named["eos_token"] = EOS_TOKEN
    eos_now = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
    if tokenizer.pad_token_id is None or tokenizer.pad_token_id == eos_now:
        named["pad_token"] = PAD_TOKEN
    if LLADA_MASK not in vocab and tokenizer.mask_token_id is None:
        named["mask_token"] = MASK_TOKEN
    if named:
        tokenizer.add_special_tokens(named)
    extra = [t for t in [START_SEM] + [sem_token(i) for i in range(V)] if t not in vocab]
    if extra:
        kw = "replace_extra_special_tokens" if "replace_extra_special_tokens" in \
            inspect.signature(tokenizer.add_special_tokens).parameters else "replace_additional_special_tokens"
        tokenizer.add_special_tokens({"additional_special_tokens": extra}, **{kw: False})
    vocab = tokenizer.get_vocab()
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.cls_token_id
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
    mask = vocab[LLADA_MASK] if LLADA_MASK in vocab else tokenizer.mask_token_id
    tokens = CodeTokens(bos=bos, eos=eos, pad=tokenizer.pad_token_id, mask=mask, start_sem=vocab[START_SEM],
                        sem_ids=tuple(vocab[sem_token(i)] for i in range(V)),
                        added=tuple(t for t in named.values() if t not in before_vocab) + tuple(extra))
    if len(tokenizer) != before + len(tokens.added):
        raise RuntimeError(f"the tokenizer grew by {len(tokenizer) - before} tokens, not {len(tokens.added)}")
    if model is not None:
        model.resize_token_embeddings(len(tokenizer))
        cfg = getattr(model, "config", None)
        if isinstance(getattr(cfg, "embedding_size", None), int):   # LLaDA builds its embeddings from this
            cfg.embedding_size = len(tokenizer)
    return tokens


class HFCodeModel(nn.Module):
    """A Hugging Face masked LM as the text-to-DLC network: x (N, S) ids → logits (N, S, K) float32, attending to
    the non-PAD tokens only. `hf` is the wrapped model (save it with hf.save_pretrained)."""

    def __init__(self, hf: nn.Module, pad: int):
        super().__init__()
        self.hf = hf
        self.pad = int(pad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.hf(input_ids=x, attention_mask=(x != self.pad).long())
        logits = out.logits if hasattr(out, "logits") else out[0]
        return logits.float()                                                   # (N, S, K)


class HFCaptionTokenizer(HFTokenizer):
    """`HFTokenizer` over an already loaded tokenizer (with the code tokens added); pad_id is the layout's PAD,
    so `encode_batch(tok, captions, T)` and `layout.sequence(codes, text, tok.pad_id)` agree."""

    def __init__(self, tok, pad_id: int, name: str):
        self.tok, self.pad_id, self.name = tok, int(pad_id), name


_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float": torch.float32, "bfloat16": torch.bfloat16,
           "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16, "half": torch.float16}


def _torch_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    key = str(dtype).strip().lower()
    if key not in _DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; use float32, bfloat16 or float16")
    return _DTYPES[key]


def _offline() -> bool:
    return any(os.environ.get(k, "").strip().lower() in ("1", "true", "yes", "on")
               for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _cannot_load(name: str, e: BaseException) -> OSError:
    why = str(e).strip().splitlines()[0][:200] if str(e).strip() else e.__class__.__name__
    return OSError(f"cannot load {name} ({e.__class__.__name__}: {why}): give a local directory holding the model, "
                   "or a hub id reachable from this machine")


def load_masked_lm(name_or_path: str, *, V: int, L: int, T: int, dtype: str | torch.dtype = "bfloat16",
                   device: torch.device | str = "cpu", trust_remote_code: bool = True,
                   local_files_only: bool | None = None) -> tuple[HFCodeModel, HFLayout, HFCaptionTokenizer]:
    """A pretrained bidirectional masked LM (hub id such as LLADA_8B, or a local directory) with the code tokens
    added: (network, layout of length 1+T+1+L+1, caption tokenizer). The model class is AutoModelForMaskedLM (BERT
    and the like), else AutoModel (LLaDA's remote code registers AutoModel → LLaDAModelLM, which returns .logits).
    `local_files_only` None: True when HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE is set. Raises OSError when the
    model cannot be had (offline, missing, no access)."""
    import transformers
    from transformers import AutoModel, AutoModelForMaskedLM, AutoTokenizer

    torch_dtype = _torch_dtype(dtype)
    path = os.path.expanduser(name_or_path)
    if not os.path.isdir(path) and (path.startswith((".", "/")) or path.count("/") > 1):   # not owner/name
        raise OSError(f"cannot load {name_or_path} (no such directory): give a local directory holding the model, "
                      "or a hub id reachable from this machine")
    only_local = _offline() if local_files_only is None else local_files_only
    common: dict[str, Any] = {"trust_remote_code": trust_remote_code, "local_files_only": only_local}
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, **common)
    except (OSError, ValueError) as e:
        raise _cannot_load(name_or_path, e) from None
    dtype_kw = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"
    model, errors = None, []
    for auto in (AutoModelForMaskedLM, AutoModel):
        try:
            model = auto.from_pretrained(path, **common, **{dtype_kw: torch_dtype})
        except OSError as e:                      # missing files / offline: no other class will do better
            raise _cannot_load(name_or_path, e) from None
        except ValueError as e:                   # this Auto class does not know the architecture
            errors.append(f"{auto.__name__}: {str(e).splitlines()[0][:120]}")
            continue
        if model.get_output_embeddings() is None:  # AutoModel gave a bare encoder without an LM head
            errors.append(f"{auto.__name__}: {type(model).__name__} has no LM head")
            model = None
            continue
        break
    if model is None:
        raise ValueError(f"{name_or_path} is not a masked LM that returns token logits ({'; '.join(errors)})")
    model = model.to(device)
    tokens = add_code_tokens(tokenizer, model, V)
    layout = tokens.layout(L=L, T=T)
    return HFCodeModel(model, layout.pad), layout, HFCaptionTokenizer(tokenizer, layout.pad, name_or_path)


#################################################################################
#                         The paper's fine-tuning settings                      #
#################################################################################

@dataclass(frozen=True)
class LLaDAFinetuneConfig:
    """Fine-tuning LLaDA-8B-Base on [caption | <|start_sem|> | DLC] sequences (DLC paper, Sec. 6; the reference
    launch: 4 × H100, bf16, DeepSpeed ZeRO-2, per-device batch 4 × 8 accumulation = 128, sequences of 640 tokens,
    V = 256, L = 512). Meant for GPUs under torchrun / accelerate with sharded optimizer states (an 8B model with
    AdamW does not fit one device); nothing here runs it. `train_config()` gives the `TextDLCTrainConfig` of the
    shared loop."""
    model: str = LLADA_8B
    dtype: str = "bfloat16"
    V: int = 256
    L: int = 512
    max_caption_tokens: int = 125     # T: 1 + T + 1 + L + 1 = 640 tokens
    lr: float = 2.5e-5                # constant after warm-up (the reference: 1e-5, cosine-decayed)
    batch_size: int = 128             # global (devices × per-device batch × accumulation)
    steps: int = 600_000
    warmup: int = 5
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    p_uncond: float = 0.1
    ema: float = 0.0                  # no averaging, as the reference trainer (the loop still holds a copy)
    seed: int = 0

    def __post_init__(self):
        check(self, positive=("V", "L", "max_caption_tokens", "lr", "batch_size", "steps"),
              non_negative=("warmup", "weight_decay"), probability=("ema",))
        in_range("p_uncond", self.p_uncond, 0.0, 1.0, hi_open=True)
        choice("dtype", self.dtype, ("bfloat16", "float16", "float32"))

    @property
    def seq_len(self) -> int:
        return 1 + self.max_caption_tokens + 1 + self.L + 1

    def train_config(self, **overrides) -> TextDLCTrainConfig:
        kw = {"steps": self.steps, "batch_size": self.batch_size, "lr": self.lr, "weight_decay": self.weight_decay,
              "warmup": self.warmup, "grad_clip": self.grad_clip, "p_uncond": self.p_uncond, "ema": self.ema,
              "seed": self.seed}
        return TextDLCTrainConfig(**{**kw, **overrides})
