"""Segmentation metrics accumulated over a whole evaluation: Dice, Jaccard, pixel error.

Each metric keeps a running confusion matrix over every pixel it has seen (the way
`keras.metrics.MeanIoU` does), so its result is the dataset-level score, not a mean
of per-batch scores. Predictions are thresholded (one sigmoid channel) or arg-maxed
(softmax channels); targets are class indices `(B, H, W)` / `(B, H, W, 1)` or one-hot
`(B, H, W, C)`. Pixels whose target is `ignore_class` (CamVid's void) are skipped.

For the adapted Rand error of the ISBI challenge, use
`skimage.metrics.adapted_rand_error` on the thresholded prediction: it needs
connected components and is not a per-pixel quantity.
"""

from __future__ import annotations

import keras
from keras import ops


class _ConfusionMetric(keras.metrics.Metric):
    """Accumulates a (num_classes, num_classes) confusion matrix, rows = truth."""

    def __init__(self, num_classes=2, class_ids=None, threshold=0.5, ignore_class=None, name=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        if num_classes < 2:
            raise ValueError(
                f"`num_classes` counts the background too and must be >= 2, got {num_classes}; "
                "a binary mask is num_classes=2."
            )
        self.num_classes = num_classes
        self.class_ids = None if class_ids is None else [int(c) for c in class_ids]
        self.threshold = threshold
        self.ignore_class = ignore_class
        self.confusion = self.add_variable(
            shape=(num_classes, num_classes), initializer="zeros", dtype="float32", name="confusion"
        )

    def _labels(self, y_true, y_pred):
        y_pred = ops.convert_to_tensor(y_pred)
        if y_pred.shape[-1] == 1:
            predicted = ops.cast(y_pred[..., 0] > self.threshold, "int32")
        else:
            predicted = ops.cast(ops.argmax(y_pred, axis=-1), "int32")
        y_true = ops.convert_to_tensor(y_true)
        if len(y_true.shape) == len(y_pred.shape) and y_true.shape[-1] not in (1, None) and y_true.shape[-1] > 1:
            truth = ops.cast(ops.argmax(y_true, axis=-1), "int32")
        else:
            truth = ops.cast(ops.reshape(y_true, ops.shape(predicted)), "int32")
        return truth, predicted

    def update_state(self, y_true, y_pred, sample_weight=None):
        truth, predicted = self._labels(y_true, y_pred)
        weight = ops.ones_like(truth, dtype="float32")
        if self.ignore_class is not None:
            weight = weight * ops.cast(truth != self.ignore_class, "float32")
            truth = ops.where(truth == self.ignore_class, ops.zeros_like(truth), truth)
        if sample_weight is not None:
            weight = weight * ops.broadcast_to(ops.cast(sample_weight, "float32"), ops.shape(weight))
        valid = ops.cast((truth >= 0) & (truth < self.num_classes), "float32")
        # One-hot products instead of bincount: static shapes, so it jits on JAX.
        truth_one_hot = ops.reshape(ops.one_hot(truth, self.num_classes), (-1, self.num_classes))
        pred_one_hot = ops.reshape(ops.one_hot(predicted, self.num_classes), (-1, self.num_classes))
        pixel_weight = ops.reshape(weight * valid, (-1, 1))
        self.confusion.assign_add(ops.matmul(ops.transpose(truth_one_hot * pixel_weight), pred_one_hot))

    def reset_state(self):
        self.confusion.assign(ops.zeros((self.num_classes, self.num_classes), dtype="float32"))

    def _per_class(self, true_positive, true_total, pred_total):
        raise NotImplementedError

    def result(self):
        true_positive = ops.diagonal(self.confusion)
        true_total = ops.sum(self.confusion, axis=1)
        pred_total = ops.sum(self.confusion, axis=0)
        scores = self._per_class(true_positive, true_total, pred_total)
        present = ops.cast((true_total + pred_total) > 0, "float32")
        if self.class_ids is not None:
            selected = ops.zeros((self.num_classes,), "float32")
            for class_id in self.class_ids:
                selected = selected + ops.one_hot(class_id, self.num_classes, dtype="float32")
            present = present * selected
        # Mean over the classes that occur in the truth or the prediction.
        return ops.sum(scores * present) / ops.maximum(ops.sum(present), 1.0)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_classes": self.num_classes,
                "class_ids": self.class_ids,
                "threshold": self.threshold,
                "ignore_class": self.ignore_class,
            }
        )
        return config


