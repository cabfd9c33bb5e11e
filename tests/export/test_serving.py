"""The exported SavedModel survives every malformed request, as TF Serving feeds them, to either
signature (float32 `serving_default`, `serving_uint8`): each one gets an error that names the input
and the fix, and the same process then serves a good one."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from kfcn.export import saved_model
from kfcn.inference import predict
from kfcn.models import unet

pytestmark = pytest.mark.tensorflow_only(reason="export tests run on TensorFlow")

# name: (request as a NumPy expression, words the error must contain)
MALFORMED = {
    "rank 3 (no batch axis)": ("np.zeros((9, 7, 1), 'float32')", ["rank 3", "(1, height, width, 1)"]),
    "rank 5": ("np.zeros((1, 9, 7, 1, 1), 'float32')", ["rank 5"]),
    "a scalar": ("np.float32(3)", ["rank 0"]),
    "three channels into a grey model": ("np.zeros((1, 9, 7, 3), 'float32')", ["1 channel(s)", "has 3"]),
    "batch 0": ("np.zeros((0, 9, 7, 1), 'float32')", ["empty axis", "[0 9 7 1]"]),
    "height 0": ("np.zeros((1, 0, 7, 1), 'float32')", ["empty axis"]),
    "a NaN pixel": ("np.where(np.eye(9, 7)[None, ..., None] > 0, np.nan, 1).astype('float32')", ["NaN or infinite"]),
    "an infinite pixel": ("np.full((1, 9, 7, 1), np.inf, 'float32')", ["NaN or infinite"]),
    "16-bit values into an 8-bit model": ("np.full((1, 9, 7, 1), 4000, 'float32')", ["[0, 255]", "4000"]),
    "negative values": ("np.full((1, 9, 7, 1), -1, 'float32')", ["[0, 255]", "-1"]),
}
# The same mistakes in the pixels' own type, sent to the uint8 signature (its values are always in range).
MALFORMED_UINT8 = {
    "uint8 rank 3": ("np.zeros((9, 7, 1), 'uint8')", ["rank 3", "(1, height, width, 1)"]),
    "uint8 scalar": ("np.uint8(3)", ["rank 0"]),
    "uint8 three channels": ("np.zeros((1, 9, 7, 3), 'uint8')", ["1 channel(s)", "has 3"]),
    "uint8 width 0": ("np.zeros((1, 9, 0, 1), 'uint8')", ["empty axis"]),
}

# Loads the export with plain TensorFlow (no kfcn), sends every request, then a good one.
CLIENT = """
    import json, sys, numpy as np
    sys.modules["kfcn"] = None
    import tensorflow as tf
    signatures = tf.saved_model.load(sys.argv[1]).signatures
    requests = json.loads(sys.argv[2])
    answers = {}
    for name, (signature, expression) in requests.items():
        try:
            signatures[signature](pixels_0_255=tf.constant(eval(expression)))
            answers[name] = "served"
        except tf.errors.InvalidArgumentError as error:
            answers[name] = error.message
    good = np.load(sys.argv[3])[None]
    for signature in signatures:
        image = tf.constant(good.astype(signatures[signature].structured_input_signature[1]["pixels_0_255"].dtype.name))
        answers[signature] = signatures[signature](pixels_0_255=image)["probabilities"].numpy()[0].tolist()
    print(json.dumps(answers))
"""


def serve_in_a_process(folder, requests, good, tmp_path):
    np.save(tmp_path / "good.npy", good)
    arguments = [str(folder), json.dumps(requests), str(tmp_path / "good.npy")]
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(CLIENT), *arguments], capture_output=True, text=True, env=environment
    )
    assert done.returncode == 0, f"the serving process died ({done.returncode}): {done.stderr[-2000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_every_malformed_request_is_refused_in_words_and_the_server_goes_on(tmp_path, rng):
    model = unet((None, None, 1), num_classes=1, filters=2, depth=2)
    folder = saved_model(model, tmp_path / "serving")
    good = rng.integers(0, 256, (9, 7, 1)).astype("float32")
    requests = {name: ("serving_default", request) for name, (request, _) in MALFORMED.items()}
    requests.update({name: ("serving_uint8", request) for name, (request, _) in MALFORMED_UINT8.items()})
    answers = serve_in_a_process(folder, requests, good, tmp_path)
    for name, (_, words) in {**MALFORMED, **MALFORMED_UINT8}.items():
        assert answers[name] != "served", name
        assert "pixels_0_255" in answers[name] and all(word in answers[name] for word in words), (name, answers[name])
    # The graph's own prediction, after all of that: the checks pass a good image through untouched,
    # and the uint8 signature answers the same pixels exactly as the float32 one.
    np.testing.assert_array_equal(np.asarray(answers["serving_default"], "float32"), predict_served(folder, good))
    np.testing.assert_array_equal(answers["serving_uint8"], answers["serving_default"])
    expected = answers["serving_default"]
    np.testing.assert_allclose(expected, predict(model, good), atol=1e-4)  # exported vs Keras: see test_export


def predict_served(folder, image):
    import tensorflow as tf

    serve = tf.saved_model.load(str(folder)).signatures["serving_default"]
    return serve(pixels_0_255=tf.constant(image[None]))["probabilities"].numpy()[0]


def test_a_fixed_size_model_names_its_size(tmp_path):
    model = unet((16, 16, 1), num_classes=1, filters=2, depth=2)
    folder = saved_model(model, tmp_path / "serving")
    requests = {
        "wrong size": ("serving_default", "np.zeros((1, 16, 8, 1), 'float32')"),
        "wrong size uint8": ("serving_uint8", "np.zeros((1, 8, 16, 1), 'uint8')"),
    }
    answers = serve_in_a_process(folder, requests, np.zeros((16, 16, 1), "float32"), tmp_path)
    assert "built for 16x16 images only" in answers["wrong size"] and "16x8" in answers["wrong size"]
    assert "8x16" in answers["wrong size uint8"]
    assert np.asarray(answers["serving_default"]).shape == (16, 16, 1)


def test_a_model_without_pixel_range_takes_any_finite_values(tmp_path):
    model = unet((None, None, 1), num_classes=1, filters=2, depth=2, input_range=None)
    folder = saved_model(model, tmp_path / "serving")
    image = np.full((8, 8, 1), -3.5, "float32")
    import tensorflow as tf

    signatures = tf.saved_model.load(str(folder)).signatures
    assert list(signatures) == ["serving_default"]  # no stored pixels, so no integer signature
    serve = signatures["serving_default"]
    (name,) = serve.structured_input_signature[1]
    out = serve(**{name: tf.constant(image[None])})
    assert next(iter(out.values())).shape == (1, 8, 8, 1)
    with pytest.raises(tf.errors.InvalidArgumentError, match="NaN or infinite"):
        serve(**{name: tf.constant(np.full((1, 8, 8, 1), np.nan, "float32"))})
