"""One contract for every family of the zoo (`kfcn.models.FAMILIES`), checked the same way for each,
as segmentation_models.pytorch's BaseModelTester does: a new family passes these or is not in the zoo."""

import re

import keras
import numpy as np
import pytest

from kfcn.models import FAMILIES, build, head_of, options
from kfcn.saving import load_model
from tests.tolerances import reordered_network_atol

pytestmark = pytest.mark.backend

# The smallest model of each family; each takes 32x32 inputs.
TINY = {
    "unet": {"filters": 2, "depth": 2},
    "segnet": {"filters": 2, "depth": 2},
    "fcn": {"filters": 2, "fc_filters": 4, "variant": "8s"},
    "plain_cnn": {"filters": 2, "num_layers": 2},
}
SIZE = 32


def tiny(name, outputs=2, **overrides):
    keras.utils.set_random_seed(0)
    return build(name, (None, None, 1), outputs, **{**TINY[name], **overrides})


def run(model, inputs):
    """The model's output as NumPy (on PyTorch a called model returns a tensor that requires grad)."""
    return keras.ops.convert_to_numpy(model(inputs, training=False))


def pixels(seed=0, channels=1):
    return np.random.default_rng(seed).integers(0, 256, (1, SIZE, SIZE, channels)).astype("float32")


def test_every_family_has_a_tiny_case():
    assert set(TINY) == set(FAMILIES)


@pytest.mark.parametrize("name", FAMILIES)
def test_the_output_is_an_image_of_the_input_size_with_the_head_asked_for(name):
    for outputs, head, expected in [(1, None, "binary"), (3, None, "semantic"), (2, "regression", "regression")]:
        model = tiny(name, outputs, head=head)
        assert head_of(model) == expected
        assert tuple(model.output.shape) == (None, None, None, outputs)
        values = run(model, pixels())
        assert values.shape == (1, SIZE, SIZE, outputs) and np.isfinite(values).all()
        if expected == "semantic":
            np.testing.assert_allclose(values.sum(-1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("name", FAMILIES)
def test_a_saved_file_predicts_what_the_model_did(name, tmp_path):
    model = tiny(name)
    model.save(tmp_path / "model.keras")
    np.testing.assert_array_equal(run(load_model(tmp_path / "model.keras"), pixels()), run(model, pixels()))


@pytest.mark.parametrize("name", FAMILIES)
def test_the_model_scales_raw_pixels_by_its_input_range(name):
    # The same weights with a 16-bit range take 16-bit pixels (x 257) to the same output as 8-bit ones.
    eight_bit = tiny(name, input_range=(0, 255))
    sixteen_bit = tiny(name, input_range=(0, 65535))
    sixteen_bit.set_weights(eight_bit.get_weights())
    expected = run(eight_bit, pixels())
    atol = reordered_network_atol(eight_bit, expected)
    np.testing.assert_allclose(run(sixteen_bit, pixels() * 257), expected, atol=atol)


@pytest.mark.parametrize("name", FAMILIES)
def test_logits_are_the_head_before_its_activation(name):
    for outputs, activation in [(1, keras.ops.sigmoid), (3, keras.ops.softmax)]:
        probabilities = tiny(name, outputs)
        logits = tiny(name, outputs, logits=True)
        logits.set_weights(probabilities.get_weights())
        assert head_of(logits) == "regression"  # a linear output: the caller knows they asked for logits
        expected = run(probabilities, pixels())
        np.testing.assert_allclose(keras.ops.convert_to_numpy(activation(run(logits, pixels()))), expected, atol=1e-6)


@pytest.mark.parametrize("name", FAMILIES)
def test_coordinate_channels_and_extra_inputs_are_taken(name):
    with_coordinates = tiny(name, coordinate_channels=True)
    assert with_coordinates.count_params() > tiny(name).count_params()  # the first convolution sees 2 more maps
    with_extra = tiny(name, extra_inputs={"distance": 1})
    assert len(with_extra.inputs) == 2
    values = run(with_extra, {"image": pixels(), "distance": pixels(1)})
    assert values.shape == (1, SIZE, SIZE, 2)


@pytest.mark.parametrize("name", FAMILIES)
def test_unknown_options_name_what_the_family_takes(name):
    with pytest.raises(ValueError, match=rf"{name} has no option 'flavour'; it takes .*filters"):
        tiny(name, flavour="vanilla")
    assert "filters" in options(name) and "input_shape" not in options(name)


@pytest.mark.parametrize("family", FAMILIES)
def test_the_model_s_name_is_an_option_like_the_others(family):
    """`build`'s family argument is positional, so the family's own `name` option reaches it (a recipe's
    `model_options: {"name": ...}` names the model it trains)."""
    assert "name" in options(family)
    assert build(family, (None, None, 1), 2, **TINY[family], name="renamed").name == "renamed"


def test_an_unknown_family_names_the_zoo():
    with pytest.raises(ValueError, match="Unknown model family 'resnet'; kfcn has unet, segnet, fcn, plain_cnn"):
        build("resnet", (None, None, 1), 2)


@pytest.mark.tensorflow_only(reason="converts in TensorFlow")
@pytest.mark.parametrize("name", FAMILIES)
def test_every_family_lowers_to_builtin_tflite_ops(name, tmp_path):
    import tensorflow as tf

    model = tiny(name)
    model.export(str(tmp_path / "saved_model"), format="tf_saved_model", verbose=False)
    converter = tf.lite.TFLiteConverter.from_saved_model(str(tmp_path / "saved_model"))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]  # fails on any Flex op
    interpreter = tf.lite.Interpreter(model_content=converter.convert())
    interpreter.resize_tensor_input(interpreter.get_input_details()[0]["index"], (1, SIZE, SIZE, 1))
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], pixels())
    interpreter.invoke()
    result = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    expected = run(model, pixels())
    np.testing.assert_allclose(result, expected, atol=reordered_network_atol(model, expected))


def test_the_command_line_offers_every_family():
    from kfcn.cli.train_options import ZOO

    assert ZOO == tuple(FAMILIES)


@pytest.mark.parametrize(
    ("name", "options", "problem"),
    [
        ("unet", {"filters": True}, "unet: `filters` must be an int >= 1 or a sequence of them, got True (bool)"),
        ("unet", {"filters": [4, 8.0, 16], "depth": 2}, "8.0 (float) is not"),
        ("unet", {"filters": [4, 8], "depth": 2}, "`filters` needs depth + 1 = 3 entries (one per level), got 2"),
        ("segnet", {"filters": 0}, "segnet: `filters` (of the first level) must be an int >= 1, got 0"),
        ("segnet", {"convs_per_level": (1, 0), "depth": 2}, "`convs_per_level` must be an int >= 1 or a sequence"),
        ("fcn", {"filters": "8"}, "`filters` (of the first level) must be an int >= 1, got '8' (str)"),
        ("plain_cnn", {"filters": 2.5}, "plain_cnn: `filters` must be an int >= 1, got 2.5 (float)"),
    ],
)
def test_filter_counts_that_are_not_positive_integers_are_refused(name, options, problem):
    with pytest.raises(ValueError, match=re.escape(problem)):
        build(name, (None, None, 1), 2, **options)
