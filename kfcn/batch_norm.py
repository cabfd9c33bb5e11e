"""Batch-norm statistics recomputed for the weights a model has now ("precise BN").

Keras' batch normalisation keeps an exponential moving average of the batch statistics it
saw while training. When the weights move fast (SGD at a high learning rate, early in a
run), that average mixes statistics of many past weights, and the model predicts worse in
inference mode than it trains: a CamVid SegNet-Basic at epoch 9 of SGD at 0.1 scored mIoU
0.04 on the validation images with its moving averages and 0.18 with statistics recomputed
over 120 training images. Enough batches matter once the weights settle: at the end of a
cosine schedule the moving averages are good, and the CamVid U-Net of kfcn's recipe scored
mIoU 52.9 with them, 50.5 with statistics over 10 batches of 6 crops, and 53.9 over 60
(shipped so). SegNet's authors recomputed them after training (`compute_bn_statistics`);
`torch.optim.swa_utils.update_bn` and Wu & Johnson, "Rethinking 'Batch' in BatchNorm"
(2021), do the same.
"""

from __future__ import annotations

import keras
import numpy as np


def batch_norm_layers(model):
    """The batch-normalisation layers of `model` that training updates (nested models included).

    Frozen layers (`trainable=False`) keep their statistics: Keras runs them in inference mode.

    Example:
    >>> model = keras.Sequential([keras.Input((4, 4, 2)), keras.layers.Conv2D(3, 3), keras.layers.BatchNormalization()])
    >>> [type(layer).__name__ for layer in batch_norm_layers(model)]
    ['BatchNormalization']
    """
    return [
        layer
        for layer in model._flatten_layers(include_self=False)  # every tracked sublayer, nested models too
        if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable
    ]


def recompute_batch_norm_statistics(model, batches, steps=None):
    """Sets each batch-norm layer's moving mean and variance to their average over `batches`.

    Runs the model in training mode on each batch, as training does (every batch-norm layer
    normalises with the batch's own statistics), and gives each batch equal weight: the
    moving mean becomes the mean of the batches' means, the moving variance the mean of
    their (biased) variances, which is what Keras' moving averages estimate. Only those
    statistics change: the weights, and the state of random layers such as dropout, are as
    they were, so training continues exactly as it would have.

    Args:
        model: a built Keras model with batch normalisation.
        batches: an iterable of input batches, or of `(x, ...)` tuples (a `tf.data.Dataset`
            of `(x, y)` works); the same batches give the same statistics.
        steps: use at most this many batches (None: all).

    Returns:
        The number of batches used.

    Raises:
        ValueError: if the model has no trainable batch-normalisation layer, `batches`
            is empty, or an input holds NaN or infinity (the statistics stay as they were,
            also when a batch cannot be called, e.g. of the wrong shape).

    Example:
    >>> model = keras.Sequential([keras.Input((3,)), keras.layers.BatchNormalization()])
    >>> batches = [np.array([[0.0, 1, 2], [2, 1, 0]]), np.array([[4.0, 1, 0], [6, 1, 2]])]
    >>> recompute_batch_norm_statistics(model, batches)
    2
    >>> keras.ops.convert_to_numpy(model.layers[0].moving_mean).tolist()  # the mean of [1, 1, 1] and [5, 1, 1]
    [3.0, 1.0, 1.0]
    >>> keras.ops.convert_to_numpy(model.layers[0].moving_variance).tolist()  # of [1, 0, 1] and [1, 0, 1]
    [1.0, 0.0, 1.0]
    """
    layers = batch_norm_layers(model)
    if not layers:
        raise ValueError(
            f"{model.name} has no batch-normalisation layer that training updates, so there are no statistics "
            "to recompute."
        )
    # Every non-trainable variable is put back afterwards, also when a batch fails: the statistics the
    # calls overwrite, and the state of random layers (e.g. dropout's seed) that training mode advances.
    state = [(variable, keras.ops.convert_to_numpy(variable)) for variable in model.non_trainable_variables]
    momenta = [layer.momentum for layer in layers]
    sums = [[0.0, 0.0] for _ in layers]
    used = 0
    try:
        for layer in layers:
            layer.momentum = 0.0  # each call leaves exactly this batch's statistics in the moving averages
        for batch in batches:
            if steps is not None and used >= steps:
                break
            model(batch[0] if isinstance(batch, tuple) else batch, training=True)
            for total, layer in zip(sums, layers):
                total[0] = total[0] + keras.ops.convert_to_numpy(layer.moving_mean).astype(np.float64)
                total[1] = total[1] + keras.ops.convert_to_numpy(layer.moving_variance).astype(np.float64)
            used += 1
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
        for variable, value in state:
            variable.assign(value)
    if not used:
        raise ValueError("`batches` is empty: the statistics need at least one batch of inputs.")
    if not all(np.isfinite(total).all() for pair in sums for total in pair):
        raise ValueError(
            "The batches gave NaN or infinite batch-norm statistics (an input holds NaN or infinity); the "
            "model keeps its statistics. Give finite inputs."
        )
    for (mean, variance), layer in zip(sums, layers):
        layer.moving_mean.assign((mean / used).astype(layer.moving_mean.dtype))
        layer.moving_variance.assign((variance / used).astype(layer.moving_variance.dtype))
    return used


class PreciseBatchNorm(keras.callbacks.Callback):
    """Recomputes the batch-norm statistics once an epoch, before validation and checkpoints.

    Each epoch of `model.fit` ends with `recompute_batch_norm_statistics(model, batches,
    steps)`, run before the epoch's validation (or, in an epoch without one, before the
    callbacks after this one save anything), so the validation scores, the checkpoints and
    the final model all use statistics of the weights they hold. Training itself is
    unchanged: its forward passes normalise by each batch's own statistics.

    Place it after `keras.callbacks.SwapEMAWeights` (its statistics are then the moving
    average's) and before the checkpoint callbacks.

    Args:
        batches: fixed input batches (see `recompute_batch_norm_statistics`); give the same
            ones every epoch, e.g. a cached `dataset.take(n)`, so a resumed run recomputes
            what an uninterrupted one would.
        steps: at most this many batches (None: all).

    Example:
    >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(3), keras.layers.BatchNormalization()])
    >>> model.compile("sgd", "mse")
    >>> x = np.arange(12.0).reshape(4, 3)
    >>> _ = model.fit(x, x, epochs=2, verbose=0, callbacks=[PreciseBatchNorm([x[:2], x[2:]])])
    """

    def __init__(self, batches, steps=None):
        super().__init__()
        self.batches, self.steps = batches, steps
        self._fitting = self._done = False

    def on_train_begin(self, logs=None):
        self._fitting = True

    def on_train_end(self, logs=None):
        self._fitting = False

    def on_epoch_begin(self, epoch, logs=None):
        self._done = False

    def on_test_begin(self, logs=None):
        if self._fitting:  # the validation of a fit, not a separate evaluate
            self._recompute()

    def on_epoch_end(self, epoch, logs=None):
        self._recompute()

    def _recompute(self):
        if not self._done:
            recompute_batch_norm_statistics(self.model, self.batches, self.steps)
            self._done = True
