"""tile_size="auto": the largest tile within the memory budget, or the whole image in one call."""

import numpy as np
import pytest

from kfcn.inference import predict, predict_tiled
from kfcn.inference.auto_tile import PEAK_FRACTION, activation_bytes_per_pixel, auto_tile_size
from kfcn.models import plain_cnn, unet
from tests.tolerances import reordered_network_atol


@pytest.mark.backend
def test_the_summed_activations_of_a_plain_cnn_by_hand():
    model = plain_cnn((None, None, 1), num_layers=3, filters=8)
    # input check 1 + scaling 1 + 2 x (conv 8 + ReLU 8) + output conv 1 + output 1 = 36 values per pixel.
    assert activation_bytes_per_pixel(model) == 36 * 4


@pytest.mark.backend
def test_auto_tiles_fit_the_budget_and_stay_exact(rng):
    model = unet((None, None, 1), num_classes=1, filters=4, depth=2)
    image = rng.integers(0, 256, (150, 130)).astype("uint8")
    assert auto_tile_size(model, image.shape) is None  # fits: one call
    np.testing.assert_array_equal(predict_tiled(model, image, "auto", progress=False), predict(model, image))
    budget = 60 * 60 * PEAK_FRACTION * activation_bytes_per_pixel(model)
    tile = auto_tile_size(model, image.shape, budget)
    assert tile % 4 == 0 and tile <= 60 and PEAK_FRACTION * activation_bytes_per_pixel(model) * tile**2 <= budget
    tiled = predict_tiled(model, image, "auto", memory_budget=budget, batch_size=1, progress=False)
    inner = (slice(22, -22), slice(22, -22))  # exact (receptive-field) overlap away from the border
    whole = predict(model, image)
    np.testing.assert_allclose(tiled[inner], whole[inner], atol=reordered_network_atol(model, whole))
    with pytest.raises(ValueError, match="'auto'"):
        predict_tiled(model, image, "largest", progress=False)
