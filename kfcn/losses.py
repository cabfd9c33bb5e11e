"""Segmentation losses written with `keras.ops`: Jaccard (j and j2), Dice, and combinations.

Notation, per sample and per channel, with sums over the pixels (the "set measures"
of the design, y the target in [0, 1], ŷ the prediction in [0, 1]):

    I = Σ y·ŷ          (soft intersection)
    j  = 1 − I / (Σy + Σŷ − I)                       JaccardLoss
    j2 = 1 − I / (Σy² + Σŷ² − I + ε)                 JaccardJ2Loss
    d  = 1 − 2·I / (Σy + Σŷ)                         DiceLoss

Reduction: the ratio is computed per sample and per channel, averaged over the
channels, then Keras averages over the batch (`reduction="sum_over_batch_size"`).
For batch 1 and one channel each loss equals the formula above exactly. With
`per_sample=False` the sums run over the whole batch before the ratio is taken
(nnU-Net's "batch Dice"), which is the remedy for empty targets below. A per-pixel
`sample_weight` (batch, height, width) weights each sample by its mean weight.

Targets: dense masks or one-hot maps in [0, 1] with the prediction's shape, or class
indices 0..K−1 of shape (B, H, W) / (B, H, W, 1) (`sparse_labels`, automatic when the
prediction has K > 1 channels and the target one), one-hot encoded inside the loss.
Pixels whose target equals `ignore_class` (CamVid's void) leave every sum. With
`from_logits=True` the prediction passes through a sigmoid (one channel) or a softmax
(K channels) first.

Bad inputs never give a plausible number. Targets outside [0, 1], such as a raw 0/255
mask, and class indices outside [0, K) raise a ValueError that names the fix when the
values are concrete (an eager call); inside a compiled graph (`tf.function`, `jax.jit`)
the loss becomes NaN instead, and so do non-finite targets or predictions, so
`keras.callbacks.TerminateOnNaN` stops the training.

Empty targets (Σy = 0): every value stays finite.
  - j and Dice: an empty prediction is a perfect overlap (0/0 is defined as ratio 1,
    loss 0); any false positive gives loss 1.
  - j2: the loss is 1 whatever ŷ is (ε keeps it finite).
  In all three the gradient with respect to ŷ is 0 on such a sample, because I and
  its gradient y vanish: false positives on empty images go unpunished.
  Remedies: `per_sample=False`, so that empty crops share the batch's denominator, or
  `CompoundLoss([JaccardJ2Loss(), keras.losses.BinaryCrossentropy()])`, whose
  cross-entropy term punishes every false positive.

Pixel-weighted cross-entropy (the U-Net loss): use Keras' own cross-entropy with a
per-pixel `sample_weight` of shape (batch, height, width), e.g. from
`kfcn.data.unet_weight_map`: Keras' cross-entropies return one value per pixel, the
weight multiplies it, and the mean is taken over all B·H·W pixels. No kfcn class is
needed (see `tests/test_losses.py::test_pixel_weighted_crossentropy`), except on PyTorch
for class-index maps: `SparseCrossEntropy` there (Keras 3.15's fails in the backward).
"""

from __future__ import annotations

import inspect
import math

import keras
from keras import ops

from kfcn.targets import RAW_MASK_FIX, check_ignore_class, examples_of, poison, refuse_or_poison


def _as_channels_last(tensor):
    # A (B, H, W) mask is one channel.
    return tensor[..., None] if len(tensor.shape) == 3 else tensor


def _check_shapes(loss_name, y_true, y_pred):
    true_shape, pred_shape = tuple(y_true.shape), tuple(y_pred.shape)
    mismatch = len(true_shape) != 4 or any(
        a is not None and b is not None and a != b for a, b in zip(true_shape, pred_shape)
    )
    if mismatch:
        hint = ""
        if len(true_shape) == 4 and true_shape[-1] == 1 and pred_shape[-1] not in (1, None):
            hint = " The target looks like class indices: pass sparse_labels=True (or leave it None, automatic)."
        raise ValueError(
            f"{loss_name}: target shape {true_shape} does not match prediction shape "
            f"{pred_shape}; they must be equal (batch, height, width, channels).{hint}"
        )


