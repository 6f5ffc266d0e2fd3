"""Shapes: a procedural, factor-labelled RGB image set generated in code (no download).

Each image shows one flat-coloured shape on a flat background. Six factors, all discrete and uniformly drawn:

    shape       square, circle, triangle, diamond, cross, ring     (also the class label)
    colour      red, green, blue, yellow, magenta, cyan            (the shape's RGB value, exact)
    size        small, medium, large                               (radius 0.14 / 0.21 / 0.28 of the image side)
    x, y        left..right, top..bottom                           (centre on an n_positions grid)
    background  black, grey, white, navy

Rendering is exact (no antialiasing): every shape pixel has the labelled colour, every other pixel the background.
Generation is deterministic from (seed, split) and vectorised (10k 32×32 images in well under a second).

Compositional generalisation: `holdout` lists factor combinations (partial assignments such as
{"shape": "circle", "colour": "red"}). The "train" and "test" splits never contain an image matching any of them;
the "holdout" split contains only such images. Draws are uniform over the allowed combinations.
"""
from __future__ import annotations

import itertools
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from .base import DATASETS, ImageData

__all__ = ["SHAPES", "COLOURS", "BACKGROUNDS", "SIZES", "make_shapes", "shapes_factor_values", "render_shapes"]

SHAPES = ("square", "circle", "triangle", "diamond", "cross", "ring")
COLOURS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (50, 80, 230),
           "yellow": (235, 215, 40), "magenta": (200, 50, 200), "cyan": (40, 200, 210)}
BACKGROUNDS = {"black": (15, 15, 15), "grey": (110, 110, 110), "white": (240, 240, 240), "navy": (25, 30, 75)}
SIZES = {"small": 0.14, "medium": 0.21, "large": 0.28}   # radius as a fraction of the image side
_SPLIT_STREAM = {"train": 0, "test": 1, "holdout": 2}
_POSITION_RANGE = (0.32, 0.68)                          # centres stay inside the image for every size


def _position_names(n: int, axis: str) -> list[str]:
    if n == 3:
        return ["left", "centre", "right"] if axis == "x" else ["top", "middle", "bottom"]
    return [f"{axis}{i}" for i in range(n)]


def shapes_factor_values(n_positions: int = 3) -> dict[str, list[str]]:
    """Factor name → the names of its values, in label order."""
    return {"shape": list(SHAPES), "colour": list(COLOURS), "size": list(SIZES),
            "x": _position_names(n_positions, "x"), "y": _position_names(n_positions, "y"),
            "background": list(BACKGROUNDS)}


#################################################################################
#                                   Rendering                                   #
#################################################################################

def render_shapes(factors: Mapping[str, torch.Tensor], image_size: int = 32, n_positions: int = 3) -> torch.Tensor:
    """Factor labels (each (N,) long) → uint8 images (N, 3, image_size, image_size)."""
    shape, colour, size = factors["shape"], factors["colour"], factors["size"]
    xi, yi, bg = factors["x"], factors["y"], factors["background"]
    n, s = len(shape), image_size
    pos = torch.linspace(*_POSITION_RANGE, n_positions) if n_positions > 1 else torch.tensor([0.5])
    cx = (pos[xi] * s)[:, None, None]                                     # (N, 1, 1) pixel units
    cy = (pos[yi] * s)[:, None, None]
    r = (torch.tensor(list(SIZES.values()))[size] * s)[:, None, None]
    grid = torch.arange(s, dtype=torch.float32) + 0.5                     # pixel centres
    dx = grid[None, None, :] - cx                                         # (N, 1, S)
    dy = grid[None, :, None] - cy                                         # (N, S, 1)
    mask = torch.zeros(n, s, s, dtype=torch.bool)
    for k, name in enumerate(SHAPES):
        sel = (shape == k).nonzero().squeeze(1)
        if len(sel) == 0:
            continue
        ax, ay, rr = dx[sel].abs(), dy[sel].abs(), r[sel]
        if name == "square":
            m = (ax <= 0.8 * rr) & (ay <= 0.8 * rr)
        elif name == "circle":
            m = ax ** 2 + ay ** 2 <= rr ** 2
        elif name == "triangle":                                          # apex up, base at +0.75 r
            d = dy[sel]
            m = (d >= -rr) & (d <= 0.75 * rr) & (ax <= (d + rr) / 1.75)
        elif name == "diamond":
            m = ax + ay <= 1.15 * rr
        elif name == "cross":
            m = ((ax <= rr / 3) & (ay <= rr)) | ((ay <= rr / 3) & (ax <= rr))
        else:                                                             # ring
            d2 = ax ** 2 + ay ** 2
            m = (d2 <= rr ** 2) & (d2 >= (0.5 * rr) ** 2)
        mask[sel] = m
    fg = torch.tensor(list(COLOURS.values()), dtype=torch.uint8)[colour]      # (N, 3)
    bgc = torch.tensor(list(BACKGROUNDS.values()), dtype=torch.uint8)[bg]     # (N, 3)
    img = torch.where(mask[:, None], fg[:, :, None, None], bgc[:, :, None, None])  # (N, 3, S, S)
    return img.contiguous()


