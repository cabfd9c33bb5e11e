"""Segmentation metrics accumulated over a whole evaluation: Dice, Jaccard, pixel error.

Each metric keeps a running confusion matrix over every pixel it has seen (the way
`keras.metrics.MeanIoU` does), so its result is the dataset-level score, not a mean
of per-batch scores. Predictions are thresholded (one sigmoid channel: a binary model,
scored with `num_classes=2`) or arg-maxed (`num_classes` softmax channels), after a
sigmoid if `from_logits=True`; targets are class indices `(B, H, W)` / `(B, H, W, 1)`
or one-hot `(B, H, W, C)`. Pixels whose target is `ignore_class` (CamVid's void) are
skipped.

Bad inputs never give a plausible score: a target outside [0, num_classes) other than
`ignore_class` (e.g. the 255s of a raw 0/255 mask) raises a ValueError naming the fix
when the values are concrete (eager), and makes the result NaN inside a compiled graph
(`tf.function`, `jax.jit`); so do NaN or infinite predictions and targets, until
`reset_state`.

Dice and Jaccard set `_direction = "up"` and `PixelError` `"down"`, so `EarlyStopping`
and `ModelCheckpoint` with `mode="auto"` know which way is better.

For the adapted Rand error of the ISBI challenge, use
`skimage.metrics.adapted_rand_error` on the thresholded prediction: it needs
connected components and is not a per-pixel quantity.
"""

from __future__ import annotations

import numbers

import keras
from keras import ops

from kfcn.arguments import is_integer
from kfcn.targets import RAW_MASK_FIX, check_ignore_class, examples_of, poison, refuse_or_poison


def _check_arguments(num_classes, class_ids, threshold, ignore_class):
    if not is_integer(num_classes) or num_classes < 2:
        raise ValueError(
            f"`num_classes` counts the background too and must be an int >= 2, got {num_classes!r}. A binary "
            "model (num_classes=1: one sigmoid channel) is scored with num_classes=2, class_ids=[1] for the "
            "foreground alone."
        )
    if class_ids is not None:
        class_ids = list(class_ids)
        valid = [is_integer(c) and 0 <= c < num_classes for c in class_ids]
        if not class_ids or not all(valid) or len(set(class_ids)) != len(class_ids):
            raise ValueError(
                f"`class_ids` must be distinct ints in range({num_classes}) (num_classes={num_classes}), got "
                f"{class_ids!r}; for a binary mask the foreground is class 1."
            )
        class_ids = [int(c) for c in class_ids]
    ignore_class = check_ignore_class(ignore_class)
    if class_ids is not None and ignore_class in class_ids:
        raise ValueError(f"Class {ignore_class} cannot be both scored (class_ids) and ignored (ignore_class).")
    if not (isinstance(threshold, numbers.Real) and 0 <= threshold <= 1):
        raise ValueError(f"`threshold` is a probability in [0, 1], got {threshold!r}.")
    return int(num_classes), class_ids, float(threshold), ignore_class


def _check_static_sizes(name, true_shape, pred_shape, sample_weight=None):
    """Names mismatched batch or image sizes (where known) instead of a backend reshape error."""
    pairs = [("target", true_shape, (0, 1, 2))]
    if sample_weight is not None:
        pairs.append(("sample_weight", ops.shape(sample_weight), (0,)))
    for what, shape, axes in pairs:
        for axis in axes:
            if axis < len(shape) and axis < len(pred_shape):
                a, b = shape[axis], pred_shape[axis]
                if isinstance(a, int) and isinstance(b, int) and a != b:
                    raise ValueError(
                        f"{name}: the {what} has shape {tuple(shape)} but the prediction {tuple(pred_shape)}: "
                        f"they must agree in {('batch size', 'height', 'width')[axis]}."
                    )