class _OverlapLoss(keras.losses.Loss):
    """Shared machinery: target checks and encoding, per-sample, per-channel sums over the pixels."""

    def __init__(
        self,
        per_sample=True,
        from_logits=False,
        sparse_labels=None,
        ignore_class=None,
        name=None,
        reduction="sum_over_batch_size",
        dtype=None,
    ):
        super().__init__(name=name or self.default_name, reduction=reduction, dtype=dtype)
        if sparse_labels not in (None, True, False):
            raise ValueError(f"`sparse_labels` must be True, False or None (automatic), got {sparse_labels!r}.")
        self.per_sample = bool(per_sample)
        self.from_logits = bool(from_logits)
        self.sparse_labels = sparse_labels
        self.ignore_class = check_ignore_class(ignore_class)

    def _ratio(self, sums):
        raise NotImplementedError

    def __call__(self, y_true, y_pred, sample_weight=None):
        if sample_weight is not None:
            # A per-pixel weight map weights each sample by its mean, as for a per-pixel loss.
            sample_weight = ops.convert_to_tensor(sample_weight)
            batch, weights = ops.shape(y_pred)[0], ops.shape(sample_weight)[0]
            if isinstance(batch, int) and isinstance(weights, int) and batch != weights:
                raise ValueError(
                    f"{self.name}: sample_weight has shape {tuple(sample_weight.shape)} for a batch of {batch} "
                    "predictions; it needs one weight per sample (batch,) or a map per sample (batch, height, width)."
                )
            if len(sample_weight.shape) > 1:
                sample_weight = ops.mean(ops.reshape(sample_weight, (ops.shape(sample_weight)[0], -1)), axis=1)
        return super().__call__(y_true, y_pred, sample_weight=sample_weight)

    def call(self, y_true, y_pred):
        y_pred = _as_channels_last(ops.convert_to_tensor(y_pred))
        if len(y_pred.shape) != 4:
            raise ValueError(
                f"{self.name} expects predictions of shape (batch, height, width, channels), got {tuple(y_pred.shape)}."
            )
        y_true = _as_channels_last(ops.cast(y_true, y_pred.dtype))
        non_finite = ops.logical_not(ops.all(ops.isfinite(y_pred)) & ops.all(ops.isfinite(y_true)))
        if self.from_logits:
            y_pred = ops.sigmoid(y_pred) if y_pred.shape[-1] == 1 else ops.softmax(y_pred, axis=-1)
        else:
            outside = ops.isfinite(y_pred) & ((y_pred < 0) | (y_pred > 1))
            bad_pred = refuse_or_poison(
                ops.any(outside),
                lambda: (
                    f"{self.name}: predictions must be probabilities in [0, 1], got "
                    f"{examples_of(y_pred, outside)}. For logits (a head without activation) pass from_logits=True."
                ),
            )
            non_finite = non_finite | bad_pred
        y_true, keep, bad_true = self._encode(y_true, y_pred)
        if keep is not None:
            y_pred = y_pred * keep
        axes = (1, 2) if self.per_sample else (0, 1, 2)
        sums = {
            "intersection": ops.sum(y_true * y_pred, axis=axes),
            "true": ops.sum(y_true, axis=axes),
            "pred": ops.sum(y_pred, axis=axes),
            "true_squared": ops.sum(ops.square(y_true), axis=axes),
            "pred_squared": ops.sum(ops.square(y_pred), axis=axes),
        }
        loss = 1.0 - ops.mean(self._ratio(sums), axis=-1)
        if not self.per_sample:
            loss = ops.broadcast_to(loss, ops.shape(y_pred)[:1])
        return poison(loss, non_finite | bad_true)

    def _is_sparse(self, y_true, y_pred):
        if self.sparse_labels is not None:
            return self.sparse_labels
        return y_true.shape[-1] == 1 and y_pred.shape[-1] not in (1, None)

    def _encode(self, y_true, y_pred):
        """Returns the dense target, the kept-pixel mask (or None) and a bad-target flag."""
        if self._is_sparse(y_true, y_pred):
            return self._encode_sparse(y_true, y_pred)
        keep = None
        if self.ignore_class is not None:
            if y_true.shape[-1] != 1:
                raise ValueError(
                    f"{self.name}: ignore_class applies to class-index labels or one-channel masks, but the target "
                    f"has {y_true.shape[-1]} channels. Pass class indices (batch, height, width[, 1]) instead."
                )
            keep = ops.cast(y_true != self.ignore_class, y_true.dtype)
            y_true = y_true * keep
        _check_shapes(self.name, y_true, y_pred)
        outside = ops.isfinite(y_true) & ((y_true < 0) | (y_true > 1))
        bad = refuse_or_poison(
            ops.any(outside),
            lambda: (
                f"{self.name}: targets must be masks or one-hot maps in [0, 1], got "
                f"{examples_of(y_true, outside)}; {RAW_MASK_FIX}. For class indices 0..K-1 pass sparse_labels=True."
            ),
        )
        return y_true, keep, bad

    def _encode_sparse(self, y_true, y_pred):
        channels = y_pred.shape[-1]
        if y_true.shape[-1] != 1 or channels is None:
            raise ValueError(
                f"{self.name}: sparse labels must have shape (batch, height, width) or (batch, height, width, 1) "
                f"and the prediction a known number of channels; got {tuple(y_true.shape)} and {tuple(y_pred.shape)}."
            )
        labels = y_true[..., 0]
        # A single sigmoid channel is the probability of class 1, so its labels are 0 and 1.
        num_labels = max(channels, 2)
        keep = ops.ones_like(labels, dtype="bool") if self.ignore_class is None else labels != self.ignore_class
        known = (labels >= 0) & (labels < num_labels) & (labels == ops.round(labels))
        unknown = keep & ops.logical_not(known) & ops.isfinite(labels)
        ignore_hint = "" if self.ignore_class is not None else " Mark void pixels with ignore_class=<their value>."
        bad = refuse_or_poison(
            ops.any(unknown),
            lambda: (
                f"{self.name}: class-index labels must be whole numbers in [0, {num_labels}) for a prediction "
                f"with {channels} channel(s), got {examples_of(labels, unknown)}; {RAW_MASK_FIX}.{ignore_hint}"
            ),
        )
        keep = keep & known
        index = ops.cast(ops.where(keep, labels, ops.zeros_like(labels)), "int32")
        keep = ops.cast(keep, y_pred.dtype)[..., None]
        one_hot = ops.one_hot(index, num_labels, dtype=y_pred.dtype)[..., num_labels - channels :]
        return one_hot * keep, keep, bad

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "per_sample": self.per_sample,
                "from_logits": self.from_logits,
                "sparse_labels": self.sparse_labels,
                "ignore_class": self.ignore_class,
            }
        )
        return config


