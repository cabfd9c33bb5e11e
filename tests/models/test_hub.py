"""keras-hub backbones under kfcn's decoders, from local preset folders with random weights (no network)."""

import keras
import numpy as np
import pytest

from kfcn.models import encoder_of, fcn, required_multiple, unet
from tests.layer_testing import assert_keras_round_trip

keras_hub = pytest.importorskip("keras_hub")

pytestmark = pytest.mark.backend

FAMILIES = ["resnet", "densenet"]


@pytest.fixture(scope="module")
def presets(tmp_path_factory):
    from tests.hub_models import save_preset

    return {family: save_preset(family, tmp_path_factory.mktemp(family)) for family in [*FAMILIES, "mit"]}


@pytest.mark.parametrize("family", FAMILIES)
def test_unet_from_a_preset_folder_preprocesses_trains_and_round_trips(family, presets, tmp_path):
    model = unet((None, None, 3), num_classes=2, backbone=presets[family], filters=8)
    assert required_multiple(model) == 32
    pixels = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype("float32")

    # The model's own layers equal the preset's image converter (the family's reference) on raw pixels.
    front = keras.Model(model.inputs, model.get_layer("encoder_preprocessing").output)
    reference = keras.ops.convert_to_numpy(keras_hub.layers.ImageConverter.from_preset(presets[family])(pixels))
    difference = np.abs(keras.ops.convert_to_numpy(front(pixels)) - reference).max()
    assert difference < 1e-5, difference

    model.compile(keras.optimizers.Adam(1e-3), "categorical_crossentropy")  # sparse fails on PyTorch (4-D maps)
    labels = np.eye(2, dtype="float32")[np.random.default_rng(1).integers(0, 2, (2, 64, 64))]
    history = model.fit(pixels, labels, batch_size=2, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert_keras_round_trip(model, pixels, tmp_path)


def test_skips_come_from_the_pyramid_by_stride(presets):
    model = unet((64, 64, 1), num_classes=1, backbone=presets["resnet"], filters=8)
    outputs = encoder_of(model).compute_output_spec(keras.KerasTensor((1, 64, 64, 3)))
    strides = {64 // output.shape[1] for output in outputs}
    assert strides == {4, 8, 16, 32}  # ResNet's pyramid is P2 to P5: no stride-2 skip
    concatenated = sorted(layer.name for layer in model.layers if layer.name.endswith("_concat"))
    assert concatenated == ["decoder3_concat", "decoder4_concat", "decoder5_concat"]  # strides 4, 8, 16
    assert model.output_shape == (None, 64, 64, 1)


def test_preset_weights_are_loaded_and_random_ones_on_request(presets):
    loaded = unet((None, None, 3), backbone=presets["resnet"], filters=8)
    random = unet((None, None, 3), backbone=presets["resnet"], filters=8, backbone_weights=None)
    saved = keras_hub.models.Backbone.from_preset(presets["resnet"])
    first_conv = [w for w in saved.weights if len(w.shape) == 4][0]
    in_loaded = [w for w in encoder_of(loaded).weights if w.path == first_conv.path]
    in_random = [w for w in encoder_of(random).weights if w.path == first_conv.path]
    expected = keras.ops.convert_to_numpy(first_conv)
    assert np.array_equal(keras.ops.convert_to_numpy(in_loaded[0]), expected)
    assert not np.array_equal(keras.ops.convert_to_numpy(in_random[0]), expected)


def test_an_instance_needs_its_preprocessing_named(presets):
    from tests.hub_models import tiny_backbone_and_converter

    backbone, converter = tiny_backbone_and_converter("densenet")
    with pytest.raises(ValueError, match="does not say how its inputs are normalised"):
        unet((None, None, 3), backbone=backbone)
    model = unet((None, None, 1), backbone=backbone, encoder_preprocessing=converter, filters=8)
    assert model.get_layer("encoder_preprocessing").scale == (1.0, 1.0, 1.0)  # [0, 1] input times 255 / 255
    with pytest.raises(ValueError, match="used with the weights it has"):
        unet((None, None, 3), backbone=backbone, backbone_weights=None, encoder_preprocessing=converter)


def test_fcn_on_a_preset(presets):
    model = fcn((None, None, 3), num_classes=3, backbone=presets["resnet"], fc_filters=8, variant="16s")
    image = np.random.default_rng(3).uniform(0, 255, (1, 64, 96, 3)).astype("float32")
    assert model.predict(image, verbose=0).shape == (1, 64, 96, 3)


def test_an_encoder_that_could_not_be_loaded_again_is_refused(presets):
    # keras-hub 0.32's MiT (SegFormer's encoder) layers do not rebuild from their own configs.
    with pytest.raises(ValueError, match="cannot be rebuilt from its own config"):
        unet((64, 64, 3), backbone=presets["mit"])


def test_things_that_are_not_pyramid_backbones_are_refused(presets):
    with pytest.raises(ValueError, match="Unknown backbone 'no_such_preset'"):
        unet((None, None, 3), backbone="no_such_preset")
    text = keras_hub.models.BertBackbone(
        vocabulary_size=10, num_layers=1, num_heads=1, hidden_dim=4, intermediate_dim=4, max_sequence_length=8
    )
    with pytest.raises(ValueError, match="not a keras_hub.models.FeaturePyramidBackbone"):
        unet((None, None, 3), backbone=text, encoder_preprocessing=(1, 0))
    with pytest.raises(ValueError, match="carries its own weights"):
        unet((None, None, 3), backbone=presets["resnet"], backbone_weights="imagenet")
