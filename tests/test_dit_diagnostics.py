"""The code-swap gap (dlc.dit.diagnostics) on models whose answer is known: one that ignores its condition
(ratios exactly 1), an oracle whose condition determines the image (true error 0 for x0-prediction,
shuffled/null errors the closed-form distances), and the monitor hook of train_dit."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from dlc.dit import build_dit, create_diffusion, create_flow, train_dit
from dlc.dit.diagnostics import code_swap_gap

TABLE = torch.linspace(-0.9, 0.9, 5)          # condition k ↦ a flat image of value TABLE[k]


class Oracle(nn.Module):
    """x0-prediction that returns the image its condition names (the null condition: the mean, 0)."""

    def forward(self, x, t, c, drop=None):
        x0 = TABLE[c].reshape(-1, 1, 1, 1).expand_as(x).clone()
        if drop is not None:
            x0[drop] = 0.0
        return x0


class Ignorer(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(0.5))

    def forward(self, x, t, c, drop=None):
        return self.w * x


def _data(n=40):
    c = torch.arange(n) % 5
    return TABLE[c].reshape(-1, 1, 1, 1).expand(n, 3, 4, 4).clone(), c


def test_a_model_that_ignores_its_condition_has_no_gap():
    x0, c = _data()
    for process in (create_flow("velocity"), create_diffusion(learn_sigma=False)):
        for row in code_swap_gap(Ignorer(), process, x0, c, seed=3):
            assert row["shuffled_ratio"] == pytest.approx(1.0) and row["null_ratio"] == pytest.approx(1.0)


def test_an_oracle_condition_gives_the_closed_form_errors():
    x0, c = _data()
    rows = code_swap_gap(Oracle(), create_flow("x0"), x0, c, bins=((0.2, 0.4), (0.9, 1.0)))
    shuffled = TABLE[torch.roll(c, 1)]
    for row in rows:
        assert row["true"] == 0.0
        assert row["shuffled"] == pytest.approx(float(((shuffled - TABLE[c]) ** 2).mean()), rel=1e-6)
        assert row["null"] == pytest.approx(float((TABLE[c] ** 2).mean()), rel=1e-6)
        assert row["shuffled_ratio"] == float("inf")


def test_numbers_depend_only_on_the_image_indices():
    x0, c = _data()
    a = code_swap_gap(Ignorer(), create_flow(), x0, c, batch_size=40)
    b = code_swap_gap(Ignorer(), create_flow(), x0, c, batch_size=7)
    for ra, rb in zip(a, b):
        assert ra["true"] == pytest.approx(rb["true"], rel=1e-6)
    with pytest.raises(ValueError, match="bins"):
        code_swap_gap(Ignorer(), create_flow(), x0, c, bins=((0.5, 0.2),))


def test_train_dit_records_the_monitor_every_few_steps():
    torch.manual_seed(0)
    model = build_dit("DiT-tiny/4", input_size=8, in_channels=3, cond="dlc", dlc_length=2, dlc_vocab=5,
                      drop_prob=0.1, learn_sigma=False)
    x = torch.rand(32, 3, 8, 8) * 2 - 1
    c = torch.randint(0, 5, (32, 2))
    flow = create_flow("x0")
    seen = []
    monitor = lambda ema, step: (seen.append(step), {"gap": code_swap_gap(ema, flow, x[:8], c[:8])})[1]
    res = train_dit(model, flow, x, c, steps=10, batch_size=8, lr=1e-3, device="cpu", monitor=monitor,
                    monitor_every=4)
    assert seen == [4, 8, 10] and [m["step"] for m in res.monitor] == [4, 8, 10]
    assert len(res.monitor[0]["gap"]) == 4 and res.monitor[0]["gap"][0]["n"] == 8
