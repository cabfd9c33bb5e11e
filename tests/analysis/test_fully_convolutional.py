"""`check_fully_convolutional`: which models kfcn's analysis and tiling take, and the layer named when not."""

import keras
import pytest

from kfcn import models
from kfcn.analysis import check_fully_convolutional, check_model_input

pytestmark = pytest.mark.backend


@pytest.mark.parametrize(
    "build",
    [
        lambda: models.unet((None, None, 1), num_classes=2, filters=2, depth=2),
        lambda: models.unet((None, None, 1), filters=2, depth=2, padding="valid"),
        lambda: models.segnet((None, None, 3), filters=2, depth=2),
        lambda: models.fcn((None, None, 1), filters=2),
        lambda: models.plain_cnn((None, None, 1), num_layers=2, filters=2),
        lambda: models.unet((64, 64, 1), filters=2, depth=2, coordinate_channels=True, extra_inputs={"mask": 1}),
    ],
    ids=["unet", "valid-unet", "segnet", "fcn", "plain-cnn", "fixed-size-two-inputs"],
)
def test_the_model_zoo_is_fully_convolutional(build):
    check_fully_convolutional(build())


def test_a_global_context_branch_that_merges_back_is_a_map():
    # DeepLab's image pooling: pooled to 1x1, brought back to the map's size, concatenated with it.
    inputs = keras.Input((None, None, 1))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    pooled = keras.layers.GlobalAveragePooling2D(keepdims=True)(x)
    context = keras.layers.Conv2D(4, 1)(pooled) + keras.ops.zeros_like(x)  # broadcast over the map
    check_fully_convolutional(keras.Model(inputs, keras.layers.Concatenate()([x, context])))


def test_a_pooling_head_inside_a_nested_backbone_is_named():
    image = keras.Input((None, None, 1))
    backbone = keras.Model(
        image, keras.layers.GlobalMaxPooling2D(name="avg_pool")(keras.layers.Conv2D(2, 3)(image)), name="backbone"
    )
    inputs = keras.Input((None, None, 1))
    classifier = keras.Model(inputs, keras.layers.Dense(3)(backbone(inputs)))
    with pytest.raises(ValueError, match=r"layer 'avg_pool' \(GlobalMaxPooling2D\) pools the whole image"):
        check_fully_convolutional(classifier, "predict_tiled")


def test_the_layer_closest_to_the_output_is_named():
    # A pooled branch merges back (fine); the Reshape after the merge is what ends the map.
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(2, 3, padding="same")(inputs)
    x = keras.layers.Multiply()([x, keras.layers.GlobalAveragePooling2D(keepdims=True)(x)])
    model = keras.Model(inputs, keras.layers.Reshape((128,), name="to_vector")(x))
    with pytest.raises(ValueError, match=r"layer 'to_vector' \(Reshape\) turns the image map \(None, 8, 8, 2\) into"):
        check_fully_convolutional(model)


def test_an_output_that_ignores_the_image_is_named():
    image, frame = keras.Input((None, None, 1), name="image"), keras.Input((4,), name="frame")
    model = keras.Model([image, frame], [keras.layers.Dense(2)(frame), keras.layers.Conv2D(1, 1)(image)])
    with pytest.raises(ValueError, match=r"its output, shape \(None, 2\), does not depend on its image input"):
        check_fully_convolutional(model)


def test_a_sequential_classifier_is_named():
    model = keras.Sequential(
        [keras.Input((8, 8, 1)), keras.layers.Conv2D(2, 3), keras.layers.Flatten(name="flat"), keras.layers.Dense(2)]
    )
    with pytest.raises(ValueError, match=r"not fully convolutional \(layer 'flat' flattens the image"):
        check_fully_convolutional(model, "receptive_field")


def test_model_input_checks_channels_before_size():
    model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(1, 3)])
    with pytest.raises(ValueError, match=r"expects 3 input channel\(s\), but `input_shape` \(16, 16, 1\) has 1"):
        check_model_input(model, (16, 16, 1), "erf")
    with pytest.raises(ValueError, match=r"takes only 32x32 inputs .*not 16x16.*input_shape=\(32, 32, 3\)"):
        check_model_input(model, (16, 16, 3), "erf")
    check_model_input(model, (32, 32, 3), "erf")