_OVERLAP_ARGS = """per_sample: take the ratio per sample (default) or over the whole batch.
        from_logits: the prediction is logits: apply a sigmoid (one channel) or a softmax first.
        sparse_labels: the target is class indices 0..K-1, one-hot encoded inside the loss;
            None (default) decides by shape: one target channel and K > 1 prediction channels.
        ignore_class: target value whose pixels leave every sum (e.g. 11, CamVid's void).
        name, reduction, dtype: as for any `keras.losses.Loss`."""


def _safe_ratio(numerator, denominator):
    # 0/0 (empty target, empty prediction) is a perfect overlap: ratio 1, no NaN
    # in the value or in the gradient (the unused branch divides by 1). A NaN
    # denominator stays NaN: it is not "empty".
    empty = denominator == 0
    safe = ops.where(empty, ops.ones_like(denominator), denominator)
    return ops.where(empty, ops.ones_like(numerator), numerator / safe)


@keras.saving.register_keras_serializable(package="kfcn")
class JaccardLoss(_OverlapLoss):
    """The Jaccard loss j = 1 − Σyŷ / (Σy + Σŷ − Σyŷ).

    Args:
        ARGS

    Example:
    >>> y = keras.ops.ones((1, 2, 2, 1))
    >>> float(JaccardLoss()(y, 0.5 * y))
    0.5
    >>> labels = keras.ops.convert_to_tensor([[[0, 1], [2, 1]]])  # class indices, 3 classes
    >>> float(JaccardLoss()(labels, keras.ops.one_hot(labels, 3)))
    0.0
    """

    default_name = "jaccard_loss"

    def _ratio(self, sums):
        union = sums["true"] + sums["pred"] - sums["intersection"]
        return _safe_ratio(sums["intersection"], union)