class _ConfusionMetric(keras.metrics.Metric):
    """Accumulates a (num_classes, num_classes) confusion matrix, rows = truth."""

    def __init__(
        self, num_classes=2, class_ids=None, threshold=0.5, ignore_class=None, from_logits=False, name=None, dtype=None
    ):
        super().__init__(name=name or self.default_name, dtype=dtype)
        self._direction = self.direction  # read by EarlyStopping/ModelCheckpoint(mode="auto")
        self.num_classes, self.class_ids, self.threshold, self.ignore_class = _check_arguments(
            num_classes, class_ids, threshold, ignore_class
        )
        self.from_logits = bool(from_logits)
        self.confusion = self.add_variable(
            shape=(self.num_classes, self.num_classes), initializer="zeros", dtype="float32", name="confusion"
        )

    def _predicted(self, y_pred):
        channels = y_pred.shape[-1]
        if channels == 1:
            if self.num_classes != 2:
                raise ValueError(
                    f"{self.name}: a one-channel (sigmoid) prediction is binary, so num_classes must be 2, "
                    f"got {self.num_classes}."
                )
            probability = ops.sigmoid(y_pred[..., 0]) if self.from_logits else y_pred[..., 0]
            return ops.cast(probability > self.threshold, "int32")
        if channels is not None and channels != self.num_classes:
            raise ValueError(
                f"{self.name}: the prediction has {channels} channels but num_classes={self.num_classes}; "
                "they must agree (one sigmoid channel with num_classes=2 for a binary model)."
            )
        return ops.cast(ops.argmax(y_pred, axis=-1), "int32")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_pred = ops.cast(ops.convert_to_tensor(y_pred), "float32")
        y_true = ops.cast(ops.convert_to_tensor(y_true), "float32")
        _check_static_sizes(self.name, y_true.shape, y_pred.shape, sample_weight)
        predicted = self._predicted(y_pred)
        non_finite = ops.logical_not(ops.all(ops.isfinite(y_pred)) & ops.all(ops.isfinite(y_true)))
        if len(y_true.shape) == len(y_pred.shape) and y_true.shape[-1] not in (1, None):
            truth = ops.argmax(y_true, axis=-1)  # one-hot
        else:
            truth = ops.reshape(y_true, ops.shape(predicted))
        keep = ops.ones_like(truth, dtype="bool") if self.ignore_class is None else truth != self.ignore_class
        known = (truth >= 0) & (truth < self.num_classes) & (truth == ops.round(truth))
        unknown = keep & ops.logical_not(known) & ops.isfinite(truth)
        bad = refuse_or_poison(
            ops.any(unknown),
            lambda: (
                f"{self.name}: targets must be class indices in [0, {self.num_classes}) (num_classes="
                f"{self.num_classes}) or ignore_class, got {examples_of(truth, unknown)}; {RAW_MASK_FIX}."
            ),
        )
        keep = keep & known
        weight = ops.cast(keep, "float32")
        if sample_weight is not None:
            sample_weight = ops.cast(ops.convert_to_tensor(sample_weight), "float32")
            if len(sample_weight.shape) == 1:  # one weight per sample
                sample_weight = ops.reshape(sample_weight, (-1,) + (1,) * (len(weight.shape) - 1))
            elif len(sample_weight.shape) == len(weight.shape) + 1:
                sample_weight = ops.squeeze(sample_weight, axis=-1)
            weight = weight * ops.broadcast_to(sample_weight, ops.shape(weight))
        truth = ops.cast(ops.where(keep, truth, ops.zeros_like(truth)), "int32")
        # One-hot products instead of bincount: static shapes, so it jits on JAX.
        truth_one_hot = ops.reshape(ops.one_hot(truth, self.num_classes), (-1, self.num_classes))
        pred_one_hot = ops.reshape(ops.one_hot(predicted, self.num_classes), (-1, self.num_classes))
        pixel_weight = ops.reshape(weight, (-1, 1))
        counts = ops.matmul(ops.transpose(truth_one_hot * pixel_weight), pred_one_hot)
        self.confusion.assign_add(poison(counts, non_finite | bad))

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
            present = present * ops.sum(ops.one_hot(ops.convert_to_tensor(self.class_ids), self.num_classes), axis=0)
        # Mean over the classes that occur in the truth or the prediction; when none of
        # them does (an empty target predicted empty) the agreement is perfect: 1. With
        # no pixel counted at all the result is 0, as for a fresh Keras metric.
        counted = ops.sum(present)
        mean = ops.sum(scores * present) / ops.maximum(counted, 1.0)
        anything_counted = ops.cast(ops.sum(self.confusion) > 0, "float32")
        score = ops.where(counted > 0, mean, anything_counted)
        return poison(score, ops.any(ops.isnan(self.confusion)))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_classes": self.num_classes,
                "class_ids": self.class_ids,
                "threshold": self.threshold,
                "ignore_class": self.ignore_class,
                "from_logits": self.from_logits,
            }
        )
        return config


