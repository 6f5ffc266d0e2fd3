"""DLC export: every image of a data set → discrete codes, soft SEMs and the continuous embedding, on disk.

A `DLCArtifact` is a directory of .npy files plus `meta.json`:

    tokens.npy       (N, L) int16 (int32 when V > 32767)   the DLC: argmax per position, all < V
    soft.npy         (N, L, V) float16                     softmax(logits / τ) at the export temperature τ
    embedding.npy    (N, D) float32                        the backbone's continuous embedding (DINOv2 / RCG)
    labels.npy       (N,) int64                            class labels, when the source has them
    factor_<f>.npy   (N,) int64                            factor labels (shapes), when the source has them
    meta.json        L, V, τ, N, the encoder spec, the source data set, file list and format version

The directory is written next to its final place and renamed into it, so a crash never leaves a half-written
artifact under `path`. Load with `DLCArtifact.load(path, mmap=True)` to memory-map large soft arrays.
Export is DDP-aware: under torchrun each rank encodes its strided share and the results are gathered.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.data import Dataset

from .. import dist as ddist
from ..common import atomic_write, autocast, resolve_device
from ..data.base import ImageData, check_images_uint8

__all__ = ["DLCArtifact", "export_codes", "ARTIFACT_FORMAT"]

ARTIFACT_FORMAT = "dlc-artifact/1"


#################################################################################
#                                  The artifact                                 #
#################################################################################

@dataclass
class DLCArtifact:
    """Discrete codes (N, L) < V, optional soft SEMs (N, L, V) and continuous embeddings (N, D), with labels."""
    tokens: torch.Tensor
    V: int
    soft: torch.Tensor | None = None
    embedding: torch.Tensor | None = None
    labels: torch.Tensor | None = None
    factors: dict[str, torch.Tensor] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        t = self.tokens
        if not isinstance(t, torch.Tensor) or t.ndim != 2:
            raise ValueError(f"tokens must be a (N, L) tensor; got {getattr(t, 'shape', type(t).__name__)}")
        if t.dtype.is_floating_point:
            raise ValueError(f"tokens must be integers (got {t.dtype})")
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= self.V):
            raise ValueError(f"tokens must lie in [0, V={self.V}); found values in [{int(t.min())}, {int(t.max())}]")
        n, L = t.shape
        if self.soft is not None and tuple(self.soft.shape) != (n, L, self.V):
            raise ValueError(f"soft SEMs have shape {tuple(self.soft.shape)}; expected (N, L, V) = {(n, L, self.V)}")
        if self.embedding is not None and (self.embedding.ndim != 2 or len(self.embedding) != n):
            raise ValueError(f"embedding has shape {tuple(self.embedding.shape)}; expected ({n}, D)")
        if self.labels is not None and tuple(self.labels.shape) != (n,):
            raise ValueError(f"labels have shape {tuple(self.labels.shape)}; expected ({n},)")
        for k, v in self.factors.items():
            if tuple(v.shape) != (n,):
                raise ValueError(f"factor {k!r} has shape {tuple(v.shape)}; expected ({n},)")

    @property
    def N(self) -> int:
        return self.tokens.shape[0]

    @property
    def L(self) -> int:
        return self.tokens.shape[1]

    def __len__(self) -> int:
        return self.N

    def save(self, path: str | os.PathLike) -> Path:
        """Write the artifact directory atomically (replacing an existing one at `path`)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
        try:
            tok_dtype = np.int16 if self.V <= np.iinfo(np.int16).max else np.int32
            arrays = {"tokens": self.tokens.cpu().numpy().astype(tok_dtype)}
            if self.soft is not None:
                arrays["soft"] = self.soft.detach().cpu().to(torch.float16).numpy()
            if self.embedding is not None:
                arrays["embedding"] = self.embedding.detach().cpu().float().numpy()
            if self.labels is not None:
                arrays["labels"] = self.labels.cpu().numpy().astype(np.int64)
            for k, v in self.factors.items():
                arrays[f"factor_{k}"] = v.cpu().numpy().astype(np.int64)
            for name, arr in arrays.items():
                with atomic_write(tmp / f"{name}.npy") as f:
                    np.save(f, np.ascontiguousarray(arr))
            meta = {**self.meta, "format": ARTIFACT_FORMAT, "N": self.N, "L": self.L, "V": self.V,
                    "files": {k: {"shape": list(a.shape), "dtype": str(a.dtype)} for k, a in arrays.items()},
                    "factors": sorted(self.factors)}
            with atomic_write(tmp / "meta.json", "w") as f:
                json.dump(meta, f, indent=2, default=str)
            old = None
            if path.exists():
                old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
                os.replace(path, old / "artifact")
            os.replace(tmp, path)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, mmap: bool = False) -> "DLCArtifact":
        """Read an artifact directory; mmap=True memory-maps the arrays instead of reading them."""
        path = Path(path)
        meta_path = path / "meta.json"
        if not meta_path.exists():
            raise FileNotFoundError(f"{meta_path} not found: {path} is not a DLC artifact "
                                    f"(write one with export_codes(...).save(path))")
        meta = json.loads(meta_path.read_text())
        if meta.get("format") != ARTIFACT_FORMAT:
            raise ValueError(f"{path} has format {meta.get('format')!r}; this code reads {ARTIFACT_FORMAT!r}")
        mode = "c" if mmap else None                                      # copy-on-write: writable, file untouched

        def read(name: str) -> torch.Tensor | None:
            f = path / f"{name}.npy"
            if name not in meta["files"]:
                return None
            if not f.exists():
                raise FileNotFoundError(f"{f} is listed in {meta_path} but missing; re-export the artifact")
            arr = np.load(f, mmap_mode=mode)
            if list(arr.shape) != meta["files"][name]["shape"]:
                raise ValueError(f"{f} has shape {arr.shape}, but meta.json says {meta['files'][name]['shape']}")
            return torch.from_numpy(arr if mmap else np.ascontiguousarray(arr))

        tokens = read("tokens")
        factors = {k: read(f"factor_{k}") for k in meta.get("factors", [])}
        V = int(meta["V"])
        known = {"format", "N", "L", "V", "files", "factors"}
        return cls(tokens=tokens if mmap else tokens.long(), V=V, soft=read("soft"), embedding=read("embedding"),
                   labels=read("labels"), factors=factors, meta={k: v for k, v in meta.items() if k not in known})


