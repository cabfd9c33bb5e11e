"""kfcn.analysis.field_rules: a custom layer's registered rule enters the receptive field, by hand-worked numbers."""

import keras
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


def test_an_unregistered_size_keeping_layer_keeps_the_field():
    assert receptive_field(_model()).size == (5, 5)  # 3 + 2


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
