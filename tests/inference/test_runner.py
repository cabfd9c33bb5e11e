"""The compiled call behind prediction: one per model, traced once per tile shape; a NaN output is refused."""

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


@pytest.mark.backend
def test_a_model_whose_weights_are_not_finite_is_refused_not_mapped():
    """A diverged run's weights: refused by their values, on every CPU (where oneDNN's AVX-512 ReLU turns NaN into 0,
    such a model's maps are finite and plausible, so its outputs could not tell)."""
    model = unet((None, None, 1), num_classes=1, filters=2, depth=1)
    kernel = model.get_layer(index=3).weights[0]
    kernel.assign(np.full(kernel.shape, np.nan, "float32"))
    for run in (
        lambda: predict(model, np.zeros((16, 16), "uint8")),
        lambda: predict_tiled(model, np.zeros((100, 100), "uint8"), 48, progress=False),
    ):
        with pytest.raises(
            ValueError, match=r"weights hold NaN or infinite values: 1 weight variable \('encoder1_conv1/kernel'\)"
        ):
            run()


@pytest.mark.backend
def test_a_model_whose_output_is_not_finite_is_refused_not_mapped():
    """Finite weights, an output that overflows float32 (as reduced precision can): refused by the output's values."""
    import keras

    inputs = keras.Input((None, None, 1))
    huge = keras.layers.Conv2D(1, 1, kernel_initializer=keras.initializers.Constant(1e37), use_bias=False)(inputs)
    model = keras.Model(inputs, huge)  # a pixel of 255 times 1e37 is beyond float32's 3.4e38
    for run in (
        lambda: predict(model, np.full((16, 16), 255, "uint8")),
        lambda: predict_tiled(model, np.full((100, 100), 255, "uint8"), 48, progress=False),
    ):
        with pytest.raises(ValueError, match="output holds NaN or infinite values for a finite input"):
            run()
