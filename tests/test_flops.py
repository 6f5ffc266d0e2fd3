"""count_flops against closed forms: 2·N·in·out for a linear layer; the SEDD forward grows with L."""
from __future__ import annotations

import torch

from bench.flops import count_flops


def test_linear_and_matmul_match_their_closed_forms():
    lin = torch.nn.Linear(7, 5)
    assert count_flops(lin, torch.zeros(3, 7)) == 2 * 3 * 7 * 5
    a, b = torch.zeros(4, 6), torch.zeros(6, 9)
    assert count_flops(torch.matmul, a, b) == 2 * 4 * 6 * 9


def test_backward_counts_when_asked():
    lin = torch.nn.Linear(7, 5)
    fwd = count_flops(lin, torch.zeros(3, 7))
    both = count_flops(lambda x: lin(x).sum().backward(), torch.zeros(3, 7, requires_grad=True), no_grad=False)
    assert both == 3 * fwd               # grad of input and of weight: one matmul each


def test_sedd_forward_flops_grow_with_sequence_length():
    from dlc.sedd import build_sedd

    def fwd(L, V):
        m = build_sedd("tiny", vocab_size=V, seq_len=L).eval()
        return count_flops(m, torch.zeros(1, L, dtype=torch.long), torch.ones(1))

    f8, f32 = fwd(8, 128), fwd(32, 32)
    assert f32 > f8 > 0
    # blocks are linear in L (attention quadratic): at least 3x for 4x the tokens, the output layer shrinking with V
    assert f32 > 2.5 * f8
