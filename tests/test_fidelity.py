"""bench.fidelity: conditioning-fidelity rows on image sets whose answer is known (real shapes renders, the
same images with the object painted over, exact copies)."""
from __future__ import annotations

import pytest
import torch

from bench.fidelity import fidelity_rows, object_drawn
from dlc.data import load_dataset
from dlc.data.shapes import BACKGROUNDS


@pytest.fixture(scope="module")
def shapes():
    return load_dataset("shapes", n=200, seed=3, image_size=32)


def _blank(data) -> torch.Tensor:
    """The images with the object painted over in the background colour."""
    bg = torch.tensor(list(BACKGROUNDS.values()), dtype=torch.uint8)[data.factors["background"]]
    return bg[:, :, None, None].expand_as(data.images).contiguous()


def test_every_real_image_draws_an_object_and_a_blank_one_does_not(shapes):
    assert object_drawn(shapes.images, shapes.factors["background"].numpy()).all()
    assert not object_drawn(_blank(shapes), shapes.factors["background"].numpy()).any()


def test_real_images_against_their_own_factors(shapes):
    rows = fidelity_rows(shapes.images, dataset="shapes", train_images=shapes.images, target=shapes.factors,
                         source=shapes.images, variant="real", seed=0)
    by = {(r["metric"], r.get("factor")): r for r in rows}
    for f in shapes.factors:
        assert by[("factor_agreement", f)]["value"] == 1.0 and by[("factor_agreement", f)]["variant"] == "real"
    assert by[("factor_agreement", "all")]["value"] == 1.0
    assert by[("object_frac", None)]["value"] == 1.0
    for m in ("render_mse", "nearest_real_mse", "source_mse"):
        assert by[(m, None)]["value"] == 0.0


def test_blanked_images_lose_exactly_what_was_painted_over(shapes):
    blank = _blank(shapes)
    rows = fidelity_rows(blank, dataset="shapes", train_images=shapes.images, target=shapes.factors,
                         source=shapes.images, variant="blank", seed=0)
    by = {(r["metric"], r.get("factor")): r for r in rows}
    assert by[("factor_agreement", "background")]["value"] == 1.0   # the background is all that is left
    assert by[("object_frac", None)]["value"] == 0.0
    assert by[("source_mse", None)]["value"] > 0.01 and by[("nearest_real_mse", None)]["value"] > 0
    assert by[("source_mse", None)]["ci_low"] < by[("source_mse", None)]["value"] < by[("source_mse", None)]["ci_high"]


def test_other_data_gets_only_the_pixel_distances(shapes):
    rows = fidelity_rows(shapes.images[:20], dataset="digits", train_images=shapes.images, variant="x", seed=0)
    assert [r["metric"] for r in rows] == ["nearest_real_mse"]
