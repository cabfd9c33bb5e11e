"""Whether a model's weights are finite: a diverged run's NaN does not always reach its outputs or its loss.

On CPUs whose vector max/min return the other operand for a NaN (AVX-512 kernels of
oneDNN, and `clip` in the losses), a ReLU or a clipped probability turns NaN into a
number: a model whose weights are all NaN can give finite, plausible-looking maps and a
finite training loss. So training and prediction look at the weights themselves.
"""

from __future__ import annotations

import keras
import numpy as np


def non_finite_weights(model):
    """The paths of `model`'s weights that hold a NaN or an infinity (empty when all are finite).

    Example:
    >>> inputs = keras.Input((2,))
    >>> model = keras.Model(inputs, keras.layers.Dense(1, name="dense")(inputs))
    >>> non_finite_weights(model)
    []
    >>> _ = model.get_layer("dense").bias.assign([float("nan")])
    >>> non_finite_weights(model)
    ['dense/bias']
    """
    return [
        weight.path for weight in model.weights if not np.all(np.isfinite(keras.ops.convert_to_numpy(weight.value)))
    ]


def described(paths, limit=3):
    """`paths` for a message: how many, and the first few by name.

    Example:
    >>> described(["a/kernel", "a/bias", "b/kernel", "b/bias"])
    "4 weight variables ('a/kernel', 'a/bias', 'b/kernel', ...)"
    """
    shown = ", ".join(repr(path) for path in paths[:limit]) + (", ..." if len(paths) > limit else "")
    return f"{len(paths)} weight variable{'s' if len(paths) != 1 else ''} ({shown})"


def check_finite_weights(model):
    """Refuses a model whose weights hold NaN or infinite values (a diverged run's): on CPUs whose max/min turn
    NaN into a number (oneDNN's AVX-512 kernels) its outputs can be finite and its maps plausible, yet meaningless.

    Example:
    >>> from kfcn.models import plain_cnn
    >>> model = plain_cnn((None, None, 1), num_layers=2, filters=2)
    >>> check_finite_weights(model)  # finite: nothing happens
    >>> _ = model.weights[0].assign(np.full(model.weights[0].shape, np.nan, "float32"))
    >>> check_finite_weights(model)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: The model's weights hold NaN or infinite values: 1 weight variable ('hidden_conv1/kernel')....
    """
    diverged = non_finite_weights(model)
    if diverged:
        raise ValueError(
            f"The model's weights hold NaN or infinite values: {described(diverged)}. It comes from a diverged "
            "training run (or a damaged file), so every map it would make is meaningless. Use a model file from "
            "before the divergence, or train again with a lower learning rate."
        )
