"""Synthetic touching ellipses and their 3-class targets, against hand-worked maps."""

import numpy as np
import pytest
from scipy import ndimage

from kfcn.data import three_class_labels, touching_ellipses


def _touching_pairs(instances):
    """Pairs of distinct object ids that share a 4-connected edge."""
    pairs = set()
    for a, b in ((instances[:, :-1], instances[:, 1:]), (instances[:-1], instances[1:])):
        contact = (a != b) & (a > 0) & (b > 0)
        pairs |= {tuple(sorted(pair)) for pair in zip(a[contact].tolist(), b[contact].tolist())}
    return pairs


def test_image_and_instances_have_the_documented_types_and_ids():
    image, instances = touching_ellipses((96, 80), seed=4)
    assert image.shape == (96, 80, 1) and image.dtype == np.float32
    assert instances.shape == (96, 80) and instances.dtype == np.int32
    assert 0 <= image.min() and image.max() <= 255
    ids = np.unique(instances)
    np.testing.assert_array_equal(ids, np.arange(len(ids)))  # 0 and 1..K, none skipped
    for k in ids[1:]:
        assert ndimage.label(instances == k)[1] == 1  # one piece each
        assert np.count_nonzero(instances == k) >= 20  # the default min_size


def test_objects_touch_so_foreground_components_merge_them():
    touching_objects, objects, components = 0, 0, 0
    for seed in range(10):
        _, instances = touching_ellipses(seed=seed)
        pairs = _touching_pairs(instances)
        assert pairs, f"seed {seed}: no two objects touch"
        touching_objects += len({k for pair in pairs for k in pair})
        objects += instances.max()
        components += ndimage.label(instances > 0)[1]
    assert touching_objects > 0.6 * objects
    assert components < 0.6 * objects  # a foreground mask alone would merge most of them


def test_there_is_no_dark_edge_where_two_objects_touch():
    contact, inside, outside = [], [], []
    for seed in range(5):
        image, instances = touching_ellipses(seed=seed, noise=0.0)
        image = image[..., 0]
        other_object = ndimage.maximum_filter(instances, size=3) != ndimage.minimum_filter(instances, size=3)
        near_background = ndimage.minimum_filter(instances, size=3) == 0
        contact.append(image[(instances > 0) & other_object & ~near_background])
        inside.append(image[(instances > 0) & ~ndimage.binary_dilation(other_object | near_background, iterations=3)])
        outside.append(image[instances == 0])
    contact, inside, outside = (np.concatenate(values).mean() for values in (contact, inside, outside))
    assert contact > 0.93 * inside  # touching objects meet without a valley between them
    assert outside < 0.4 * inside  # while the background is dark


def test_the_same_seed_gives_the_same_image_and_noise_has_the_stated_std():
    first, second = touching_ellipses(seed=7), touching_ellipses(seed=7)
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    assert not np.array_equal(first[1], touching_ellipses(seed=8)[1])
    clean, _ = touching_ellipses(seed=7, noise=0.0)
    noisy, _ = touching_ellipses(seed=7, noise=0.05)  # the same objects; the noise is drawn last
    assert (noisy - clean).std() == pytest.approx(0.05 * 255, rel=0.05)


def test_count_bounds_the_objects():
    for seed in range(5):
        assert 1 <= touching_ellipses((64, 64), count=3, seed=seed)[1].max() <= 3


def test_three_class_labels_of_two_objects_side_by_side():
    instances = np.array([[0, 1, 1, 1, 1, 2, 2, 2, 2]] * 3)
    # Rows repeat beyond the image's edge, so only the column neighbours count.
    np.testing.assert_array_equal(three_class_labels(instances, 1), [[0, 2, 1, 1, 2, 2, 1, 1, 1]] * 3)
    np.testing.assert_array_equal(three_class_labels(instances, 2), [[0, 2, 2, 2, 2, 2, 2, 1, 1]] * 3)


def test_three_class_labels_measure_euclidean_distance():
    instances = np.array([[0, 1, 1], [1, 1, 1], [1, 1, 1]])
    # (1, 1) is sqrt(2) from the background pixel: outside a 1-pixel band, inside a 2-pixel one.
    np.testing.assert_array_equal(three_class_labels(instances, 1), [[0, 2, 1], [2, 1, 1], [1, 1, 1]])
    np.testing.assert_array_equal(three_class_labels(instances, 2), [[0, 2, 2], [2, 2, 1], [2, 1, 1]])
    block = np.zeros((7, 7), int)
    block[1:6, 1:6] = 1
    expected = np.where(block == 1, 2, 0)
    expected[3, 3] = 1  # the centre is 3 px from the background; (2, 2) is 2 px from (0, 2)
    np.testing.assert_array_equal(three_class_labels(block, 2), expected)


def test_three_class_labels_of_generated_objects_keep_the_interiors_apart():
    _, instances = touching_ellipses(seed=3)
    classes = three_class_labels(instances, boundary_width=2)
    np.testing.assert_array_equal(classes > 0, instances > 0)
    interiors, count = ndimage.label(classes == 1)
    for k in range(1, count + 1):
        assert len(np.unique(instances[interiors == k])) == 1  # no interior spans two objects


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"shape": (4, 64)}, "shape"),
        ({"count": (5, 2)}, "count"),
        ({"count": 0}, "count"),
        ({"noise": -0.1}, "noise"),
        ({"radius": (0, 5)}, "radius"),
        ({"min_size": 0}, "min_size"),
    ],
)
def test_bad_generator_arguments_are_refused(arguments, message):
    with pytest.raises(ValueError, match=message):
        touching_ellipses(**arguments)


def test_bad_instance_maps_are_refused():
    with pytest.raises(ValueError, match="boundary_width"):
        three_class_labels(np.ones((4, 4), int), boundary_width=0)
    with pytest.raises(ValueError, match="non-negative integer"):
        three_class_labels(np.ones((4, 4), float))
    with pytest.raises(ValueError, match="non-negative integer"):
        three_class_labels(-np.ones((4, 4), int))
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        three_class_labels(np.ones((2, 4, 4), int))
