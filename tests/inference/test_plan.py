"""kfcn.inference.plan: where tiles start and how their outputs are weighted, checked by hand."""

import numpy as np
import pytest

from kfcn.inference.plan import AxisPlan


def test_same_model_tiles_are_placed_as_monai_places_them():
    # 2048 px, 512-px tiles, overlap 0.25 (128 px): MONAI's windows start at 0, 384, ..., 1536.
    plan = AxisPlan(2048, 512, 512, 0, 16, 128, "gaussian", trim=100)
    assert plan.starts == [0, 384, 768, 1152, 1536]
    assert plan.windows[0][0] > 0 and plan.windows[-1][-1] > 0  # the image border is kept
    assert plan.windows[1][0] == 0 and plan.windows[1][63] == 0 and plan.windows[1][64] > 0  # inner edges trimmed
    # 1000 px with stride 16: padded to 1008, the last tile flush with it.
    assert AxisPlan(1000, 512, 512, 0, 16, 128, "none").starts == [0, 384, 496]


def test_valid_padding_tiles_start_half_the_overlap_before_the_image_in_mirrored_context():
    # Output 40 of input 60 (margin 10), stride 8, overlap 16: steps of 24, the first tile's
    # output starting 8 px (half the overlap, rounded up to the stride) before the image.
    plan = AxisPlan(100, 60, 40, 10, 8, 16, "none")
    assert plan.step == 24 and plan.starts == [-8, 16, 40, 64, 88]
    assert plan.input_indices(0)[:3].tolist() == [18, 17, 16]  # -18, -17, -16 mirrored at 0
    np.testing.assert_array_equal(plan.normaliser, np.ones(100))  # "none": each pixel kept by one tile


def test_a_tile_too_small_for_its_overlap_names_the_size_that_works():
    with pytest.raises(ValueError, match="too small"):
        AxisPlan(100, 24, 24, 0, 16, 16, "none")
