"""The conditioning registry's executable parts that need no trained stage: the 'label' conditioning's draws."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy import stats

from bench.conditioning import CONDITIONING, Sources


def _src(train_labels, test_labels, seed=0):
    codes = {"train": SimpleNamespace(labels=torch.as_tensor(train_labels)),
             "test": SimpleNamespace(labels=torch.as_tensor(test_labels))}
    return Sources(ctx=None, cfg=None, seed=seed, codes=codes, k_codes="codes/k")


def test_label_draws_follow_the_training_marginal_and_depend_only_on_the_index():
    train = torch.tensor([0] * 500 + [1] * 300 + [2] * 200)
    c = CONDITIONING.get("label")
    src = _src(train, torch.tensor([0, 1, 2, 3]))
    assert c.shape(src) == {"num_classes": 4} and c.dit_cond == "class"      # test labels count as classes too
    draws, up = c.draw(src, 4000)
    assert up == ["codes/k"] and draws.dtype == torch.long and draws.shape == (4000,)
    counts = np.bincount(draws.numpy(), minlength=4)
    assert counts[3] == 0                                                     # absent from training: never drawn
    assert stats.chisquare(counts[:3], 4000 * np.array([0.5, 0.3, 0.2])).pvalue > 1e-3
    assert torch.equal(c.draw(src, 100)[0], draws[:100])                      # sample i depends only on (seed, i)
    assert not torch.equal(c.draw(_src(train, torch.tensor([0]), seed=1), 100)[0], draws[:100])


def test_label_conditions_are_the_codes_labels_and_missing_labels_say_so():
    c = CONDITIONING.get("label")
    src = _src(torch.tensor([2, 0, 1]), torch.tensor([1, 1]))
    cond, up = c.conditions(src, "test")
    assert torch.equal(cond, torch.tensor([1, 1])) and up == ["codes/k"]
    src.codes["train"].labels = None
    with pytest.raises(ValueError, match="no class labels"):
        c.conditions(src, "train")


def test_every_conditioning_declares_a_dit_conditioner():
    from dlc.dit.models import CONDITIONERS

    assert {"dlc", "rcg", "embedding", "label", "none"} <= set(CONDITIONING.names())
    assert all(CONDITIONING.get(n).dit_cond in CONDITIONERS for n in CONDITIONING.names())