#################################################################################
#                                    Export                                     #
#################################################################################

def _source(data: Any) -> tuple[int, Any, dict]:
    """(n, fetch(indices) → uint8 (B, 3, H, W), description) for an ImageData, a uint8 tensor or a Dataset."""
    if isinstance(data, ImageData):
        if data.lazy:
            fetch = lambda idx: torch.stack([data.dataset[int(i)][0] for i in idx])
        else:
            imgs = data.images
            fetch = lambda idx: imgs[idx]
        return len(data), fetch, {"dataset": data.name, "split": data.split, "info": data.info}
    if isinstance(data, torch.Tensor):
        check_images_uint8(data, "images")
        return len(data), (lambda idx: data[idx]), {"dataset": "tensor"}
    if isinstance(data, Dataset):
        def fetch(idx):
            items = [data[int(i)] for i in idx]
            return torch.stack([it[0] if isinstance(it, (tuple, list)) else it for it in items])
        return len(data), fetch, {"dataset": type(data).__name__}
    raise ValueError(f"export_codes takes an ImageData (dlc.data.load_dataset), a uint8 tensor (N, 3, H, W) or a "
                     f"torch Dataset of uint8 images; got {type(data).__name__}")


def _chunks(idx: torch.Tensor, size: int) -> Iterator[torch.Tensor]:
    for s in range(0, len(idx), size):
        yield idx[s:s + size]


@torch.no_grad()
def export_codes(encoder: torch.nn.Module, dataset_or_images: Any, batch_size: int = 256,
                 device: str | torch.device = "auto", tau: float | None = None, store_soft: bool = True,
                 store_embedding: bool = True, amp: bool = False) -> "DLCArtifact":
    """Encode every image: tokens (argmax), soft SEMs at τ (default the encoder's τ) and continuous embeddings.

    The encoder is moved to `device` and run in eval mode (its previous mode is restored). amp=True runs the
    encoder under bf16 autocast on GPU. Under torchrun every rank encodes rank_indices(N) and all ranks return
    the same gathered artifact.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be ≥ 1 (got {batch_size})")
    enc = getattr(encoder, "module", encoder)
    if not hasattr(enc, "encode") or not hasattr(enc, "config"):
        raise ValueError("export_codes expects a dlc.encoder.SEMEncoder")
    n, fetch, source = _source(dataset_or_images)
    if n == 0:
        raise ValueError("nothing to export: the data set is empty")
    import torch.distributed as dist
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    dev = resolve_device(device)
    if dev.type == "cuda" and dist.is_initialized():
        dev = torch.device("cuda", torch.cuda.current_device())
    was_training = enc.training
    enc.to(dev).eval()
    t = enc.config.tau if tau is None else float(tau)
    local_idx = torch.tensor(list(ddist.rank_indices(n, rank, world)), dtype=torch.long)
    toks, softs, embs = [], [], []
    try:
        for idx in _chunks(local_idx, batch_size):
            with autocast(dev, enabled=amp):
                out = enc.encode(fetch(idx), tau=t)
            toks.append(out.codes.to(torch.int32))
            if store_soft:
                softs.append(out.soft.to(torch.float16))
            if store_embedding:
                embs.append(out.embedding.float())
    finally:
        enc.train(was_training)

    def gather(parts: list[torch.Tensor]) -> torch.Tensor:
        local = torch.cat(parts) if parts else torch.empty(0)
        return ddist.gather_indexed(local, local_idx.to(local.device), n).cpu()

    tokens = gather(toks).long()
    data = dataset_or_images
    labels = data.labels.clone() if isinstance(data, ImageData) else None
    factors = {k: v.clone() for k, v in data.factors.items()} if isinstance(data, ImageData) else {}
    meta = {"tau": t, "encoder": enc.spec() if hasattr(enc, "spec") else {}, "source": source,
            "embedding": "backbone continuous embedding (normalised CLS for ViTs, pooled features for CNNs)",
            "factor_values": getattr(data, "factor_values", {}),
            "class_names": getattr(data, "class_names", None)}
    return DLCArtifact(tokens=tokens, V=int(enc.config.V), soft=gather(softs) if store_soft else None,
                       embedding=gather(embs) if store_embedding else None, labels=labels, factors=factors,
                       meta=meta)
