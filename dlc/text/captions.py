"""Captions for images: generated from the `shapes` factors (several paraphrase templates, optional factors
omitted), or read from a JSON-lines file for real image folders.

    shapes      "a small red circle on a white background in the top left", "white background with a red shape",
                "a large cyan ring at the bottom, navy background", … — the caption of image i depends only on
                (seed, i) and its factors, so a caption set is reproducible and independent of batching
    JSON lines  one object per image, {"file": "<path relative to the split root, or the file name>",
                "caption": "..."}; every image of the folder needs one

A prompt is a caption of a chosen set of factors only (`shapes_prompt`), e.g. {colour: red, background: white} →
"a red shape on a white background": the text-to-DLC experiment asks for factor combinations with it.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..common import seed_for

__all__ = ["SHAPES_TEMPLATES", "shapes_caption", "shapes_captions", "shapes_prompt", "load_captions_jsonl",
           "captions_for_files"]

# {np}: "a small red circle"; {bg}: background phrase; {pos}: position phrase (each may be empty)
SHAPES_TEMPLATES = (
    "{np}{bg_on}{pos_in}",             # a small red circle on a white background in the top left
    "{np}{pos_at}{bg_comma}",          # a small red circle at the top left, white background
    "{bg_with}{np}{pos_in}",           # white background with a small red circle in the top left
    "picture of {np}{bg_on}{pos_in}",  # picture of a small red circle on a white background in the top left
)


def _position(x: str | None, y: str | None) -> str:
    """'top left', 'left', 'top', 'centre' or '' from the x / y value names (None: omitted)."""
    if x is None and y is None:
        return ""
    if x is None:
        return {"middle": "middle row"}.get(y, y)
    if y is None:
        return {"centre": "centre column"}.get(x, x)
    if (y, x) == ("middle", "centre"):
        return "centre"
    return x if y == "middle" else y if x == "centre" else f"{y} {x}"


def shapes_caption(values: Mapping[str, str], template: int = 0) -> str:
    """The caption of one image from its factor value names ({factor: name}; a factor left out is not mentioned;
    without 'shape' the object is 'shape')."""
    size, colour = values.get("size"), values.get("colour")
    adjectives = " ".join(a for a in (size, colour) if a)
    noun = values.get("shape", "shape")
    np_ = f"{'an' if (adjectives or noun)[0] in 'aeiou' else 'a'} {adjectives + ' ' if adjectives else ''}{noun}"
    bg, pos = values.get("background"), _position(values.get("x"), values.get("y"))
    parts = {"np": np_,
             "bg_on": f" on a {bg} background" if bg else "", "bg_comma": f", {bg} background" if bg else "",
             "bg_with": f"{bg} background with " if bg else "",
             "pos_in": f" in the {pos}" if pos else "", "pos_at": f" at the {pos}" if pos else ""}
    return SHAPES_TEMPLATES[template % len(SHAPES_TEMPLATES)].format(**parts)


def shapes_captions(factors: Mapping[str, Sequence[int]], factor_values: Mapping[str, Sequence[str]], *,
                    seed: int = 0, indices: Sequence[int] | None = None, p_omit: float = 0.3,
                    keep: Sequence[str] = (), templates: int = len(SHAPES_TEMPLATES)) -> list[str]:
    """Captions of N shapes images (factors: name → (N,) indices). Image i (global index `indices[i]`, default i)
    gets template `r mod templates` and drops each factor not in `keep` with probability `p_omit`, all drawn from
    `seed_for(seed, index)`; at least one factor is always kept."""
    if not 0.0 <= p_omit < 1.0:
        raise ValueError(f"p_omit must be in [0, 1) (got {p_omit})")
    if not 1 <= templates <= len(SHAPES_TEMPLATES):
        raise ValueError(f"templates must be in [1, {len(SHAPES_TEMPLATES)}] (got {templates})")
    bad = [f for f in keep if f not in factors]
    if bad:
        raise ValueError(f"keep names {bad[0]!r}, which is not a factor; factors: {', '.join(factors)}")
    names = list(factors)
    cols = np.stack([np.asarray(factors[f]) for f in names], 1)                 # (N, F)
    idx = range(len(cols)) if indices is None else indices
    out = []
    for row, i in zip(cols.tolist(), idx):
        rng = np.random.default_rng(seed_for(seed, int(i)))
        drop = rng.random(len(names)) < p_omit
        drop &= np.array([f not in keep for f in names])
        if drop.all():
            drop[rng.integers(len(names))] = False
        values = {f: factor_values[f][v] for f, v, d in zip(names, row, drop) if not d}
        out.append(shapes_caption(values, int(rng.integers(templates))))
    return out


def shapes_prompt(values: Mapping[str, str], template: int = 0) -> str:
    """The prompt asking for exactly these factor values (the same wording as the training captions)."""
    return shapes_caption(values, template)


#################################################################################
#                          Captions of real image folders                       #
#################################################################################

def load_captions_jsonl(path: str | os.PathLike) -> dict[str, str]:
    """{file: caption} from a JSON-lines file of {"file": ..., "caption": ...} objects (one per line; blank lines
    skipped). Errors name the line."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"captions file {p} does not exist")
    out: dict[str, str] = {}
    for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{p}:{n}: not JSON ({e.msg}); write one {{\"file\": ..., \"caption\": ...}} "
                             "object per line") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("file"), str) or not isinstance(obj.get("caption"), str):
            raise ValueError(f"{p}:{n}: needs string fields 'file' and 'caption'")
        if obj["file"] in out:
            raise ValueError(f"{p}:{n}: a second caption for {obj['file']!r}; keep one caption per image")
        out[obj["file"]] = obj["caption"]
    if not out:
        raise ValueError(f"captions file {p} holds no captions")
    return out


def captions_for_files(files: Sequence[str | os.PathLike], captions: Mapping[str, str],
                       root: str | os.PathLike | None = None) -> list[str]:
    """The caption of each image file, looked up by its path relative to `root` (posix), else by its file name."""
    out, missing = [], []
    for f in files:
        f = Path(f)
        rel = f.relative_to(root).as_posix() if root is not None and f.is_relative_to(root) else None
        c = captions.get(rel) if rel is not None else None
        c = c if c is not None else captions.get(f.name)
        if c is None:
            missing.append(rel or f.name)
        out.append(c)
    if missing:
        raise ValueError(f"{len(missing)} image(s) have no caption, e.g. {missing[0]!r}; add a line "
                         f'{{"file": "{missing[0]}", "caption": "..."}} for each')
    return out
