"""Findings of `conditioning` (Table 2), computed from the stored rows (no stage depends on this module)."""
from __future__ import annotations

import numpy as np

from .dlc_pipeline_report import _ci as _ci_row, _one

REPRESENTATIONS = ("dlc", "rcg", "embedding", "label")


def _ci(r: dict | None) -> str:
    return "–" if r is None else _ci_row(r)


def _below(a: dict | None, b: dict | None) -> bool | None:
    """True: a's interval lies below b's; False: above; None: they overlap (or a number is missing)."""
    if a is None or b is None or a.get("ci_high") is None or b.get("ci_low") is None:
        return None
    return True if a["ci_high"] < b["ci_low"] else False if a["ci_low"] > b["ci_high"] else None


def _verdict(holds: bool | None) -> str:
    return {True: "reproduced", False: "contradicted", None: "not reproduced (the intervals overlap)"}[holds]


def table2_findings(rows: list[dict], fd_key: str, seed: int) -> list[str]:
    """One sentence per representation (mean probe accuracy over factors, generative and encoder-decoder FD,
    agreement of reconstructions with their source), then the paper's Table-2 claims, each reproduced /
    contradicted / not reproduced from the intervals."""
    out = []
    probe = {}
    for rep in REPRESENTATIONS:
        accs = [r["value"] for r in rows if r["metric"] == "probe_top1" and r.get("representation") == rep
                and r.get("seed") == seed]
        probe[rep] = float(np.mean(accs)) if accs else None
        gen, rec = _one(rows, fd_key, variant=rep, seed=seed), _one(rows, fd_key, variant=f"{rep}-recon", seed=seed)
        agree = _one(rows, "factor_agreement", variant=f"{rep}-recon", factor="all", seed=seed)
        if gen is None and rec is None:
            continue
        out.append(f"Table 2 (seed {seed}), {rep}: linear probe {probe[rep]:.2f} (mean over factors); generative "
                   f"{fd_key} {_ci(gen)}; encoder-decoder {fd_key} {_ci(rec)}; reconstructions agree with their "
                   f"source in every factor {_ci(agree)}." if probe[rep] is not None else
                   f"Table 2 (seed {seed}), {rep}: generative {fd_key} {_ci(gen)}; encoder-decoder {fd_key} "
                   f"{_ci(rec)}; reconstructions agree with their source in every factor {_ci(agree)}.")
    fd = {v: _one(rows, fd_key, variant=v, seed=seed) for v in ("dlc", "embedding", "rcg", "unconditional",
                                                                 "embedding-recon", "dlc-recon", "rcg-recon")}
    claims = []
    if fd["dlc"] and fd["embedding"]:
        claims.append(("a DiT on generated DLCs has a lower FD than one on generated continuous embeddings "
                       "(the embedding is hard to model)", _below(fd["dlc"], fd["embedding"])))
    if fd["dlc"] and fd["unconditional"]:
        claims.append(("DLC-conditioned generation has a lower FD than the unconditional DiT",
                       _below(fd["dlc"], fd["unconditional"])))
    if fd["embedding-recon"] and fd["dlc-recon"]:
        claims.append(("held-out continuous embeddings give the lowest encoder-decoder FD",
                       _below(fd["embedding-recon"], fd["dlc-recon"])))
    if probe.get("rcg") is not None and probe.get("embedding") is not None:
        lows = [(r, _one(rows, "probe_top1", representation="embedding", factor=r["factor"], seed=seed))
                for r in rows if r["metric"] == "probe_top1" and r.get("representation") == "rcg"
                and r.get("seed") == seed]
        below = [_below(r, e) for r, e in lows if e is not None]
        holds = True if below and all(b is True for b in below) else False if any(b is False for b in below) \
            else None
        claims.append(("RCG's random projection probes worse than the embedding it projects, in every factor",
                       holds))
    for text, holds in claims:
        out.append(f"Paper claim (Table 2: {text}): {_verdict(holds)} at this scale on seed {seed}.")
    return out
