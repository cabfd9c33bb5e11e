"""A small `run_layer_test`: the checks Keras' own TestCase makes of every layer."""

from __future__ import annotations

import keras
import numpy as np


def to_numpy(x):
    return keras.ops.convert_to_numpy(x)


def run_layer_test(layer_cls, init_kwargs, inputs, expected_output_shape=None, train=True):
    """Checks a layer: config round trip, symbolic shape = eager shape, fit and a .keras round trip.

    `inputs` is one array or a list of arrays (a batch). Returns the eager output(s).
    """
    layer = layer_cls(**init_kwargs)
    config = layer.get_config()
    clone = layer_cls.from_config(config)
    assert clone.get_config() == config, "get_config must return exactly the constructor's arguments"

    multi = isinstance(inputs, (list, tuple))
    arrays = list(inputs) if multi else [inputs]
    eager = layer(arrays if multi else arrays[0])
    outputs = list(eager) if isinstance(eager, (list, tuple)) else [eager]

    symbolic_inputs = [keras.Input(shape=a.shape[1:], dtype=str(a.dtype), batch_size=None) for a in arrays]
    symbolic = layer_cls(**init_kwargs)(symbolic_inputs if multi else symbolic_inputs[0])
    symbolic = list(symbolic) if isinstance(symbolic, (list, tuple)) else [symbolic]
    for sym, out in zip(symbolic, outputs):
        assert tuple(sym.shape[1:]) == tuple(out.shape[1:]), "symbolic and eager shapes differ"
        assert keras.backend.standardize_dtype(sym.dtype) == keras.backend.standardize_dtype(out.dtype)
    if expected_output_shape is not None:
        assert tuple(outputs[0].shape) == tuple(expected_output_shape)

    # A trainable convolution before the layer, so gradients must flow through it.
    float_positions = [i for i, a in enumerate(arrays) if a.dtype.kind == "f"]
    first = float_positions[0]
    model_inputs = [keras.Input(shape=a.shape[1:], dtype=str(a.dtype)) for a in arrays]
    pre = keras.layers.Conv2D(arrays[first].shape[-1], 1, name="pre")(model_inputs[first])
    layer_args = [pre if i == first else t for i, t in enumerate(model_inputs)]
    out = layer_cls(**init_kwargs)(layer_args if multi else layer_args[0])
    out = out[0] if isinstance(out, (list, tuple)) else out
    model = keras.Model(model_inputs, out)
    if train:
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
        before = to_numpy(model.get_layer("pre").kernel).copy()
        target = np.random.default_rng(1).normal(size=(len(arrays[0]), *out.shape[1:])).astype("float32")
        model.fit(arrays if multi else arrays[0], target, epochs=1, batch_size=len(arrays[0]), verbose=0)
        after = to_numpy(model.get_layer("pre").kernel)
        assert np.all(np.isfinite(after)) and not np.allclose(before, after), "no gradient reached the input"
    return [to_numpy(o) for o in outputs] if len(outputs) > 1 else to_numpy(outputs[0])


def assert_keras_round_trip(model, inputs, tmp_path, atol=1e-6):
    """Saves `model` to .keras, loads it back and checks identical predictions."""
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    expected = model.predict(inputs, verbose=0)
    actual = loaded.predict(inputs, verbose=0)
    for e, a in zip(keras.tree.flatten(expected), keras.tree.flatten(actual)):
        np.testing.assert_allclose(a, e, atol=atol)
    return loaded
