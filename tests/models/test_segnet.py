import numpy as np
import pytest

from kfcn.layers import MaxPoolingWithArgmax2D, MaxUnpooling2D
from kfcn.models import segnet
from tests.layer_testing import assert_keras_round_trip

pytestmark = pytest.mark.backend


def test_contains_argmax_pooling_and_unpooling():
    model = segnet((None, None, 3), num_classes=12, filters=4)
    assert sum(isinstance(layer, MaxPoolingWithArgmax2D) for layer in model.layers) == 5
    assert sum(isinstance(layer, MaxUnpooling2D) for layer in model.layers) == 5


@pytest.mark.parametrize("depth", [4, 5])
def test_camvid_size_with_odd_intermediate_sizes(depth):
    model = segnet((None, None, 3), num_classes=12, filters=4, depth=depth)
    y = model.predict(np.random.rand(1, 360, 480, 3).astype("float32"), verbose=0)
    assert y.shape == (1, 360, 480, 12)


@pytest.mark.parametrize("size", [(37, 53), (64, 40)])
def test_any_size_with_indices(size):
    model = segnet((None, None, 1), num_classes=2, filters=4, depth=3)
    assert model.predict(np.random.rand(1, *size, 1).astype("float32"), verbose=0).shape == (1, *size, 2)


def test_transpose_variant_and_round_trip(tmp_path):
    model = segnet((None, None, 3), num_classes=3, filters=4, depth=3, upsampling="transpose")
    assert not any(isinstance(layer, MaxUnpooling2D) for layer in model.layers)
    assert_keras_round_trip(model, np.random.rand(1, 32, 40, 3).astype("float32"), tmp_path)
    indices_model = segnet((None, None, 3), num_classes=3, filters=4, depth=3)
    assert_keras_round_trip(indices_model, np.random.rand(1, 30, 41, 3).astype("float32"), tmp_path)


def test_errors():
    with pytest.raises(ValueError, match="too small"):
        segnet((16, 16, 3), depth=5)
    with pytest.raises(ValueError, match="multiple of 8"):
        segnet((30, 30, 3), depth=3, upsampling="replicate")
