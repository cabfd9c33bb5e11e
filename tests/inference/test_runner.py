"""The compiled call behind prediction: one per model, traced once per tile shape."""

import gc
import weakref

import numpy as np
import pytest

from kfcn.inference import predict, predict_tiled
from kfcn.inference.runner import _compiled_call
from kfcn.models import unet


@pytest.mark.tensorflow_only(reason="counts tf.function traces")
def test_repeated_predictions_trace_once_per_shape(rng):
    model = unet((None, None, 1), num_classes=1, filters=2, depth=2)
    image = rng.integers(0, 256, (40, 40)).astype("uint8")
    for _ in range(3):
        predict(model, image)
    call = _compiled_call(model)
    assert call.experimental_get_tracing_count() == 1
    predict(model, rng.integers(0, 256, (60, 52)).astype("uint8"))  # a new padded shape: one more trace
    assert call.experimental_get_tracing_count() == 2
    for _ in range(2):
        predict_tiled(model, rng.integers(0, 256, (200, 200)).astype("uint8"), 96, progress=False)
    assert call.experimental_get_tracing_count() <= 4  # full tiles and at most one smaller last batch


def test_the_cache_does_not_keep_models_alive():
    model = unet((None, None, 1), num_classes=1, filters=2, depth=1)
    predict(model, np.zeros((8, 8), "uint8"))
    reference = weakref.ref(model)
    del model
    gc.collect()
    assert reference() is None
