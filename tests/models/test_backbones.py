"""Backbone encoders: each family's preprocessing inside the graph, channel adapters, freezing."""

import keras
import numpy as np
import pytest

from kfcn.layers import ChannelAffine
from kfcn.models import BACKBONES, encoder_of, fcn, required_multiple, set_encoder_freeze, unet
from kfcn.models.backbones import APPLICATION_PREPROCESSING, preprocessing_layer, resolve_backbone
from tests.layer_testing import assert_keras_round_trip

# Only the tests marked `backend` run on JAX and PyTorch too: building whole keras.applications
# networks costs minutes there, and what they check (layer flags, configs) is Keras', not the backend's.
# keras.applications module of each family's reference `preprocess_input`.
REFERENCE_MODULE = {
    "vgg16": "vgg16",
    "vgg19": "vgg19",
    "resnet50": "resnet",
    "resnet101": "resnet",
    "resnet50v2": "resnet_v2",
    "mobilenet": "mobilenet",
    "mobilenet_v2": "mobilenet_v2",
    "mobilenet_v3_small": "mobilenet_v3",
    "mobilenet_v3_large": "mobilenet_v3",
    "efficientnetb0": "efficientnet",
    "efficientnetb1": "efficientnet",
    "efficientnetv2b0": "efficientnet_v2",
    "densenet121": "densenet",
    "convnext_tiny": "convnext",
}


def _reference(name, pixels):
    module = getattr(keras.applications, REFERENCE_MODULE[name])
    return np.asarray(module.preprocess_input(pixels.copy()), "float32")


def _close(got, expected):
    # float32 on values up to 255: the scaling to [0, 1] and back costs a few ulps.
    np.testing.assert_allclose(got, expected, atol=1e-4 * max(1.0, np.abs(expected).max()))


PIXELS = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")


def resolve_preprocessing(name):
    return APPLICATION_PREPROCESSING[BACKBONES[name][1]]


@pytest.mark.backend
@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_each_familys_preprocessing_equals_its_preprocess_input(name):
    front = keras.Sequential([keras.layers.Rescaling(1 / 255), preprocessing_layer(resolve_preprocessing(name))])
    _close(keras.ops.convert_to_numpy(front(PIXELS)), _reference(name, PIXELS))


# One family of each keras.applications mode, built whole: the model's own layers from the raw pixels on.
@pytest.mark.parametrize("name", ["vgg16", "mobilenet_v2", "densenet121", "efficientnetb0"])
def test_the_models_own_layers_preprocess_raw_pixels(name):
    model = unet((None, None, 3), backbone=name, filters=8)
    front = keras.Model(model.inputs, model.get_layer("encoder_preprocessing").output)
    _close(keras.ops.convert_to_numpy(front(PIXELS)), _reference(name, PIXELS))


def test_every_family_mode_is_used_and_known():
    assert {mode for _, mode in BACKBONES.values()} == set(APPLICATION_PREPROCESSING)


@pytest.mark.backend
def test_grey_images_are_repeated_into_the_encoders_channels():
    model = unet((None, None, 1), backbone="mobilenet_v2", filters=8)
    grey = np.random.default_rng(1).uniform(0, 255, (1, 64, 64, 1)).astype("float32")
    front = keras.Model(model.inputs, model.get_layer("encoder_preprocessing").output)
    expected = np.repeat(grey, 3, axis=-1) / 127.5 - 1
    np.testing.assert_allclose(keras.ops.convert_to_numpy(front(grey)), expected, atol=1e-5)
    assert model.predict(grey, verbose=0).shape == (1, 64, 64, 2)


@pytest.mark.backend
def test_learned_adapter_takes_any_channel_count_and_starts_as_their_mean():
    model = unet((None, None, 2), backbone="mobilenet_v2", filters=8, channel_adapter="learned")
    image = np.random.default_rng(2).uniform(0, 255, (1, 32, 32, 2)).astype("float32")
    front = keras.Model(model.inputs, model.get_layer("channel_mixing").output)
    expected = np.repeat(image.mean(-1, keepdims=True) / 255, 3, axis=-1)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(front(image)), expected, atol=1e-5)


def test_input_range_none_feeds_the_encoder_as_given():
    model = unet((None, None, 3), backbone="mobilenet_v2", filters=8, input_range=None)
    assert not any(isinstance(layer, ChannelAffine) for layer in model.layers)
    with pytest.raises(ValueError, match="input_range=None feeds values to the encoder as they are"):
        unet((None, None, 3), backbone="mobilenet_v2", input_range=None, encoder_preprocessing=(1 / 255, 0))


