"""A per-channel scale and offset, with an optional channel reversal: an encoder's preprocessing in the graph."""

from __future__ import annotations

import math

import keras
from keras import ops

from kfcn.layers._checks import require_rank4


def per_channel_values(name, value, owner="ChannelAffine", channels=None):
    """A number or a sequence of finite numbers, as a tuple of floats; `channels` given: a number repeated, and
    a sequence of another length refused. `owner` names the caller in the error.

    Example:
    >>> per_channel_values("scale", 2, channels=3)
    (2.0, 2.0, 2.0)
    """
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    values = (value,) * (channels or 1) if number else value
    count = "one number per channel" if channels is None else f"1 or {channels} numbers"
    try:
        values = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise ValueError(f"{owner}: `{name}` is a number or {count}; got {value!r}.") from None
    if not values or not all(math.isfinite(v) for v in values) or (channels and len(values) != channels):
        raise ValueError(f"{owner}: `{name}` needs finite numbers, {count}; got {value!r}.")
    return values


@keras.saving.register_keras_serializable(package="kfcn")
class ChannelAffine(keras.layers.Layer):
    """`x[..., ::-1] * scale + offset` per channel (reversal optional): fixed preprocessing inside a model.

    kfcn inserts it in front of a pretrained encoder, so the model takes raw pixels and
    applies the encoder family's own normalisation itself (caffe-style BGR means for
    ResNet50 and VGG, [-1, 1] for MobileNetV2, ImageNet mean and std for DenseNet, a
    keras-hub preset's image converter): a served or TFLite file stays raw-pixel. With
    `reverse_channels=True` the channels are reversed first (RGB to BGR), and `scale`
    and `offset` are in the reversed order. Nothing is trained.

    Args:
        scale: a number, or one per channel.
        offset: a number, or one per channel.
        reverse_channels: reverse the channel axis before scaling.

    Input shape:
        `(batch, height, width, channels)`.

    Output shape:
        the same, float.

    Example:
    >>> layer = ChannelAffine(scale=[1.0, 2.0], offset=[0.0, -1.0], reverse_channels=True)
    >>> keras.ops.convert_to_numpy(layer(keras.ops.ones((1, 1, 1, 2)) * [[[[3.0, 5.0]]]]))[0, 0, 0]
    array([5., 5.], dtype=float32)
    """

    def __init__(self, scale=1.0, offset=0.0, reverse_channels=False, **kwargs):
        super().__init__(**kwargs)
        self.scale = per_channel_values("scale", scale)
        self.offset = per_channel_values("offset", offset)
        self.reverse_channels = bool(reverse_channels)

    def _check_channels(self, channels):
        for name, values in (("scale", self.scale), ("offset", self.offset)):
            if len(values) not in (1, channels) and channels is not None:
                raise ValueError(
                    f"{self.name}: `{name}` has {len(values)} values for an input of {channels} channels; give one "
                    "number, or one per channel."
                )

    def build(self, input_shape):
        require_rank4(input_shape, self.name)
        self._check_channels(input_shape[-1])

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def call(self, inputs):
        x = ops.cast(inputs, self.compute_dtype)
        if self.reverse_channels:
            x = ops.flip(x, axis=-1)
        scale = ops.convert_to_tensor(self.scale, dtype=self.compute_dtype)
        offset = ops.convert_to_tensor(self.offset, dtype=self.compute_dtype)
        return x * scale + offset

    def get_config(self):
        return {
            **super().get_config(),
            "scale": list(self.scale),
            "offset": list(self.offset),
            "reverse_channels": self.reverse_channels,
        }