@keras.saving.register_keras_serializable(package="kfcn")
class JaccardJ2Loss(_OverlapLoss):
    """The squared-denominator Jaccard loss j2 = 1 − Σyŷ / (Σy² + Σŷ² − Σyŷ + ε).

    The design's headline loss: its denominator is smooth in ŷ, and ε keeps it
    finite when target and prediction are both empty (then j2 = 1, with zero
    gradient: see the module docstring for the remedy).

    Args:
        epsilon: the ε of the formula.
        ARGS

    Example:
    >>> y = keras.ops.ones((1, 2, 2, 1))
    >>> round(float(JaccardJ2Loss(epsilon=0.0)(y, 0.5 * y)), 4)
    0.3333
    """

    default_name = "jaccard_j2_loss"

    def __init__(
        self,
        epsilon=1e-7,
        per_sample=True,
        from_logits=False,
        sparse_labels=None,
        ignore_class=None,
        name=None,
        reduction="sum_over_batch_size",
        dtype=None,
    ):
        super().__init__(per_sample, from_logits, sparse_labels, ignore_class, name, reduction, dtype)
        if not (math.isfinite(epsilon) and epsilon >= 0):
            raise ValueError(f"`epsilon` must be a finite number >= 0, got {epsilon}.")
        self.epsilon = epsilon

    def _ratio(self, sums):
        denominator = sums["true_squared"] + sums["pred_squared"] - sums["intersection"] + self.epsilon
        return _safe_ratio(sums["intersection"], denominator)

    def get_config(self):
        config = super().get_config()
        config["epsilon"] = self.epsilon
        return config


@keras.saving.register_keras_serializable(package="kfcn")
class DiceLoss(_OverlapLoss):
    """The Dice loss d = 1 − 2Σyŷ / (Σy + Σŷ).

    `keras.losses.Dice` flattens the whole batch into one ratio and has no
    per-channel averaging, so kfcn keeps its own, reduced like the Jaccard losses.

    Args:
        ARGS

    Example:
    >>> y = keras.ops.ones((1, 2, 2, 1))
    >>> round(float(DiceLoss()(y, 0.5 * y)), 4)
    0.3333
    >>> round(float(DiceLoss(from_logits=True)(y, keras.ops.zeros((1, 2, 2, 1)))), 4)  # sigmoid(0) = 0.5
    0.3333
    """

    default_name = "dice_loss"

    def _ratio(self, sums):
        return _safe_ratio(2.0 * sums["intersection"], sums["true"] + sums["pred"])


for _loss_class in (JaccardLoss, JaccardJ2Loss, DiceLoss):
    _loss_class.__doc__ = _loss_class.__doc__.replace("ARGS", _OVERLAP_ARGS)


