"""Batch-norm statistics recomputed for the current weights: NumPy's numbers, training untouched, the callback."""

import keras
import numpy as np
import pytest

from kfcn.batch_norm import PreciseBatchNorm, batch_norm_layers, recompute_batch_norm_statistics

pytestmark = pytest.mark.backend  # the statistics, and training going on unchanged, on every backend


def numpy(variable):
    return keras.ops.convert_to_numpy(variable).astype(np.float64)


def chain(rng):
    """Input(3) -> BN -> Dense(2) -> BN, with random scales, offsets and kernel."""
    model = keras.Sequential(
        [
            keras.Input((3,)),
            keras.layers.BatchNormalization(epsilon=1e-3, name="first"),
            keras.layers.Dense(2, name="dense"),
            keras.layers.BatchNormalization(epsilon=1e-3, name="second"),
        ]
    )
    for variable in model.trainable_variables:
        variable.assign(rng.normal(size=variable.shape).astype("float32"))
    return model


def test_each_layer_gets_the_mean_of_its_batch_statistics_in_training_mode(rng):
    model = chain(rng)
    first, dense, second = model.layers
    gamma, beta = numpy(first.gamma), numpy(first.beta)
    kernel, bias = numpy(dense.kernel), numpy(dense.bias)
    batches = [rng.normal(loc=3.0, scale=2.0, size=(n, 3)).astype("float32") for n in (4, 6, 5)]
    expected = {"first": [], "second": []}
    for x in batches:  # NumPy: the first layer normalises by this batch's own statistics, as in training
        x = x.astype(np.float64)
        expected["first"].append((x.mean(0), x.var(0)))
        hidden = (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-3) * gamma + beta
        z = hidden @ kernel + bias
        expected["second"].append((z.mean(0), z.var(0)))
    for layer in (first, second):  # moving averages that are far from the answer
        layer.moving_mean.assign(np.full(layer.moving_mean.shape, 50.0, "float32"))
    assert recompute_batch_norm_statistics(model, batches) == 3
    for layer in (first, second):
        means, variances = zip(*expected[layer.name])
        np.testing.assert_allclose(numpy(layer.moving_mean), np.mean(means, 0), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(numpy(layer.moving_variance), np.mean(variances, 0), rtol=1e-4, atol=1e-5)
        assert layer.momentum == 0.99  # put back
    # `steps` takes the first batches only; (x, y) tuples give their x.
    assert recompute_batch_norm_statistics(model, [(x, None) for x in batches], steps=1) == 1
    np.testing.assert_allclose(numpy(first.moving_mean), expected["first"][0][0], rtol=1e-5, atol=1e-5)


def dropout_model():
    keras.utils.set_random_seed(3)
    model = keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(8),
            keras.layers.BatchNormalization(),
            keras.layers.Dropout(0.5, seed=7),
            keras.layers.Dense(1),
        ]
    )
    model.compile(keras.optimizers.SGD(0.1), "mse")
    return model


def test_training_goes_on_exactly_as_without_it(rng):
    """Only the moving statistics change: the weights and dropout's random state are as they were, so the
    trained weights come out bit for bit the same (without the state put back, the dropout masks differ)."""
    x = rng.normal(size=(16, 6)).astype("float32")
    y = rng.normal(size=(16, 1)).astype("float32")
    plain, precise = dropout_model(), dropout_model()
    plain.fit(x, y, batch_size=4, epochs=3, shuffle=False, verbose=0)
    precise.fit(x, y, batch_size=4, epochs=3, shuffle=False, verbose=0, callbacks=[PreciseBatchNorm([x[:8], x[8:]])])
    for a, b in zip(plain.trainable_variables, precise.trainable_variables):
        np.testing.assert_array_equal(numpy(a), numpy(b), err_msg=a.path)
    bn = batch_norm_layers(precise)[0]
    assert not np.allclose(numpy(bn.moving_mean), numpy(batch_norm_layers(plain)[0].moving_mean))


def test_the_callback_validates_and_ends_with_the_final_weights_statistics(rng):
    x = rng.normal(loc=1.0, size=(12, 3)).astype("float32")
    y = rng.normal(size=(12, 2)).astype("float32")
    model = chain(rng)
    model.compile(keras.optimizers.SGD(0.2), "mse")
    statistics = [x[:6], x[6:]]
    history = model.fit(
        x,
        y,
        batch_size=3,
        epochs=2,
        shuffle=False,
        verbose=0,
        validation_data=(x, y),
        callbacks=[PreciseBatchNorm(statistics)],
    )
    kept = [numpy(v) for v in model.non_trainable_variables]
    # The last validation ran with the statistics of the last weights: evaluate now gives its loss.
    assert model.evaluate(x, y, verbose=0) == pytest.approx(history.history["val_loss"][-1], rel=1e-5)
    recompute_batch_norm_statistics(model, statistics)  # again, on the final weights: nothing moves
    for before, variable in zip(kept, model.non_trainable_variables):
        np.testing.assert_allclose(numpy(variable), before, rtol=1e-6, atol=1e-7)


def test_frozen_layers_keep_their_statistics_and_bad_calls_are_refused(rng):
    model = chain(rng)
    first = model.layers[0]
    first.trainable = False
    before = numpy(first.moving_mean)
    assert batch_norm_layers(model) == [model.layers[2]]
    recompute_batch_norm_statistics(model, [rng.normal(size=(4, 3)).astype("float32")])
    np.testing.assert_array_equal(numpy(first.moving_mean), before)
    with pytest.raises(ValueError, match="is empty"):
        recompute_batch_norm_statistics(model, [])
    # A batch that fails, or gives NaN statistics, leaves every statistic as it was (not the last batch's).
    kept = [numpy(variable) for variable in model.non_trainable_variables]
    good, nan = rng.normal(size=(4, 3)).astype("float32"), np.full((4, 3), np.nan, "float32")
    with pytest.raises(ValueError, match="NaN or infinite"):
        recompute_batch_norm_statistics(model, [good, nan])
    with pytest.raises(Exception):  # noqa: B017 (each backend raises its own error for a wrong shape)
        recompute_batch_norm_statistics(model, [good, np.zeros((4, 5), "float32")])
    for before, variable in zip(kept, model.non_trainable_variables):
        np.testing.assert_array_equal(numpy(variable), before)
    assert model.layers[2].momentum == 0.99
    plain = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)], name="plain")
    with pytest.raises(ValueError, match="plain has no batch-normalisation layer"):
        recompute_batch_norm_statistics(plain, [np.zeros((2, 3), "float32")])
