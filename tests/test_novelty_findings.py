"""novelty's findings and near-copy rule on hand-made rows and similarities (no model)."""
from __future__ import annotations

import numpy as np

from bench.experiments.novelty import DUPLICATE, near_copies
from bench.experiments.novelty_report import COPIES, novelty_findings


def _row(metric, name, value, lo, hi, **kw):
    return {"metric": metric, "set": name, "seed": 0, "value": value, "ci_low": lo, "ci_high": hi, **kw}


def test_a_duplicate_is_a_near_copy_even_when_the_threshold_is_one():
    sims = np.array([1.0, 1.0 - 1e-7, 0.99, 0.5], dtype=np.float32)
    assert near_copies(sims, threshold=1.0).tolist() == [True, True, False, False]
    assert near_copies(sims, threshold=0.9).tolist() == [True, True, True, False]
    assert DUPLICATE < 1.0


def test_findings_compare_against_the_held_out_rate_and_say_when_the_world_is_finite():
    rows = [_row("nn_max_sim", "held-out", 0.96, 0.95, 0.97),
            _row("nn_copy_frac", "held-out", 0.20, 0.12, 0.30, threshold=1.0),
            _row("nn_duplicate_frac", "held-out", 0.20, 0.12, 0.30, threshold=1.0),
            _row("nn_max_sim", "dlc", 0.56, 0.55, 0.58),
            _row("nn_copy_frac", "dlc", 0.0, 0.0, 0.07, threshold=1.0),
            _row("nn_max_sim", "copier", 0.99, 0.98, 1.0),
            _row("nn_copy_frac", "copier", 0.9, 0.8, 0.95, threshold=1.0),
            _row("nn_copy_frac", COPIES, 1.0, 0.93, 1.0, threshold=1.0)]
    out = novelty_findings(rows, ["dlc", "copier"], 0, 0.99)
    assert out[0].startswith("Seed 0: 20.0 % of held-out images duplicate a training image")
    dlc = next(s for s in out if s.startswith("Seed 0, dlc:"))
    assert "farther from them than held-out" in dlc and "no more near-copies than held-out images (20.0 %)" in dlc
    copier = next(s for s in out if s.startswith("Seed 0, copier:"))
    assert "closer to the training images than" in copier and "more near-copies than held-out" in copier
    assert any("known answer 1.00)." in s for s in out)
    assert "not reproduced" in out[-1] and "in 1 of 2 sets" in out[-1] and "But every set" not in out[-1]
    # every set farther than the floor: not copies, and not close to real images either — said so
    assert "But every set is farther" in novelty_findings(rows, ["dlc"], 0, 0.99)[-1]
    # without duplicates in the floor there is no finite-world sentence
    rows[2] = _row("nn_duplicate_frac", "held-out", 0.0, 0.0, 0.05)
    assert not novelty_findings(rows, ["dlc"], 0, 0.99)[0].startswith("Seed 0: ")
