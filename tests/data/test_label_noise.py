import numpy as np
import pytest
from scipy import ndimage

from kfcn.data.label_noise import _disk, perturb_contours


def two_squares(gap=1):
    mask = np.zeros((40, 40), np.uint8)
    mask[10:30, 5:18] = 1
    mask[10:30, 18 + gap : 34] = 1
    return mask


def test_a_lone_object_is_exactly_eroded_or_dilated_by_the_drawn_radius():
    square = np.zeros((31, 31), np.uint8)
    square[10:21, 10:21] = 1
    for seed in range(10):
        moved = perturb_contours(square, shift=(2, 2), seed=seed).astype(bool)
        eroded = ndimage.binary_erosion(square, _disk(2))
        dilated = ndimage.binary_dilation(square, _disk(2))
        assert np.array_equal(moved, eroded) or np.array_equal(moved, dilated)


def test_changes_stay_within_the_largest_shift_and_objects_stay_apart():
    mask = two_squares(gap=1)
    inner, outer = ndimage.binary_erosion(mask, _disk(3)), ndimage.binary_dilation(mask, _disk(3))
    sizes = set()
    for seed in range(30):
        moved = perturb_contours(mask, shift=(1, 3), seed=seed).astype(bool)
        assert not (moved & ~outer).any() and not (inner & ~moved).any()
        assert ndimage.label(moved)[1] == 2  # the 1-px gap moves but never closes
        sizes.add(int(moved.sum()))
    assert len(sizes) > 5  # the radii and directions really vary


def test_an_object_touching_the_image_edge_is_not_eroded_from_the_edge():
    mask = np.zeros((20, 20), np.uint8)
    mask[:, :10] = 1
    for seed in range(8):
        moved = perturb_contours(mask, shift=(2, 2), seed=seed)
        assert moved[:, 0].all()  # column 0 is the image edge, not a contour
        assert moved[:, :8].all() and not moved[:, 12:].any()


def test_the_same_seed_gives_the_same_labels():
    mask = two_squares()
    assert np.array_equal(perturb_contours(mask, seed=3), perturb_contours(mask[..., None], seed=3))


@pytest.mark.parametrize(
    "mask, shift, match",
    [
        (np.full((4, 4), 255, np.uint8), (1, 3), "Divide a 0/255 mask by 255"),
        (np.zeros((4, 4)), (0, 2), "1 <= smallest"),
        (np.zeros((4, 4)), (3, 2), "1 <= smallest"),
        (np.zeros((4, 4)), (1.5, 2), "integer radii"),
        (np.zeros((2, 4, 4)), (1, 3), r"\(H, W\) or \(H, W, 1\)"),
    ],
)
def test_bad_input_is_refused_with_the_fix(mask, shift, match):
    with pytest.raises(ValueError, match=match):
        perturb_contours(mask, shift=shift)
