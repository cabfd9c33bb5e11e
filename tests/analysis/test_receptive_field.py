import keras
import pytest

from kfcn.analysis import receptive_field
from kfcn.models import fcn, required_multiple, segnet, unet

pytestmark = pytest.mark.backend


def _stack(*layers, shape=(None, None, 1)):
    inputs = keras.Input(shape)
    x = inputs
    for layer in layers:
        x = layer(x)
    return keras.Model(inputs, x)


@pytest.mark.parametrize("n", [1, 2, 5])
def test_stacked_3x3_convolutions(n):
    model = _stack(*[keras.layers.Conv2D(2, 3, padding="same") for _ in range(n)])
    assert receptive_field(model).size == (1 + 2 * n, 1 + 2 * n)


def test_conv3_pool2_conv3_is_8():
    model = _stack(keras.layers.Conv2D(2, 3), keras.layers.MaxPooling2D(2), keras.layers.Conv2D(2, 3))
    field = receptive_field(model)
    assert field.size == (8, 8) and field.jump == (2, 2) and field.required_multiple == 2


def test_dilation_and_stride():
    model = _stack(keras.layers.Conv2D(2, 3, dilation_rate=2), keras.layers.Conv2D(2, 3, strides=2))
    assert receptive_field(model).size == (7, 7)


def test_published_unet():
    field = receptive_field(unet((572, 572, 1), 2, padding="valid"))
    assert field.size[0] >= 185
    assert field.start == (92, 92)  # (572 - 388) / 2: output pixel 0 sits over input pixel 92
    assert field.required_multiple == 16


def test_required_multiple_of_each_family():
    assert required_multiple(unet((None, None, 1), filters=2, depth=3)) == 8
    assert required_multiple(segnet((None, None, 1), num_classes=2, filters=2, depth=4)) == 16
    assert required_multiple(fcn((None, None, 3), num_classes=2, filters=2)) == 32


def test_summary_table_lists_every_layer(capsys):
    model = _stack(keras.layers.Conv2D(2, 3, name="first"), keras.layers.Conv2D(2, 3, name="second"))
    receptive_field(model).summary()
    text = capsys.readouterr().out
    assert "first" in text and "second" in text and "receptive field 5 px" in text


def test_untraceable_model_says_what_to_do():
    model = _stack(keras.layers.Conv2D(2, 3), shape=(None, None, 1))
    with pytest.raises(ValueError, match="input_size"):
        receptive_field(model, input_size=(0, 0))