def test_sixteen_bit_pixels_reach_the_encoder_on_its_own_scale():
    model = unet((None, None, 3), backbone="resnet50", filters=8, input_range=(0, 65535))
    pixels = np.random.default_rng(3).uniform(0, 255, (1, 32, 32, 3)).astype("float32")
    front = keras.Model(model.inputs, model.get_layer("encoder_preprocessing").output)
    expected = keras.applications.resnet.preprocess_input(pixels.copy())
    np.testing.assert_allclose(keras.ops.convert_to_numpy(front(pixels * 257)), expected, atol=1e-3)


def _weights(model, trainable):
    return [keras.ops.convert_to_numpy(w).copy() for w in (model.trainable_weights if trainable else model.weights)]


def _fit_two_steps(model):
    # Categorical, not sparse: Keras' sparse cross-entropy on image maps fails in PyTorch's backward
    # ("grad_input must be contiguous", its nll_loss on 4-D maps).
    model.compile(keras.optimizers.SGD(0.1), "categorical_crossentropy")
    rng = np.random.default_rng(4)
    x = rng.uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    y = np.eye(2, dtype="float32")[rng.integers(0, 2, (2, 32, 32))]
    model.fit(x, y, batch_size=2, epochs=2, verbose=0)


@pytest.mark.backend
@pytest.mark.parametrize("freeze", [True, "batchnorm", False])
def test_encoder_freeze(freeze):
    model = unet((None, None, 3), backbone="mobilenet_v2", filters=8, encoder_freeze=freeze)
    encoder = encoder_of(model)
    batch_norms = [layer for layer in encoder.layers if isinstance(layer, keras.layers.BatchNormalization)]
    kernels = [layer for layer in encoder.layers if isinstance(layer, keras.layers.Conv2D)]
    before_bn = [keras.ops.convert_to_numpy(v).copy() for layer in batch_norms for v in layer.weights]
    before_conv = [keras.ops.convert_to_numpy(layer.kernel).copy() for layer in kernels]
    _fit_two_steps(model)
    after_bn = [keras.ops.convert_to_numpy(v) for layer in batch_norms for v in layer.weights]
    after_conv = [keras.ops.convert_to_numpy(layer.kernel) for layer in kernels]
    bn_same = all(np.array_equal(a, b) for a, b in zip(before_bn, after_bn))
    conv_same = all(np.array_equal(a, b) for a, b in zip(before_conv, after_conv))
    # Frozen batch norm keeps gamma, beta and its moving statistics; the rest trains unless all is frozen.
    assert bn_same == (freeze is not False)
    assert conv_same == (freeze is True)


def test_two_stage_fine_tuning_and_round_trip_keep_the_freeze(tmp_path):
    model = unet((None, None, 3), backbone="mobilenet_v2", filters=8, encoder_freeze=True)
    frozen = len(model.trainable_weights)
    set_encoder_freeze(model, "batchnorm")
    partly = len(model.trainable_weights)
    set_encoder_freeze(model, False)
    assert frozen < partly < len(model.trainable_weights)
    set_encoder_freeze(model, "batchnorm")
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert len(loaded.trainable_weights) == partly
    with pytest.raises(ValueError, match="no backbone encoder"):
        set_encoder_freeze(unet((None, None, 1), filters=4, depth=2), True)
    with pytest.raises(ValueError, match="True, False or 'batchnorm'"):
        set_encoder_freeze(model, 1)


def test_round_trip_and_stride():
    model = unet((None, None, 1), backbone="efficientnetb0", filters=8)
    assert required_multiple(model) == 32


def test_keras_round_trip_with_preprocessing(tmp_path):
    model = fcn((None, None, 1), num_classes=3, backbone="mobilenet_v2", fc_filters=8, variant="16s")
    assert_keras_round_trip(model, np.random.rand(1, 64, 32, 1).astype("float32") * 255, tmp_path)


def test_resolve_reports_strides_and_rejects_strangers():
    spec = resolve_backbone("densenet121")
    assert spec.strides == (2, 4, 8, 16, 32) and spec.channels == 3 and spec.image_size is None
    with pytest.raises(ValueError, match="Did you mean 'resnet50'"):
        resolve_backbone("resnet5O")
    with pytest.raises(ValueError, match="keras.applications name"):
        resolve_backbone(42)
    with pytest.raises(ValueError, match="backbone_weights is None, 'imagenet' or 'default'"):
        resolve_backbone("vgg16", weights="places365")
    with pytest.raises(ValueError, match="encoder_preprocessing is 'auto'"):
        resolve_backbone("vgg16", preprocessing="caffe")
