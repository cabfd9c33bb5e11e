"""The custom layers must lower to builtin TFLite ops only (no Flex, no custom op)."""

import keras
import numpy as np
import pytest

from kfcn.layers import ChannelAffine, CoordinateChannels, CropToMatch, MaxPoolingWithArgmax2D, MaxUnpooling2D
from tests.tolerances import reordered_network_atol


@pytest.mark.tensorflow_only(reason="converts in TensorFlow")
def test_custom_layers_convert_with_builtin_ops_only(tmp_path, rng):
    import tensorflow as tf

    inputs = keras.Input((45, 60, 3))
    features = ChannelAffine([1.0, 2.0, 0.5], [-1.0, 0.0, 3.0], reverse_channels=True)(inputs)
    features = keras.layers.Conv2D(4, 3, padding="same")(features)
    features = CoordinateChannels()(features)
    pooled, indices = MaxPoolingWithArgmax2D(2)(features)
    restored = MaxUnpooling2D(2)([pooled, indices, features])
    cropped = CropToMatch()([restored, keras.layers.Cropping2D(2)(restored)])
    model = keras.Model(inputs, keras.layers.Conv2D(2, 3)(cropped))

    model.export(str(tmp_path / "saved_model"), format="tf_saved_model", verbose=False)
    converter = tf.lite.TFLiteConverter.from_saved_model(str(tmp_path / "saved_model"))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]  # fails on any Flex op
    interpreter = tf.lite.Interpreter(model_content=converter.convert())
    interpreter.allocate_tensors()
    x = rng.random((1, 45, 60, 3)).astype("float32")
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    result = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    expected = model.predict(x, verbose=0)
    np.testing.assert_allclose(result, expected, atol=reordered_network_atol(model, expected))  # TFLite's kernels
