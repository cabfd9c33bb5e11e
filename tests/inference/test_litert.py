"""engine="litert": the same predictions as Keras through a TFLite conversion, converted once per tile shape."""

import numpy as np
import pytest

from kfcn.inference import predict, predict_tiled
from kfcn.inference.litert import LiteRTCall
from kfcn.models import unet
from tests.tolerances import reordered_network_atol

# The conversion runs in TensorFlow (other backends convert in a TensorFlow child process).
pytestmark = pytest.mark.tensorflow_only(reason="converts in TensorFlow")


@pytest.fixture
def image(rng):
    return rng.integers(0, 256, (83, 70)).astype("uint8")


def test_litert_predictions_equal_keras(image):
    model = unet((None, None, 1), num_classes=3, filters=4, depth=2)
    whole = predict(model, image)  # XNNPACK against oneDNN: the same products summed in another order
    np.testing.assert_allclose(predict(model, image, engine="litert"), whole, atol=reordered_network_atol(model, whole))
    tiled = predict_tiled(model, image, 48, blend="gaussian", overlap=16, engine="litert", progress=False)
    reference = predict_tiled(model, image, 48, blend="gaussian", overlap=16, progress=False)
    np.testing.assert_allclose(tiled, reference, atol=reordered_network_atol(model, reference))


def test_one_conversion_per_model_and_tile_shape(image, monkeypatch):
    conversions = []
    original = LiteRTCall._convert
    monkeypatch.setattr(LiteRTCall, "_convert", lambda self, shape: conversions.append(shape) or original(self, shape))
    model = unet((None, None, 1), num_classes=1, filters=2, depth=2)
    for _ in range(2):
        predict_tiled(model, image, 48, overlap=8, engine="litert", progress=False)
    assert conversions == [(48, 48)]  # 83 x 70 in 48-px tiles: one shape, converted once across both calls
    predict(model, image, engine="litert")  # the whole image padded to 84 x 72: a second shape
    assert conversions == [(48, 48), (84, 72)]


@pytest.mark.parametrize(
    "model_options, call_options, message",
    [
        ({}, {"engine": "onnxruntime"}, "`engine` must be one of"),
        ({}, {"engine": "litert", "policy": "mixed_bfloat16"}, "always computes in float32"),
        ({"padding": "valid"}, {"engine": "litert"}, "uses valid padding"),
        ({"coordinate_channels": True}, {"engine": "litert"}, "one image input"),
    ],
)
def test_what_litert_cannot_take_is_refused_before_any_conversion(image, model_options, call_options, message):
    model = unet((None, None, 1), num_classes=1, filters=2, depth=2, **model_options)
    with pytest.raises(ValueError, match=message):
        predict(model, image, **call_options)
