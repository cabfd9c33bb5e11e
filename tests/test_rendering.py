"""Overlays and heat maps, checked pixel by pixel on hand-made class maps."""

import numpy as np
import pytest

from kfcn.rendering import PALETTE, class_map, heat_map, overlay


def test_overlay_leaves_the_background_grey_and_outlines_classes():
    classes = np.zeros((6, 6), int)
    classes[2:4, 2:4] = 2
    picture = overlay(np.full((6, 6), 100, np.uint8), classes, alpha=0.5)
    assert tuple(picture[0, 0]) == (100, 100, 100)  # background: untinted
    assert tuple(picture[2, 2]) == tuple(PALETTE[2].astype(int))  # class 2's outline in full colour
    tinted_everywhere = overlay(np.full((6, 6), 100, np.uint8), classes, alpha=0.5, background=None, outline=False)
    assert tuple(tinted_everywhere[0, 0]) == tuple(np.round(0.5 * 100 + 0.5 * PALETTE[0]).astype(int))


def test_class_map_thresholds_one_channel_and_argmaxes_several():
    assert class_map(np.array([[[0.2], [0.7]]]), threshold=0.5).tolist() == [[0, 1]]
    assert class_map(np.array([[[0.1, 0.6, 0.3]]])).tolist() == [[1]]


def test_heat_map_spans_the_colour_map():
    picture = heat_map(np.array([[0.0, 1.0]]), colormap="gray")
    assert picture[0, 0].tolist() == [0, 0, 0] and picture[0, 1].tolist() == [255, 255, 255]


def test_mismatched_sizes_are_refused():
    with pytest.raises(ValueError, match="must match"):
        overlay(np.zeros((4, 4)), np.zeros((4, 5), int))


@pytest.mark.parametrize("background", [0, None])
def test_an_overlay_drawn_in_strips_equals_one_drawn_whole(monkeypatch, background):
    # Outlines are found from the neighbouring rows, across strip borders too.
    import kfcn.rendering

    rng = np.random.default_rng(0)
    image = rng.integers(0, 4096, (23, 17)).astype("uint16")
    classes = rng.integers(0, 3, (23, 17))
    whole = overlay(image, classes, value_range=None, background=background)
    monkeypatch.setattr(kfcn.rendering, "OVERLAY_STRIP_ROWS", 4)
    np.testing.assert_array_equal(overlay(image, classes, value_range=None, background=background), whole)


def test_an_overlay_pixel_by_hand():
    # A tinted pixel: (1 - alpha) * grey + alpha * palette colour; an outline pixel: the palette colour.
    image = np.full((3, 3), 100.0)
    classes = np.zeros((3, 3), int)
    classes[:, 2] = 1  # column 2 is class 1: its pixels touch class 0, so all are outline
    picture = overlay(image, classes, alpha=0.5, outline=False)
    np.testing.assert_array_equal(picture[0, 2], np.round(0.5 * 100 + 0.5 * PALETTE[1]).astype("uint8"))
    np.testing.assert_array_equal(picture[0, 0], [100, 100, 100])
    np.testing.assert_array_equal(overlay(image, classes, alpha=0.5)[1, 2], PALETTE[1])