def _divide(numerator, denominator):
    return numerator / ops.maximum(denominator, 1e-12)


@keras.saving.register_keras_serializable(package="kfcn")
class DiceScore(_ConfusionMetric):
    """Dice coefficient 2·TP / (|truth| + |prediction|), per class and averaged.

    Args:
        num_classes: number of classes, background included (2 for a binary mask).
        class_ids: classes to average over (default: all that occur). For a binary
            mask `class_ids=[1]` scores the foreground alone.
        threshold: for a single sigmoid channel, the probability above which a pixel
            is foreground.
        ignore_class: target value to skip (e.g. 11, CamVid's void).

    Example:
    >>> import numpy as np
    >>> metric = DiceScore(num_classes=2, class_ids=[1])
    >>> metric.update_state(np.array([[[1, 1], [0, 0]]]), np.array([[[[0.9], [0.2]], [[0.1], [0.7]]]]))
    >>> round(float(metric.result()), 4)
    0.5
    """

    def __init__(self, num_classes=2, class_ids=None, threshold=0.5, ignore_class=None, name="dice", dtype=None):
        super().__init__(num_classes, class_ids, threshold, ignore_class, name=name, dtype=dtype)

    def _per_class(self, true_positive, true_total, pred_total):
        return _divide(2.0 * true_positive, true_total + pred_total)


@keras.saving.register_keras_serializable(package="kfcn")
class JaccardScore(_ConfusionMetric):
    """Jaccard index (IoU) TP / (|truth| + |prediction| − TP), per class and averaged.

    With every class selected this is the mean IoU of `keras.metrics.MeanIoU`, here
    with thresholding of sigmoid outputs, one-hot or index targets and an ignore class.

    Args:
        num_classes, class_ids, threshold, ignore_class: as for `DiceScore`.

    Example:
    >>> import numpy as np
    >>> metric = JaccardScore(num_classes=2, class_ids=[1])
    >>> metric.update_state(np.array([[[1, 1], [0, 0]]]), np.array([[[[0.9], [0.2]], [[0.1], [0.7]]]]))
    >>> round(float(metric.result()), 4)
    0.3333
    """

    def __init__(self, num_classes=2, class_ids=None, threshold=0.5, ignore_class=None, name="jaccard", dtype=None):
        super().__init__(num_classes, class_ids, threshold, ignore_class, name=name, dtype=dtype)

    def _per_class(self, true_positive, true_total, pred_total):
        return _divide(true_positive, true_total + pred_total - true_positive)


@keras.saving.register_keras_serializable(package="kfcn")
class PixelError(_ConfusionMetric):
    """Fraction of (non-ignored) pixels whose predicted class is wrong: 1 − accuracy.

    The ISBI 2012 challenge's "pixel error". `class_ids` is not used.

    Example:
    >>> import numpy as np
    >>> metric = PixelError(num_classes=2)
    >>> metric.update_state(np.array([[[1, 1], [0, 0]]]), np.array([[[[0.9], [0.2]], [[0.1], [0.7]]]]))
    >>> float(metric.result())
    0.5
    """

    def __init__(self, num_classes=2, threshold=0.5, ignore_class=None, name="pixel_error", dtype=None):
        super().__init__(num_classes, None, threshold, ignore_class, name=name, dtype=dtype)

    def result(self):
        total = ops.sum(self.confusion)
        return 1.0 - ops.sum(ops.diagonal(self.confusion)) / ops.maximum(total, 1.0)

    def get_config(self):
        config = super().get_config()
        config.pop("class_ids")
        return config
