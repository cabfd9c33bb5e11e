import keras
import numpy as np
import pytest

from kfcn.layers import CoordinateChannels, whole_image_frame
from tests.layer_testing import run_layer_test, to_numpy

pytestmark = pytest.mark.backend


def numpy_coordinates(height, width):
    rows = np.linspace(-1, 1, height)[:, None].repeat(width, 1)
    cols = np.linspace(-1, 1, width)[None, :].repeat(height, 0)
    return rows, cols


def test_local_coordinates(rng):
    x = rng.normal(size=(2, 5, 7, 3)).astype("float32")
    y = to_numpy(CoordinateChannels()(x))
    rows, cols = numpy_coordinates(5, 7)
    np.testing.assert_array_equal(y[..., :3], x)
    np.testing.assert_allclose(y[1, :, :, 3], rows, atol=1e-6)
    np.testing.assert_allclose(y[1, :, :, 4], cols, atol=1e-6)


def test_crop_with_frame_equals_crop_of_whole_image(rng):
    x = rng.normal(size=(1, 20, 30, 1)).astype("float32")
    whole = to_numpy(CoordinateChannels()(x))
    frame = to_numpy(whole_image_frame(1, 20, 30, top=6, left=11))
    crop = to_numpy(CoordinateChannels()([x[:, 6:14, 11:20], frame]))
    np.testing.assert_allclose(crop, whole[:, 6:14, 11:20], atol=1e-6)


def test_layer_contract(rng):
    x = rng.normal(size=(2, 6, 5, 2)).astype("float32")
    run_layer_test(CoordinateChannels, {}, x, expected_output_shape=(2, 6, 5, 4))


def test_one_pixel_image_is_finite():
    y = to_numpy(CoordinateChannels()(np.zeros((1, 1, 1, 1), "float32")))
    assert np.all(np.isfinite(y))


def test_symbolic_none_shape():
    inputs = keras.Input((None, None, 3))
    assert tuple(CoordinateChannels()(inputs).shape) == (None, None, None, 5)
