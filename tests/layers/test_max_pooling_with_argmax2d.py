import numpy as np
import pytest
import tensorflow as tf

from kfcn.analysis.gradients import input_gradient
from kfcn.layers import MaxPoolingWithArgmax2D
from tests.layer_testing import run_layer_test, to_numpy

pytestmark = pytest.mark.backend


@pytest.mark.parametrize("shape", [(2, 8, 6, 3), (1, 9, 7, 2), (3, 45, 60, 4)])
@pytest.mark.parametrize("padding", ["valid", "same"])
def test_values_and_indices_match_tensorflow(rng, shape, padding):
    x = rng.normal(size=shape).astype("float32")
    pooled, indices = MaxPoolingWithArgmax2D(2, padding=padding)(x)
    tf_pooled, tf_indices = tf.nn.max_pool_with_argmax(
        x, ksize=2, strides=2, padding=padding.upper(), include_batch_in_index=False
    )
    np.testing.assert_array_equal(to_numpy(pooled), tf_pooled.numpy())
    np.testing.assert_array_equal(to_numpy(indices), tf_indices.numpy())
    assert str(to_numpy(indices).dtype) == "int32"


def test_three_by_three_windows_match_tensorflow(rng):
    x = rng.normal(size=(2, 10, 11, 2)).astype("float32")
    pooled, indices = MaxPoolingWithArgmax2D(3)(x)
    tf_pooled, tf_indices = tf.nn.max_pool_with_argmax(x, 3, 3, "VALID", include_batch_in_index=False)
    np.testing.assert_array_equal(to_numpy(pooled), tf_pooled.numpy())
    np.testing.assert_array_equal(to_numpy(indices), tf_indices.numpy())


def test_hand_worked_example_with_ties():
    # One 4x4 channel; the window at the top left ties (5 appears twice): first wins.
    x = np.array([[5, 5, 0, 1], [2, 0, 3, 9], [0, 0, 0, 0], [7, 0, 0, 8]], dtype="float32").reshape(1, 4, 4, 1)
    pooled, indices = MaxPoolingWithArgmax2D(2)(x)
    np.testing.assert_array_equal(to_numpy(pooled)[0, :, :, 0], [[5, 9], [7, 8]])
    np.testing.assert_array_equal(to_numpy(indices)[0, :, :, 0], [[0, 7], [12, 15]])


def test_indices_stay_exact_beyond_float32_precision():
    # 4100 x 4100 x 1 has more than 2**24 positions: a float32 index would round.
    x = np.zeros((1, 4100, 4100, 1), dtype="float32")
    x[0, 4099, 4098, 0] = 1.0
    _, indices = MaxPoolingWithArgmax2D(2)(x)
    assert int(to_numpy(indices)[0, 2049, 2049, 0]) == 4099 * 4100 + 4098
    assert 4099 * 4100 + 4098 > 2**24


def test_layer_contract(rng):
    x = rng.normal(size=(2, 9, 7, 3)).astype("float32")
    run_layer_test(MaxPoolingWithArgmax2D, {"pool_size": 2}, x, expected_output_shape=(2, 4, 3, 3))


def test_gradient_reaches_only_the_maxima(rng):
    import keras

    x = rng.normal(size=(1, 4, 4, 1)).astype("float32")
    inputs = keras.Input((4, 4, 1))
    model = keras.Model(inputs, MaxPoolingWithArgmax2D(2)(inputs)[0])
    grad = input_gradient(lambda v: model(v), x)
    expected = np.zeros_like(x)
    _, tf_indices = tf.nn.max_pool_with_argmax(x, 2, 2, "VALID", include_batch_in_index=False)
    expected.reshape(-1)[tf_indices.numpy().ravel()] = 1.0
    np.testing.assert_array_equal(grad, expected)


def test_rejects_wrong_rank():
    with pytest.raises(ValueError, match="4-D tensor"):
        MaxPoolingWithArgmax2D()(np.zeros((8, 8, 3), "float32"))


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="padding"):
        MaxPoolingWithArgmax2D(padding="full")
    with pytest.raises(ValueError, match="pool_size"):
        MaxPoolingWithArgmax2D(pool_size=0)
