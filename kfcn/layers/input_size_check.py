"""Checks, at trace time, that an image size is one the model's strides can take."""

from __future__ import annotations

import keras

from kfcn.layers._checks import require_rank4


def size_problem(size, multiple, offset=0, minimum=1):
    """Why an input side `size` does not fit, or None when it does.

    The accepted sides are `minimum`, `minimum + multiple`, ... with
    `minimum % multiple == offset % multiple`: multiples of the total stride for
    "same" models (offset 0), `124 + 16k` for a valid-padding U-Net of depth 4.

    Example:
    >>> size_problem(96, 16) is None
    True
    >>> size_problem(100, 16)
    "is not a multiple of 16, the model's total stride; the nearest sizes that fit are 96 and 112"
    """
    minimum = max(int(minimum), 1)
    if size < minimum:
        return f"is too small for this depth: the model needs at least {minimum} pixels"
    if (size - offset) % multiple == 0:
        return None
    below = size - (size - offset) % multiple
    above = below + multiple
    nearest = f"{below} and {above}" if below >= minimum else f"{above}"
    if offset % multiple == 0:
        return f"is not a multiple of {multiple}, the model's total stride; the nearest sizes that fit are {nearest}"
    return f"is not one the model takes ({minimum} + a multiple of {multiple}); the nearest that fit are {nearest}"


@keras.saving.register_keras_serializable(package="kfcn")
class InputSizeCheck(keras.layers.Layer):
    """Passes images through unchanged, refusing sizes the model's strides cannot take.

    Placed right after a model's image input, it turns the backend's shape error deep
    inside a `Concatenate` into a message that names the accepted sizes and the
    nearest ones. The check runs whenever the height and width are known when the
    model is traced or called (eager calls, `model.predict` with NumPy batches);
    with fully dynamic shapes it does nothing. Lowers to no op at all in TFLite.

    Args:
        multiple: the total stride: accepted sides differ by multiples of it.
        offset: accepted sides are `offset` modulo `multiple` (0 for "same" models).
        minimum: the smallest accepted side.
        model_name: named in the message.

    Example:
    >>> check = InputSizeCheck(multiple=16, model_name="unet")
    >>> tuple(check(keras.ops.zeros((1, 32, 48, 1))).shape)
    (1, 32, 48, 1)
    >>> check.check((1, 30, 48, 1))  # what a call on a 30x48 image raises  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: unet: input height 30 is not a multiple of 16, the model's total stride; the nearest sizes ...
    """

    def __init__(self, multiple=1, offset=0, minimum=1, model_name="model", **kwargs):
        super().__init__(**kwargs)
        self.multiple = int(multiple)
        self.offset = int(offset)
        self.minimum = int(minimum)
        self.model_name = model_name

    def check(self, shape):
        require_rank4(shape, self.name)
        for axis, size in zip(("height", "width"), shape[1:3]):
            if size is None:
                continue
            problem = size_problem(int(size), self.multiple, self.offset, self.minimum)
            if problem:
                raise ValueError(
                    f"{self.model_name}: input {axis} {size} {problem}. Crop or pad the image, or predict "
                    "through kfcn.inference.predict / predict_tiled, which pad any size automatically."
                )

    def compute_output_shape(self, input_shape):
        self.check(input_shape)
        return input_shape

    def call(self, inputs):
        self.check(tuple(inputs.shape))
        return inputs

    def get_config(self):
        return {
            **super().get_config(),
            "multiple": self.multiple,
            "offset": self.offset,
            "minimum": self.minimum,
            "model_name": self.model_name,
        }
