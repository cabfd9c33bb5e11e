import keras
import numpy as np
import pytest

from kfcn.layers import CropToMatch, MaxUnpooling2D
from kfcn.models import required_multiple, unet, unet_valid_input_size, unet_valid_output_size
from tests.layer_testing import assert_keras_round_trip

pytestmark = pytest.mark.backend


def test_published_unet_is_exact():
    model = unet((572, 572, 1), num_classes=2, filters=64, depth=4, padding="valid")
    assert model.count_params() == 31_030_658
    assert model.output_shape == (None, 388, 388, 2)
    assert sum(isinstance(layer, CropToMatch) for layer in model.layers) == 4


def test_valid_size_arithmetic():
    assert unet_valid_output_size(572) == 388
    assert unet_valid_input_size(388) == (572, 388)
    assert unet_valid_output_size(unet_valid_input_size(100, depth=3)[0], depth=3) >= 100
    with pytest.raises(ValueError, match="nearest valid input sizes are 556 and 572"):
        unet_valid_output_size(570)


@pytest.mark.parametrize("size", [(48, 80), (96, 112)])
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"downsampling": "strided", "upsampling": "transpose"},
        {"upsampling": "replicate", "batch_norm": True, "dropout": 0.5},
        {"upsampling": "indices"},
    ],
)
def test_same_padded_variants_any_multiple(size, options):
    model = unet((None, None, 3), num_classes=3, filters=4, depth=3, **options)
    y = model.predict(np.random.rand(1, *size, 3).astype("float32"), verbose=0)
    assert y.shape == (1, *size, 3)
    np.testing.assert_allclose(y.sum(-1), 1.0, rtol=1e-5)


def test_strided_transposed_variant_has_no_pooling():
    model = unet((None, None, 1), filters=4, depth=3, downsampling="strided", upsampling="transpose")
    pooling = (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D)
    assert not any(isinstance(layer, pooling) for layer in model.layers)
    assert any(isinstance(layer, keras.layers.Conv2DTranspose) for layer in model.layers)


def test_indices_upsampling_uses_unpooling():
    model = unet((None, None, 1), filters=4, depth=2, upsampling="indices")
    assert sum(isinstance(layer, MaxUnpooling2D) for layer in model.layers) == 2


def test_valid_unet_on_two_sizes():
    model = unet((None, None, 1), num_classes=2, filters=4, depth=2, padding="valid")
    for size in (44, 60):  # 44 -> 4, 60 -> 20 at depth 2
        out = model.predict(np.random.rand(1, size, size, 1).astype("float32"), verbose=0)
        assert out.shape[1] == unet_valid_output_size(size, depth=2)


@pytest.mark.parametrize(
    "head, channels, check",
    [
        ("binary", 1, lambda y: (y >= 0).all() and (y <= 1).all()),
        ("semantic", 4, lambda y: np.allclose(y.sum(-1), 1, rtol=1e-5)),
        ("regression", 2, lambda y: True),
    ],
)
def test_heads(head, channels, check):
    model = unet((None, None, 1), num_classes=channels, filters=4, depth=2, head=head)
    y = model.predict(np.random.randn(2, 16, 16, 1).astype("float32") * 10, verbose=0)
    assert y.shape == (2, 16, 16, channels) and check(y)
    expected = {"binary": "sigmoid", "semantic": "softmax", "regression": "linear"}[head]
    assert model.layers[-1].activation.__name__ == expected


def test_backbone_encoder_with_random_weights():
    model = unet((None, None, 3), num_classes=2, backbone="mobilenet_v2", filters=16)
    assert model.predict(np.random.rand(1, 64, 96, 3).astype("float32"), verbose=0).shape == (1, 64, 96, 2)
    assert required_multiple(model) == 32


def test_coordinate_channels_and_extra_mask_input(tmp_path):
    model = unet(
        (None, None, 1), num_classes=1, filters=4, depth=2, coordinate_channels=True, extra_inputs={"fov_mask": 1}
    )
    assert sorted(t.name for t in model.inputs) == ["coordinate_frame", "fov_mask", "image"]
    inputs = {
        "image": np.random.rand(2, 16, 16, 1).astype("float32"),
        "fov_mask": np.ones((2, 16, 16, 1), "float32"),
        "coordinate_frame": np.array([[0, 0, 16, 16]] * 2, "float32"),
    }
    model.compile("adam", "binary_crossentropy")
    model.fit(inputs, np.ones((2, 16, 16, 1), "float32"), verbose=0)
    assert_keras_round_trip(model, inputs, tmp_path)


def test_keras_round_trip_identical(tmp_path):
    model = unet((None, None, 1), num_classes=2, filters=4, depth=2, padding="valid")
    assert_keras_round_trip(model, np.random.rand(1, 44, 44, 1).astype("float32"), tmp_path)


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="not a multiple of 16"):
        unet((100, 100, 1), depth=4)
    with pytest.raises(ValueError, match="too small for this depth"):
        unet((32, 32, 1), depth=6)
    with pytest.raises(ValueError, match="Unknown backbone 'resnet5'"):
        unet((None, None, 3), backbone="resnet5")
    with pytest.raises(ValueError, match="channel count"):
        unet((64, 64, 0))
    with pytest.raises(ValueError, match="channel_adapter='learned'"):
        unet((None, None, 2), backbone="mobilenet_v2")
    with pytest.raises(ValueError, match="encoder_freeze applies to a backbone encoder"):
        unet((None, None, 1), encoder_freeze=True)
    with pytest.raises(ValueError, match="padding='same'"):
        unet((None, None, 1), padding="valid", upsampling="indices")
