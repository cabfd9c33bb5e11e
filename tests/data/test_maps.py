import numpy as np
import pytest

from kfcn.data import degrade, density_map, dots_from_image, unet_weight_map


def test_weight_map_two_objects_by_hand():
    # Two 3-pixel objects with a 3-pixel gap on one row: cols 0-2 and 6-8.
    mask = np.zeros((1, 9), int)
    mask[0, :3] = 1
    mask[0, 6:] = 1
    w = unet_weight_map(mask, w0=10.0, sigma=5.0, class_weights=None)
    for col in range(9):
        d1 = min(abs(col - 2) if col > 2 else 0, abs(col - 6) if col < 6 else 0)
        to_left = 0 if col <= 2 else col - 2
        to_right = 0 if col >= 6 else 6 - col
        d1, d2 = sorted([to_left, to_right])
        assert w[0, col] == pytest.approx(1 + 10 * np.exp(-((d1 + d2) ** 2) / 50), rel=1e-5)


def test_weight_map_class_balance_and_single_object():
    mask = np.zeros((10, 10), int)
    mask[:5, :2] = 1  # one object: no border term
    w = unet_weight_map(mask)
    assert w[0, 0] == pytest.approx(100 / (2 * 10)) and w[9, 9] == pytest.approx(100 / (2 * 90))


def test_weight_map_instances_touching():
    instances = np.zeros((5, 6), int)
    instances[:, :3], instances[:, 3:] = 1, 2  # touching: no gap in a binary mask
    w = unet_weight_map(instances, class_weights=None)
    assert w[2, 2] == pytest.approx(1 + 10 * np.exp(-1 / 50), rel=1e-5)


def _border_term_everywhere(instances, w0, sigma):
    """Eq. 2's border term by brute force: every object's distance transform over the whole image."""
    from scipy import ndimage

    ids = np.unique(instances[instances > 0])
    distances = np.sort([ndimage.distance_transform_edt(instances != i) for i in ids], 0)
    return w0 * np.exp(-((distances[0] + distances[1]) ** 2) / (2 * sigma**2))


@pytest.mark.parametrize("w0, sigma", [(10.0, 5.0), (3.0, 12.0), (10.0, 1.0)])
def test_weight_map_equals_the_brute_force_border_term(rng, w0, sigma):
    # Objects near and far (the computation only looks within each object's reach), sparse ids.
    instances = np.zeros((120, 150), int)
    for number, (row, col) in enumerate(rng.integers(5, 110, (12, 2)), start=1):
        instances[row : row + rng.integers(3, 12), col : col + rng.integers(3, 12)] = 7 * number
    instances[2:6, 140:148] = 999
    expected = 1.0 + _border_term_everywhere(instances, w0, sigma)
    weights = unet_weight_map(instances, w0=w0, sigma=sigma, class_weights=None, instances=True)
    np.testing.assert_allclose(weights, expected.astype("float32"), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("sigma", [1.0, 3.0])
def test_density_map_integrates_to_count(rng, sigma):
    points = np.concatenate([rng.uniform(0, 63, (40, 2)), [[0, 0], [63, 63], [0, 63]]])
    density = density_map(points, (64, 64), sigma)
    assert density.sum() == pytest.approx(len(points), rel=1e-5)
    assert density[:32].sum() == pytest.approx(np.sum(points[:, 0] < 32), abs=1.5)


def test_density_map_rejects_outside_dots():
    with pytest.raises(ValueError, match="outside the 8x8 image"):
        density_map([(9, 1)], (8, 8))


def test_dots_from_vgg_style_image():
    image = np.zeros((5, 5, 3), np.uint8)
    image[1, 1] = image[3, 4] = (255, 0, 0)
    image[2, 2] = (255, 10, 0)
    assert dots_from_image(image).tolist() == [[1, 1], [3, 4]]


def test_degrade_pairs(rng):
    clean = rng.random((32, 32, 3)).astype("float32")
    degraded, target = degrade(clean, blur_sigma=(1, 2), noise_std=(0.01, 0.02), downsample=2, seed=0)
    assert degraded.shape == clean.shape and np.array_equal(target, clean)
    assert np.std(degraded - clean) > 0.01
    again, _ = degrade(clean, blur_sigma=(1, 2), noise_std=(0.01, 0.02), downsample=2, seed=0)
    np.testing.assert_array_equal(degraded, again)
    with pytest.raises(ValueError, match="NaN"):
        degrade(np.full((4, 4), np.nan))


def test_weight_map_refuses_raw_masks_and_keeps_instance_maps():
    mask = np.zeros((1, 9), int)
    mask[0, :3] = mask[0, 6:] = 1
    expected = unet_weight_map(mask, class_weights=None)
    for raw, instances in ((mask * 255, None), (mask * 255, False), (mask * 2, False)):
        with pytest.raises(ValueError, match=r"labels // 255.*label_mode='binary'"):
            unet_weight_map(raw, class_weights=None, instances=instances)
    # The fix the message names gives the 0/1 mask's weights, with its border term.
    np.testing.assert_array_equal(unet_weight_map(mask * 255 // 255, class_weights=None), expected)
    assert expected[0, 4] > 1.5
    # Instance maps (several ids) still work; a single object needs instances=True.
    np.testing.assert_array_equal(unet_weight_map(mask * [[1, 1, 1, 0, 0, 0, 2, 2, 2]], class_weights=None), expected)
    single = unet_weight_map(mask[:, :3] * 7, class_weights=None, instances=True)
    np.testing.assert_array_equal(single, np.ones((1, 3)))
    with pytest.raises(ValueError, match=">= 0"):
        unet_weight_map(-mask)


@pytest.mark.parametrize("sigma", [0, -1.0, np.nan, np.inf])
def test_density_map_refuses_bad_sigma(sigma):
    with pytest.raises(ValueError, match="sigma must be a positive number"):
        density_map([(1, 1)], (8, 8), sigma=sigma)


@pytest.mark.parametrize("points", [[1, 2, 3], [(1, 2, 3)], np.zeros((2, 2, 2)), [[1.0, 2.0]] * 2 + [[1.0]]])
def test_density_map_refuses_points_of_the_wrong_shape(points):
    with pytest.raises(ValueError, match=r"points must be an \(N, 2\) array"):
        density_map(points, (8, 8))


def test_density_map_points_edge_cases():
    assert density_map([], (4, 5)).shape == (4, 5) and density_map(np.zeros((0, 2)), (4, 5)).sum() == 0
    assert density_map([(3, 4)], (4, 5)).sum() == pytest.approx(1.0)  # the last pixel is inside
    for outside in ([(4, 0)], [(0, 5)], [(-0.5, 1)]):
        with pytest.raises(ValueError, match="outside the 4x5 image.*drop or clip"):
            density_map(outside, (4, 5))
    with pytest.raises(ValueError, match="NaN or infinite"):
        density_map([(np.nan, 1)], (4, 5))
    for shape in [(0, 5), (4.0, 5), (True, 5), (4, 5, 3), 4]:  # floats, bools and other lengths too
        with pytest.raises(ValueError, match=r"shape must be \(height, width\), two positive ints"):
            density_map([(1, 1)], shape)
    with pytest.raises(ValueError, match="sigma must be a positive number"):
        density_map([(1, 1)], (4, 5), sigma=True)
    assert density_map([(1, 1)], np.array([4, 5])).shape == (4, 5)