#################################################################################
#                      Factor sampling with held-out combinations               #
#################################################################################

def _normalise_holdout(holdout: Sequence[Mapping[str, Any]] | None,
                       values: dict[str, list[str]]) -> list[dict[str, int]]:
    """[{factor: value name or index}] → [{factor: index}], with clear errors for unknown names."""
    from ..registry import did_you_mean

    if holdout is None:
        return []
    if isinstance(holdout, Mapping):
        holdout = [holdout]
    rules = []
    for rule in holdout:
        if not isinstance(rule, Mapping) or not rule:
            raise ValueError(f"each holdout entry must be a non-empty dict such as "
                             f"{{'shape': 'circle', 'colour': 'red'}}; got {rule!r}")
        out = {}
        for f, v in rule.items():
            if f not in values:
                hint = did_you_mean(str(f), values, n=1)
                raise ValueError(f"unknown shapes factor {f!r} in holdout.{hint} Factors: {', '.join(values)}")
            names = values[f]
            if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
                if not 0 <= int(v) < len(names):
                    raise ValueError(f"holdout value {v} for factor {f!r} is out of range [0, {len(names)})")
                out[f] = int(v)
            elif v in names:
                out[f] = names.index(v)
            else:
                hint = did_you_mean(str(v), names, n=1)
                raise ValueError(f"unknown value {v!r} for factor {f!r} in holdout.{hint} Values: {', '.join(names)}")
        rules.append(out)
    return rules


def _all_combinations(values: dict[str, list[str]]) -> np.ndarray:
    """(C, F) every combination of factor indices, in the order of `values`."""
    return np.array(list(itertools.product(*[range(len(v)) for v in values.values()])), dtype=np.int64)


def make_shapes(n: int = 10_000, split: str = "train", seed: int = 0, image_size: int = 32,
                holdout: Sequence[Mapping[str, Any]] | None = None, n_positions: int = 3) -> ImageData:
    """Generate `n` shapes images of split 'train', 'test' or 'holdout' (see the module docstring)."""
    if split not in _SPLIT_STREAM:
        raise ValueError(f"unknown shapes split {split!r}; choose 'train', 'test' or 'holdout'")
    if n < 1:
        raise ValueError(f"n must be ≥ 1 (got {n})")
    if image_size < 8:
        raise ValueError(f"image_size must be ≥ 8 pixels (got {image_size})")
    if n_positions < 1:
        raise ValueError(f"n_positions must be ≥ 1 (got {n_positions})")
    values = shapes_factor_values(n_positions)
    rules = _normalise_holdout(holdout, values)
    names = list(values)
    combos = _all_combinations(values)                                    # (C, F)
    held = np.zeros(len(combos), dtype=bool)
    for rule in rules:
        m = np.ones(len(combos), dtype=bool)
        for f, v in rule.items():
            m &= combos[:, names.index(f)] == v
        held |= m
    pool = combos[held] if split == "holdout" else combos[~held]
    if len(pool) == 0:
        what = "no holdout combinations were given" if split == "holdout" else "the holdout covers every combination"
        raise ValueError(f"shapes split {split!r} is empty: {what}")
    rng = np.random.default_rng([int(seed), _SPLIT_STREAM[split]])
    chosen = torch.from_numpy(pool[rng.integers(0, len(pool), size=n)])  # (n, F) uniform over the pool
    factors = {f: chosen[:, i].contiguous() for i, f in enumerate(names)}
    images = render_shapes(factors, image_size, n_positions)
    held_named = [{f: values[f][v] for f, v in rule.items()} for rule in rules]
    info = {"generator": "dlc.data.shapes", "seed": int(seed), "image_size": image_size, "n_positions": n_positions,
            "holdout": held_named, "n_combinations": int(len(combos)), "n_allowed": int(len(pool)),
            "grayscale_to_rgb": False}
    return ImageData(name="shapes", split=split, labels=factors["shape"].clone(), class_names=list(SHAPES),
                     factors=factors, factor_values=values, info=info, _images=images)


_DEFAULT_N = {"train": 10_000, "test": 2_000, "holdout": 2_000}


@DATASETS.register("shapes")
def load_shapes(split: str = "train", n: int | None = None, seed: int = 0, image_size: int = 32,
                holdout: Sequence[Mapping[str, Any]] | None = None, n_positions: int = 3) -> ImageData:
    """Procedural shapes (default n: 10k train, 2k test, 2k holdout)."""
    if split not in _DEFAULT_N:
        raise ValueError(f"unknown shapes split {split!r}; choose 'train', 'test' or 'holdout'")
    return make_shapes(_DEFAULT_N[split] if n is None else n, split=split, seed=seed, image_size=image_size,
                       holdout=holdout, n_positions=n_positions)
