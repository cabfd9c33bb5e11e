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
(nnU-Net's "batch Dice"), which is the remedy for empty targets below.

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
needed (see `tests/test_losses.py::test_pixel_weighted_crossentropy`).
"""

from __future__ import annotations

import keras
from keras import ops


def _as_channels_last(tensor):
    # A (B, H, W) mask is one channel.
    return tensor[..., None] if len(tensor.shape) == 3 else tensor


def _check_shapes(loss_name, y_true, y_pred):
    true_shape, pred_shape = tuple(y_true.shape), tuple(y_pred.shape)
    if len(pred_shape) != 4:
        raise ValueError(
            f"{loss_name} expects predictions of shape (batch, height, width, channels), got {pred_shape}."
        )
    mismatch = len(true_shape) != 4 or any(
        a is not None and b is not None and a != b for a, b in zip(true_shape, pred_shape)
    )
    if mismatch:
        hint = ""
        if len(true_shape) == 4 and true_shape[-1] == 1 and pred_shape[-1] not in (1, None):
            hint = (
                " The target looks like class indices: one-hot encode it "
                f"(keras.ops.one_hot(labels[..., 0], {pred_shape[-1]})) or use "
                "keras.losses.SparseCategoricalCrossentropy."
            )
        raise ValueError(
            f"{loss_name}: target shape {true_shape} does not match prediction shape "
            f"{pred_shape}; they must be equal (batch, height, width, channels).{hint}"
        )


class _OverlapLoss(keras.losses.Loss):
    """Shared machinery: per-sample, per-channel sums over the pixels."""

    def __init__(self, per_sample=True, name=None, reduction="sum_over_batch_size", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.per_sample = per_sample

    def _ratio(self, sums):
        raise NotImplementedError

    def call(self, y_true, y_pred):
        y_pred = _as_channels_last(ops.convert_to_tensor(y_pred))
        y_true = _as_channels_last(ops.cast(y_true, y_pred.dtype))
        _check_shapes(self.name, y_true, y_pred)
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
        return loss

    def get_config(self):
        config = super().get_config()
        config["per_sample"] = self.per_sample
        return config


def _safe_ratio(numerator, denominator):
    # 0/0 (empty target, empty prediction) is a perfect overlap: ratio 1, no NaN
    # in the value or in the gradient (the unused branch divides by 1).
    positive = denominator > 0
    safe = ops.where(positive, denominator, ops.ones_like(denominator))
    return ops.where(positive, numerator / safe, ops.ones_like(numerator))


@keras.saving.register_keras_serializable(package="kfcn")
class JaccardLoss(_OverlapLoss):
    """The Jaccard loss j = 1 − Σyŷ / (Σy + Σŷ − Σyŷ).

    Args:
        per_sample: take the ratio per sample (default) or over the whole batch.
        name, reduction, dtype: as for any `keras.losses.Loss`.

    Example:
    >>> y = keras.ops.ones((1, 2, 2, 1))
    >>> float(JaccardLoss()(y, 0.5 * y))
    0.5
    """

    def __init__(self, per_sample=True, name="jaccard_loss", reduction="sum_over_batch_size", dtype=None):
        super().__init__(per_sample=per_sample, name=name, reduction=reduction, dtype=dtype)

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
        per_sample: take the ratio per sample (default) or over the whole batch.
        name, reduction, dtype: as for any `keras.losses.Loss`.

    Example:
    >>> y = keras.ops.ones((1, 2, 2, 1))
    >>> round(float(JaccardJ2Loss(epsilon=0.0)(y, 0.5 * y)), 4)
    0.3333
    """

    def __init__(
        self, epsilon=1e-7, per_sample=True, name="jaccard_j2_loss", reduction="sum_over_batch_size", dtype=None
    ):
        super().__init__(per_sample=per_sample, name=name, reduction=reduction, dtype=dtype)
        if epsilon < 0:
            raise ValueError(f"`epsilon` must be >= 0, got {epsilon}.")
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
        per_sample: take the ratio per sample (default) or over the whole batch.
        name, reduction, dtype: as for any `keras.losses.Loss`.

    Example:
    >>> y = keras.ops.ones((1, 2, 2, 1))
    >>> round(float(DiceLoss()(y, 0.5 * y)), 4)
    0.3333
    """

    def __init__(self, per_sample=True, name="dice_loss", reduction="sum_over_batch_size", dtype=None):
        super().__init__(per_sample=per_sample, name=name, reduction=reduction, dtype=dtype)

    def _ratio(self, sums):
        return _safe_ratio(2.0 * sums["intersection"], sums["true"] + sums["pred"])


@keras.saving.register_keras_serializable(package="kfcn")
class CompoundLoss(keras.losses.Loss):
    """A weighted sum of losses, e.g. j2 plus cross-entropy.

    Per-pixel parts (Keras' cross-entropies) stay per pixel and per-image parts
    (kfcn's overlap losses) are spread evenly over the pixels, so the reduced loss is
    the weighted sum of the parts' means, and a per-pixel `sample_weight` such as the
    U-Net weight map applies to the cross-entropy pixel by pixel.

    Args:
        losses: list of `keras.losses.Loss` instances.
        weights: list of floats, one per loss (default: all 1).

    Example:
    >>> loss = CompoundLoss([JaccardJ2Loss(), keras.losses.BinaryCrossentropy()], [1.0, 0.5])
    >>> y = keras.ops.ones((1, 2, 2, 1))
    >>> float(loss(y, 0.99 * y)) < 0.05
    True
    """

    def __init__(self, losses, weights=None, name="compound_loss", reduction="sum_over_batch_size", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.losses = [keras.losses.get(loss) if isinstance(loss, dict) else loss for loss in losses]
        self.weights = [1.0] * len(self.losses) if weights is None else [float(w) for w in weights]
        if len(self.weights) != len(self.losses):
            raise ValueError(f"Got {len(self.losses)} losses but {len(self.weights)} weights.")

    def call(self, y_true, y_pred):
        parts = [weight * loss.call(y_true, y_pred) for loss, weight in zip(self.losses, self.weights)]
        rank = max(len(part.shape) for part in parts)
        total = 0.0
        for part in parts:
            # A per-sample value (B,) spreads over the pixels as (B, 1, 1): the mean is
            # unchanged, and a per-pixel sample_weight (B, H, W) still applies to every part.
            total = total + ops.reshape(part, tuple(ops.shape(part)) + (1,) * (rank - len(part.shape)))
        return total

    def get_config(self):
        config = super().get_config()
        config.update({"losses": [keras.losses.serialize(loss) for loss in self.losses], "weights": self.weights})
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["losses"] = [keras.losses.deserialize(loss) for loss in config["losses"]]
        return cls(**config)
