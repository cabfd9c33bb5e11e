"""kfcn.analysis.field_rules: a custom layer's registered rule enters the receptive field, by hand-worked numbers;
a layer without a rule is measured, and tiling built on the measurement stays exact."""

import math

import keras
import numpy as np
import pytest

from kfcn.analysis import receptive_field
from kfcn.analysis.field_rules import (
    FIELD_RULES,
    WINDOWS,
    AxisField,
    Window,
    register_field_rule,
    register_window,
    window_of,
)
from kfcn.inference import predict, predict_tiled
from kfcn.models import FAMILIES, build


@keras.saving.register_keras_serializable("kfcn_test")
class FixedBlur(keras.layers.Layer):
    """A stand-in for a custom 7 x 7 filter of stride 1 (what it computes does not matter here)."""

    def call(self, x):
        return x


@keras.saving.register_keras_serializable("kfcn_test")
class HalfPixelShift(keras.layers.Layer):
    def call(self, x):
        return x


def _model():
    inputs = keras.Input((None, None, 1))
    x = keras.layers.Conv2D(2, 3, padding="same")(inputs)  # r 3
    x = FixedBlur()(x)
    return keras.Model(inputs, keras.layers.Conv2D(1, 3, padding="same")(x))


@pytest.fixture
def registry():
    windows, rules = dict(WINDOWS), dict(FIELD_RULES)
    yield
    WINDOWS.clear(), WINDOWS.update(windows)
    FIELD_RULES.clear(), FIELD_RULES.update(rules)


class UnregisteredBlur(keras.layers.Layer):
    """A real 5 x 3 (rows x columns) mean filter written in keras.ops, with no field rule: its field is measured."""

    def call(self, x):
        kernel = keras.ops.ones((5, 3, x.shape[-1], 1)) / 15.0
        return keras.ops.depthwise_conv(x, kernel, padding="same")


def _blur_model():
    inputs = keras.Input((None, None, 1))
    x = keras.layers.Conv2D(2, 3, padding="same", activation="relu")(inputs)  # r 3
    x = UnregisteredBlur(name="blur")(x)  # r 3 + 4 rows, 3 + 2 columns
    return keras.Model(inputs, keras.layers.Conv2D(1, 3, padding="same")(x))  # + 2


def test_an_unregistered_identity_layer_is_measured_as_pointwise():
    field = receptive_field(_model())
    assert field.size == (5, 5) and field.measured == ["fixed_blur"]  # 3 + 2: the stand-in passes pixels on


def test_an_unregistered_filter_is_measured_as_the_window_it_slides():
    field = receptive_field(_blur_model())
    assert field.size == (9, 7) and field.start == (0, 0) and field.measured == ["blur"]
    printed = []
    field.summary(print_fn=printed.append)
    assert "measured, without a field rule: blur (register a rule to make them exact" in printed[0]


def test_tiles_on_a_measured_field_equal_the_whole_image(rng):
    model = _blur_model()
    image = rng.uniform(0, 255, (70, 52, 1)).astype("float32")
    whole = predict(model, image)
    tiled = predict_tiled(model, image, tile_size=24, progress=False)  # many tiles, overlap from the measured field
    np.testing.assert_allclose(tiled, whole, rtol=1e-5, atol=1e-5)


def test_a_normalisation_over_the_image_is_measured_as_global():
    inputs = keras.Input((None, None, 1))
    x = keras.layers.Conv2D(2, 3, padding="same")(inputs)
    model = keras.Model(inputs, keras.layers.GroupNormalization(groups=1, name="image_norm")(x))
    field = receptive_field(model)
    assert math.isinf(field.size[0]) and math.isinf(field.size[1]) and field.measured == ["image_norm"]


@pytest.mark.parametrize("name", FAMILIES)
def test_every_layer_of_the_zoo_has_a_rule(name):
    assert receptive_field(build(name, (None, None, 1), 2, filters=2)).measured == []


def test_a_registered_window_widens_the_field_by_its_kernel(registry):
    @register_window(FixedBlur)
    def _(layer):
        return Window((7, 7), (1, 1), (1, 1), "same")

    assert receptive_field(_model()).size == (11, 11)  # 3 + 6 + 2


def test_a_registered_field_rule_moves_the_centre(registry):
    @register_field_rule(FixedBlur)
    def _(layer, merged, inputs, fields, in_size):
        rows, cols = merged
        return AxisField(rows.size, rows.jump, rows.start + 0.5), cols

    field = receptive_field(_model())
    assert field.size == (5, 5) and field.start == (0.5, 0)


def test_a_subclass_takes_its_base_classes_rule_unless_it_has_its_own():
    class MyConv(keras.layers.Conv2D):
        pass

    assert window_of(MyConv(1, 5, dilation_rate=2)).extent(0) == 9
    assert window_of(keras.layers.Conv2DTranspose(1, 3)) is None  # a field rule of its own
