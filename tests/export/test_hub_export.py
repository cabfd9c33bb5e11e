"""keras-hub encoders and segmenters through kfcn's SavedModel and TFLite export (builtin ops only)."""

import json

import keras
import numpy as np
import pytest

from kfcn.export import MODEL_CARD_NAME, saved_model, tflite
from kfcn.inference import predict
from kfcn.models import unet
from tests.tolerances import reordered_network_atol

keras_hub = pytest.importorskip("keras_hub")

pytestmark = pytest.mark.tensorflow_only(reason="export tests run on TensorFlow")


@pytest.fixture(scope="module")
def unet_on_a_preset(tmp_path_factory):
    from tests.hub_models import save_preset

    keras.utils.set_random_seed(3)
    preset = save_preset("resnet", tmp_path_factory.mktemp("resnet"))
    # A grey image into the 3-channel encoder (repeated), raw pixels in: the preprocessing is in the files.
    return unet((None, None, 1), 2, backbone=preset, filters=8)


def _litert(path, image):
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(path)).get_signature_runner("serving_default")
    (input_name,) = runner.get_input_details()
    return next(iter(runner(**{input_name: image[None]}).values()))[0]


def _builtin_only(report):
    return not [op for op in report["ops"] if op.startswith("Flex") or op == "CUSTOM"]


def test_unet_on_a_keras_hub_encoder_exports_for_any_size(unet_on_a_preset, tmp_path, rng):
    import tensorflow as tf

    model = unet_on_a_preset
    image = rng.integers(0, 256, (40, 72, 1)).astype("float32")  # no multiple of 32: padded in the graph
    expected = predict(model, image)
    atol = reordered_network_atol(model, expected)

    folder = saved_model(model, tmp_path / "serving")
    card = json.loads((folder / MODEL_CARD_NAME).read_text())
    serve = tf.saved_model.load(str(folder)).signatures["serving_default"]
    served = serve(**{card["input"]["name"]: tf.constant(image[None])})[card["output"]["name"]].numpy()[0]
    np.testing.assert_allclose(served, expected, atol=atol)

    report = tflite(model, tmp_path / "model.tflite")
    assert _builtin_only(report), report["ops"]
    np.testing.assert_allclose(_litert(report["path"], image), expected, atol=atol)


def test_deeplab_exports_at_a_fixed_size_and_says_why_not_at_any(tmp_path, rng):
    from tests.hub_models import tiny_deeplab

    model = tiny_deeplab()
    image = rng.integers(0, 256, (64, 96, 3)).astype("float32")
    expected = predict(model, image)
    report = tflite(model, tmp_path / "deeplab.tflite", input_shape=(64, 96))
    assert _builtin_only(report), report["ops"]
    np.testing.assert_allclose(_litert(report["path"], image), expected, atol=reordered_network_atol(model, expected))
    # Its UpSampling2D sizes itself in Python from the input shape: no SavedModel of free size.
    with pytest.raises(ValueError, match="cannot be exported for images of any size"):
        saved_model(model, tmp_path / "serving")
    assert not (tmp_path / "serving" / "1").exists()
