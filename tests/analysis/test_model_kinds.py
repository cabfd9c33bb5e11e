"""Which models the graph-reading tools take: functional and Sequential, not subclassed."""

import keras
import numpy as np
import pytest

from kfcn.analysis import receptive_field, translation_equivariance
from kfcn.inference import predict, predict_tiled
from kfcn.models import required_multiple
from tests.tolerances import reordered_network_atol

pytestmark = pytest.mark.backend


def _layers():
    return [
        keras.layers.Conv2D(2, 3, padding="same"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Conv2D(2, 3, padding="same"),
        keras.layers.UpSampling2D(2),
        keras.layers.Conv2D(1, 1),
    ]


def _sequential():
    return keras.Sequential([keras.Input((None, None, 1)), *_layers()])


class _Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.convolution = keras.layers.Conv2D(1, 3, padding="same")

    def call(self, inputs):
        return self.convolution(inputs)


def test_sequential_receptive_field_is_worked_out_by_hand():
    # conv3 -> 3; pool2 -> 4 (jump 2); conv3 -> 4 + 2*2 = 8; nearest upsampling and conv1 add nothing.
    field = receptive_field(_sequential())
    assert field.size == (8, 8) and field.jump == (1, 1) and field.required_multiple == 2
    assert required_multiple(_sequential()) == 2


def test_nested_sequential_gives_the_same_field():
    inputs = keras.Input((None, None, 1))
    outputs = keras.Sequential(_layers())(inputs)
    assert receptive_field(keras.Model(inputs, outputs)).size == (8, 8)


def test_predict_on_sequential_equals_a_direct_call(rng):
    model = _sequential()
    image = (rng.random((24, 20)) * 255).astype("float32")  # both sides multiples of 2: no padding
    direct = np.asarray(keras.ops.convert_to_numpy(model(image[None, ..., None])))[0]
    atol = reordered_network_atol(model, direct)  # another execution path: kernels may reorder the sums
    np.testing.assert_allclose(predict(model, image), direct, atol=atol)
    # Tiles overlap by the receptive field (8): equal to the direct call away from the border.
    tiled = predict_tiled(model, image, 16, progress=False)
    np.testing.assert_allclose(tiled[4:-4, 4:-4], direct[4:-4, 4:-4], atol=atol)


def test_sequential_without_input_says_to_add_one():
    with pytest.raises(ValueError, match=r"keras\.Input"):
        receptive_field(keras.Sequential(_layers()))


def test_subclassed_models_are_refused_with_what_is_supported():
    with pytest.raises(ValueError, match=r"functional models .*Sequential models.*subclassed"):
        receptive_field(_Subclassed())
    # Wrapping does not help: the wrapper would hide the layers, so it is refused too.
    inputs = keras.Input((None, None, 1))
    with pytest.raises(ValueError, match="subclassed"):
        receptive_field(keras.Model(inputs, _Subclassed()(inputs)))


def test_translation_equivariance_of_a_sequential_model():
    model = keras.Sequential([keras.Input((None, None, 1)), keras.layers.Conv2D(2, 3, padding="same")])
    assert translation_equivariance(model, (16, 16, 1)).equivariant
