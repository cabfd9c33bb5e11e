import keras
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


def test_segnet_basic_parameters_and_receptive_field_by_hand():
    # SegNet-Basic: 4 levels of one 7x7 convolution at 64 filters (batch norm, no bias), mirrored.
    from kfcn.analysis import receptive_field

    model = segnet((64, 64, 3), 11, filters=64, depth=4, convs_per_level=(1,) * 4, kernel_size=7, filter_growth=1)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    kernels = [tuple(layer.kernel.shape) for layer in convs]
    assert kernels[:8] == [(7, 7, 3, 64)] + [(7, 7, 64, 64)] * 7  # encoder 4, decoder 4
    batch_norms = 8 * 4 * 64  # gamma, beta, moving mean and variance of 64 channels after each conv
    head = 64 * 11 + 11  # the 1x1 classifier
    assert model.count_params() == 7 * 7 * 3 * 64 + 7 * 7 * 64 * 64 * 7 + batch_norms + head
    # Field, layer by layer: a k x k conv adds (k - 1) x jump, a 2x2 pooling adds 1 x jump and
    # doubles the jump, unpooling halves it.
    size, jump = 1, 1
    for _ in range(4):  # encoder: conv 7, then 2x2 pool of stride 2
        size, jump = size + 6 * jump, jump
        size, jump = size + 1 * jump, jump * 2
    for _ in range(4):  # decoder: unpool (jump / 2), then conv 7
        jump //= 2
        size += 6 * jump
    assert receptive_field(model).size == (size, size)