def _divide(numerator, denominator):
    return numerator / ops.maximum(denominator, 1e-12)


@keras.saving.register_keras_serializable(package="kfcn")
class DiceScore(_ConfusionMetric):
    """Dice coefficient 2·TP / (|truth| + |prediction|), per class and averaged.

    Classes that occur in neither the truth nor the prediction are left out of the
    mean; if none of the selected classes occurs at all, the score is 1 (an empty
    target predicted empty is a perfect match).

    Args:
        num_classes: number of classes, background included (2 for a binary mask,
            also when the model has one sigmoid channel).
        class_ids: classes to average over (default: all that occur), distinct ints
            in `range(num_classes)`. For a binary mask `class_ids=[1]` scores the
            foreground alone.
        threshold: for a single sigmoid channel, the probability above which a pixel
            is foreground.
        ignore_class: target value to skip (e.g. 11, CamVid's void).
        from_logits: the prediction is logits (a head without activation).
        name, dtype: as for any `keras.metrics.Metric`.

    Example:
    >>> import numpy as np
    >>> metric = DiceScore(num_classes=2, class_ids=[1])
    >>> metric.update_state(np.array([[[1, 1], [0, 0]]]), np.array([[[[0.9], [0.2]], [[0.1], [0.7]]]]))
    >>> round(float(metric.result()), 4)
    0.5
    """

    default_name = "dice"
    direction = "up"

    def _per_class(self, true_positive, true_total, pred_total):
        return _divide(2.0 * true_positive, true_total + pred_total)


@keras.saving.register_keras_serializable(package="kfcn")
class JaccardScore(_ConfusionMetric):
    """Jaccard index (IoU) TP / (|truth| + |prediction| − TP), per class and averaged.

    With every class selected this is the mean IoU of `keras.metrics.MeanIoU`, here
    with thresholding of sigmoid outputs, one-hot or index targets and an ignore class.

    Args:
        num_classes, class_ids, threshold, ignore_class, from_logits, name, dtype:
            as for `DiceScore`.

    Example:
    >>> import numpy as np
    >>> metric = JaccardScore(num_classes=2, class_ids=[1])
    >>> metric.update_state(np.array([[[1, 1], [0, 0]]]), np.array([[[[0.9], [0.2]], [[0.1], [0.7]]]]))
    >>> round(float(metric.result()), 4)
    0.3333
    """

    default_name = "jaccard"
    direction = "up"

    def _per_class(self, true_positive, true_total, pred_total):
        return _divide(true_positive, true_total + pred_total - true_positive)


@keras.saving.register_keras_serializable(package="kfcn")
class PixelError(_ConfusionMetric):
    """Fraction of (non-ignored) pixels whose predicted class is wrong: 1 − accuracy.

    The ISBI 2012 challenge's "pixel error"; lower is better.

    Args:
        num_classes, threshold, ignore_class, from_logits, name, dtype: as for `DiceScore`.

    Example:
    >>> import numpy as np
    >>> metric = PixelError(num_classes=2)
    >>> metric.update_state(np.array([[[1, 1], [0, 0]]]), np.array([[[[0.9], [0.2]], [[0.1], [0.7]]]]))
    >>> float(metric.result())
    0.5
    """

    default_name = "pixel_error"
    direction = "down"

    def __init__(self, num_classes=2, threshold=0.5, ignore_class=None, from_logits=False, name=None, dtype=None):
        super().__init__(num_classes, None, threshold, ignore_class, from_logits, name=name, dtype=dtype)

    def result(self):
        total = ops.sum(self.confusion)
        return 1.0 - ops.sum(ops.diagonal(self.confusion)) / ops.maximum(total, 1.0)

    def get_config(self):
        config = super().get_config()
        config.pop("class_ids")
        return config