@keras.saving.register_keras_serializable(package="kfcn")
class SparseCrossEntropy(keras.losses.Loss):
    """Cross-entropy of class-index maps against per-pixel class probabilities, on every backend.

    The value and reduction of `keras.losses.SparseCategoricalCrossentropy`: per pixel
    −log p[label] (probabilities renormalised and clipped to [ε, 1 − ε], as Keras does),
    a per-pixel `sample_weight` (batch, height, width) multiplies it, and the mean is taken
    over the pixels whose label is not `ignore_class`. It runs Keras' op on a
    (pixels, classes) matrix: on 4-D maps, Keras 3.15's PyTorch backend moves the class
    axis and its `nll_loss` backward then fails ("grad_input must be contiguous"), so
    `kfcn train` of a multi-class model could not train on PyTorch.

    Args:
        ignore_class: label value whose pixels leave the mean (e.g. 11, CamVid's void).
        name, reduction, dtype: as for any `keras.losses.Loss`.

    Example:
    >>> import numpy as np
    >>> probabilities = np.array([[[[0.5, 0.5], [0.9, 0.1]]]])  # one image of 1x2 pixels, 2 classes
    >>> labels = np.array([[[1, 7]]])  # the second pixel is void
    >>> round(float(SparseCrossEntropy(ignore_class=7)(labels, probabilities)), 4)  # -log(0.5)
    0.6931
    """

    def __init__(self, ignore_class=None, name="sparse_cross_entropy", reduction="sum_over_batch_size", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.ignore_class = check_ignore_class(ignore_class)

    def call(self, y_true, y_pred):
        y_pred = ops.convert_to_tensor(y_pred)
        y_true = ops.convert_to_tensor(y_true)
        if len(y_true.shape) == len(y_pred.shape) and y_true.shape[-1] == 1:
            y_true = y_true[..., 0]
        shape = ops.shape(y_true)
        labels = ops.reshape(y_true, (-1,))
        rows = ops.reshape(y_pred, (-1, y_pred.shape[-1]))
        if self.ignore_class is None:
            return ops.reshape(keras.losses.sparse_categorical_crossentropy(labels, rows), shape)
        valid = labels != ops.cast(self.ignore_class, labels.dtype)
        losses = keras.losses.sparse_categorical_crossentropy(ops.where(valid, labels, ops.zeros_like(labels)), rows)
        # Keras' rule for masked pixels: each valid one counts total / valid, so the mean is over the valid ones.
        total = ops.cast(ops.size(labels), losses.dtype)
        scale = total / (ops.sum(ops.cast(valid, losses.dtype)) + keras.config.epsilon())
        return ops.reshape(ops.where(valid, losses * scale, ops.zeros_like(losses)), shape)

    def get_config(self):
        return super().get_config() | {"ignore_class": self.ignore_class}


@keras.saving.register_keras_serializable(package="kfcn")
class LossFunction(keras.losses.Loss):
    """A plain loss function `fn(y_true, y_pred) -> per-pixel losses` as a reduced Keras loss.

    What `CompoundLoss` turns a function or a function's name into (Keras' own wrapper
    is private). The function must be registered with Keras (or be a Keras loss
    function) for the wrapper to be saved and loaded.

    Args:
        fn: the loss function.
        name, reduction, dtype: as for any `keras.losses.Loss`.

    Example:
    >>> loss = LossFunction(keras.losses.mean_squared_error)
    >>> float(loss(keras.ops.zeros((1, 2)), keras.ops.ones((1, 2))))
    1.0
    """

    def __init__(self, fn, name=None, reduction="sum_over_batch_size", dtype=None):
        super().__init__(name=name or getattr(fn, "__name__", None), reduction=reduction, dtype=dtype)
        self.fn = fn

    def call(self, y_true, y_pred):
        return self.fn(y_true, y_pred)

    def get_config(self):
        config = super().get_config()
        config["fn"] = keras.saving.serialize_keras_object(self.fn)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["fn"] = keras.saving.deserialize_keras_object(config["fn"])
        return cls(**config)


def _as_loss(identifier):
    """A `keras.losses.Loss` from an instance, a Loss class, a Keras name or config, or a function."""
    if isinstance(identifier, keras.losses.Loss):
        return identifier
    if inspect.isclass(identifier) and issubclass(identifier, keras.losses.Loss):
        return identifier()
    if isinstance(identifier, (str, dict)):
        try:
            loss = keras.losses.get(identifier)
        except (ValueError, TypeError) as error:
            raise ValueError(
                f"CompoundLoss cannot interpret the loss {identifier!r} ({error}). Use a Keras loss name such as "
                "'binary_crossentropy', a keras.losses.Loss instance, or a function (y_true, y_pred) -> losses."
            ) from None
        return loss if isinstance(loss, keras.losses.Loss) else LossFunction(loss)
    if callable(identifier):
        return LossFunction(identifier)
    raise TypeError(
        f"CompoundLoss: {identifier!r} is not a loss. Use a Keras loss name such as 'binary_crossentropy', a "
        "keras.losses.Loss instance, or a function (y_true, y_pred) -> losses."
    )


def _check_weights(weights, count):
    if weights is None:
        return [1.0] * count
    weights = list(weights)
    if len(weights) != count:
        raise ValueError(f"CompoundLoss got {count} losses but {len(weights)} weights; give one weight per loss.")
    try:
        weights = [float(w) for w in weights]
    except (TypeError, ValueError):
        raise TypeError(f"CompoundLoss weights must be numbers, got {weights!r}.") from None
    if not all(math.isfinite(w) and w >= 0 for w in weights) or not any(weights):
        raise ValueError(
            f"CompoundLoss weights must be finite and >= 0, at least one of them > 0, got {weights}. "
            "Drop a loss rather than weighting it by 0 alone."
        )
    return weights


@keras.saving.register_keras_serializable(package="kfcn")
class CompoundLoss(keras.losses.Loss):
    """A weighted sum of losses, e.g. j2 plus cross-entropy: Σ wᵢ · lossᵢ(y_true, y_pred, sample_weight).

    Each part is called as the Keras loss it is, with its own reduction and dtype,
    and receives the `sample_weight`: a per-pixel weight map such as the U-Net weight
    map applies to a cross-entropy pixel by pixel, and weights each sample of an
    overlap loss by its mean. The sum is returned as is (the parts are already
    reduced), so `reduction` stays at its default.

    Args:
        losses: list of losses: `keras.losses.Loss` instances, Keras loss names or
            configs (`"binary_crossentropy"`, `"BinaryCrossentropy"`), or functions
            `(y_true, y_pred) -> per-pixel losses`.
        weights: list of finite floats >= 0, one per loss, not all 0 (default: all 1).
        name, dtype: as for any `keras.losses.Loss`; the sum is cast to `dtype`.

    Example:
    >>> loss = CompoundLoss([JaccardJ2Loss(), "binary_crossentropy"], [1.0, 0.5])
    >>> y = keras.ops.ones((1, 2, 2, 1))
    >>> float(loss(y, 0.99 * y)) < 0.05
    True
    """

    def __init__(self, losses, weights=None, name="compound_loss", reduction="sum_over_batch_size", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if self.reduction != "sum_over_batch_size":
            raise ValueError(
                f"CompoundLoss sums its parts' reduced values, so its own reduction={reduction!r} would be "
                "ignored; set the reduction on each part instead."
            )
        if isinstance(losses, (str, dict, keras.losses.Loss)) or not isinstance(losses, (list, tuple)):
            raise TypeError(f"CompoundLoss takes a list of losses, got {losses!r}; wrap a single loss in a list.")
        if not losses:
            raise ValueError("CompoundLoss needs at least one loss.")
        self.losses = [_as_loss(loss) for loss in losses]
        self.weights = _check_weights(weights, len(self.losses))

    def __call__(self, y_true, y_pred, sample_weight=None):
        total = 0.0
        for loss, weight in zip(self.losses, self.weights):
            total = total + weight * ops.cast(loss(y_true, y_pred, sample_weight=sample_weight), self.dtype)
        return total

    def call(self, y_true, y_pred):
        return self(y_true, y_pred)

    def get_config(self):
        config = super().get_config()
        config.update({"losses": [keras.losses.serialize(loss) for loss in self.losses], "weights": self.weights})
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["losses"] = [keras.losses.deserialize(loss) for loss in config["losses"]]
        return cls(**config)
