import keras
import numpy as np
import pytest

from kfcn.layers import MaxPoolingWithArgmax2D, MaxUnpooling2D
from tests.layer_testing import assert_keras_round_trip, run_layer_test, to_numpy

pytestmark = pytest.mark.backend


def numpy_scatter(pooled, indices, shape):
    """The reference: out.flat[index] = value, per sample."""
    out = np.zeros((shape[0], int(np.prod(shape[1:]))), dtype=pooled.dtype)
    for b in range(shape[0]):
        out[b, indices[b].ravel()] = pooled[b].ravel()
    return out.reshape(shape)


@pytest.mark.parametrize("shape", [(2, 8, 6, 3), (1, 45, 60, 2), (2, 9, 7, 1)])
@pytest.mark.parametrize("padding", ["valid", "same"])
def test_unpool_of_pool_equals_numpy_scatter(rng, shape, padding):
    x = rng.normal(size=shape).astype("float32")
    pooled, indices = MaxPoolingWithArgmax2D(2, padding=padding)(x)
    restored = to_numpy(MaxUnpooling2D(2)([pooled, indices, x]))
    assert restored.shape == shape
    np.testing.assert_array_equal(restored, numpy_scatter(to_numpy(pooled), to_numpy(indices), shape))


def test_odd_sizes_come_back_through_four_poolings(rng):
    # CamVid 360x480 halves 45 -> 22 after the fourth pooling; unpooling restores 45.
    x = rng.normal(size=(1, 45, 60, 1)).astype("float32")
    pooled, indices = MaxPoolingWithArgmax2D(2)(x)
    assert tuple(pooled.shape) == (1, 22, 30, 1)
    assert tuple(MaxUnpooling2D(2)([pooled, indices, x]).shape) == (1, 45, 60, 1)


def test_static_output_size_without_reference(rng):
    x = rng.normal(size=(1, 7, 9, 2)).astype("float32")
    pooled, indices = MaxPoolingWithArgmax2D(2)(x)
    restored = to_numpy(MaxUnpooling2D(2, output_size=(7, 9))([pooled, indices]))
    np.testing.assert_array_equal(restored, numpy_scatter(to_numpy(pooled), to_numpy(indices), x.shape))


def test_layer_contract_and_gradients(rng):
    x = rng.normal(size=(2, 8, 6, 3)).astype("float32")
    pooled, indices = (to_numpy(t) for t in MaxPoolingWithArgmax2D(2)(x))
    run_layer_test(MaxUnpooling2D, {"pool_size": 2}, [pooled, indices], expected_output_shape=(2, 8, 6, 3))


def test_fit_through_pool_and_unpool_and_keras_round_trip(rng, tmp_path):
    inputs = keras.Input((None, None, 2))
    features = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    pooled, indices = MaxPoolingWithArgmax2D(2)(features)
    restored = MaxUnpooling2D(2)([pooled, indices, features])
    outputs = keras.layers.Conv2D(1, 3, padding="same")(restored)
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.Adam(1e-2), "mse")
    x = rng.normal(size=(4, 10, 14, 2)).astype("float32")
    y = x[..., :1] ** 2
    history = model.fit(x, y, epochs=5, batch_size=2, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert_keras_round_trip(model, rng.normal(size=(1, 11, 13, 2)).astype("float32"), tmp_path)


def test_rejects_float_indices(rng):
    x = rng.normal(size=(1, 4, 4, 1)).astype("float32")
    with pytest.raises(TypeError, match="integer dtype"):
        MaxUnpooling2D(2)([x, x.astype("float32")])


def test_rejects_indices_of_another_shape(rng):
    x = rng.normal(size=(1, 4, 4, 1)).astype("float32")
    with pytest.raises(ValueError, match="do not match"):
        MaxUnpooling2D(2)([x, np.zeros((1, 4, 3, 1), "int32")])


def test_rejects_wrong_input_count(rng):
    x = rng.normal(size=(1, 4, 4, 1)).astype("float32")
    with pytest.raises(ValueError, match=r"\[pooled, indices\]"):
        MaxUnpooling2D(2)([x])
