import keras
import numpy as np
import pytest

from kfcn.models import fcn
from tests.layer_testing import assert_keras_round_trip

pytestmark = pytest.mark.backend


@pytest.mark.parametrize("variant, fused", [("32s", 0), ("16s", 1), ("8s", 2)])
@pytest.mark.parametrize("size", [(64, 96), (96, 32)])
def test_variants_and_sizes(variant, fused, size):
    model = fcn((None, None, 3), num_classes=5, variant=variant, filters=4)
    assert sum(isinstance(layer, keras.layers.Add) for layer in model.layers) == fused
    assert model.predict(np.random.rand(1, *size, 3).astype("float32"), verbose=0).shape == (1, *size, 5)


def test_initial_upsampling_is_bilinear():
    model = fcn((None, None, 3), num_classes=2, variant="32s", filters=4)
    kernel = keras.ops.convert_to_numpy(model.get_layer("upsample_x32").kernel)
    profile = kernel[:, 32, 0, 0] / kernel[:, 32, 0, 0].max()
    assert np.allclose(profile, profile[::-1]) and kernel[:, :, 0, 1].max() == 0


def test_backbone_and_round_trip(tmp_path):
    model = fcn((None, None, 3), num_classes=3, backbone="vgg16", fc_filters=16)
    assert model.predict(np.zeros((1, 64, 64, 3), "float32"), verbose=0).shape == (1, 64, 64, 3)
    small = fcn((None, None, 3), num_classes=3, filters=4)
    assert_keras_round_trip(small, np.random.rand(1, 64, 32, 3).astype("float32"), tmp_path)


def test_errors():
    with pytest.raises(ValueError, match="variant"):
        fcn(variant="4s")
    with pytest.raises(ValueError, match="multiple of 32"):
        fcn((100, 100, 3))
