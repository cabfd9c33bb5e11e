"""Input gradients on every backend (the one place kfcn branches on the backend)."""

from __future__ import annotations

import keras
import numpy as np


def input_gradient(function, x):
    """d(sum(function(x)))/dx for a NumPy batch `x`, on the current Keras backend.

    Example:
    >>> g = input_gradient(lambda v: 3.0 * v, np.ones((1, 2, 2, 1), "float32"))
    >>> float(g.sum())
    12.0
    """
    x = np.asarray(x, dtype="float32")
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        tensor = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(tensor)
            total = tf.reduce_sum(function(tensor))
        return tape.gradient(total, tensor).numpy()
    if backend == "jax":
        import jax

        return np.asarray(jax.grad(lambda v: function(v).sum())(x))
    if backend == "torch":
        import torch

        tensor = torch.tensor(x, requires_grad=True)
        # Only the input's gradient: no weight gradients are computed (or accumulated).
        (gradient,) = torch.autograd.grad(function(tensor).sum(), [tensor])
        return gradient.detach().cpu().numpy()
    raise NotImplementedError(f"Input gradients are not implemented for the {backend!r} backend.")
