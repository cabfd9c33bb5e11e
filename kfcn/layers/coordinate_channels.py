"""Pixel-coordinate channels: position information for translation-equivariant nets."""

from __future__ import annotations

import keras
from keras import ops

from kfcn.layers._checks import require_rank4

FRAME_INPUT_NAME = "coordinate_frame"


@keras.saving.register_keras_serializable(package="kfcn")
class CoordinateChannels(keras.layers.Layer):
    """Appends two channels holding each pixel's row and column, scaled to [-1, 1].

    A convolutional network is translation-equivariant and so cannot know where a
    pixel lies in the image; these channels give it that position information
    (Liu et al. 2018, "CoordConv"). Called on `x` alone, coordinates are relative to
    `x`: row `i` of `H` rows maps to `2 * i / (H - 1) - 1`.

    Called on `[x, frame]`, coordinates are global: `frame` has shape `(batch, 4)` and
    holds, per sample, `(top, left, full_height, full_width)` of the crop or tile `x`
    inside the full image, so row `i` maps to `2 * (top + i) / (full_height - 1) - 1`.
    This makes a crop see the same coordinates as the whole image does, so training
    on random crops and tiled prediction agree with whole-image prediction.
    `whole_image_frame` builds the frame for uncropped images.

    Input shape:
        `(batch, height, width, channels)`, optionally with `frame` `(batch, 4)`.

    Output shape:
        `(batch, height, width, channels + 2)`; the new channels are (row, column).

    Example:
    >>> x = keras.ops.zeros((2, 3, 5, 1))
    >>> y = CoordinateChannels()(x)
    >>> [float(v) for v in keras.ops.convert_to_numpy(y[0, :, 0, 1])]
    [-1.0, 0.0, 1.0]
    """

    def compute_output_shape(self, input_shape):
        image_shape = (
            input_shape[0]
            if isinstance(input_shape, (list, tuple)) and isinstance(input_shape[0], (list, tuple))
            else input_shape
        )
        require_rank4(image_shape, self.name)
        channels = None if image_shape[3] is None else image_shape[3] + 2
        return (*image_shape[:3], channels)

    def call(self, inputs):
        if isinstance(inputs, (list, tuple)):
            images, frame = inputs
        else:
            images, frame = inputs, None
        require_rank4(images.shape, self.name)
        shape = ops.shape(images)
        batch, height, width = shape[0], shape[1], shape[2]
        rows = ops.cast(ops.arange(0, height), self.compute_dtype)
        cols = ops.cast(ops.arange(0, width), self.compute_dtype)
        if frame is None:
            frame = whole_image_frame(batch, height, width, dtype=self.compute_dtype)
        frame = ops.cast(frame, self.compute_dtype)
        top, left, full_h, full_w = (frame[:, i][:, None] for i in range(4))
        # max(size - 1, 1) keeps a one-pixel image finite (its coordinate is -1).
        row_coord = 2.0 * (rows[None, :] + top) / ops.maximum(full_h - 1.0, 1.0) - 1.0
        col_coord = 2.0 * (cols[None, :] + left) / ops.maximum(full_w - 1.0, 1.0) - 1.0
        row_channel = ops.broadcast_to(row_coord[:, :, None, None], (batch, height, width, 1))
        col_channel = ops.broadcast_to(col_coord[:, None, :, None], (batch, height, width, 1))
        return ops.concatenate(
            [images, ops.cast(row_channel, images.dtype), ops.cast(col_channel, images.dtype)], axis=-1
        )


def whole_image_frame(batch_size, height, width, top=0, left=0, dtype="float32"):
    """The `(batch, 4)` frame `(top, left, full_height, full_width)` for `CoordinateChannels`.

    Args:
        batch_size: number of samples.
        height, width: size of the full image.
        top, left: where the crop starts in the full image (0 for the whole image).
        dtype: dtype of the returned tensor.

    Example:
    >>> keras.ops.convert_to_numpy(whole_image_frame(1, 512, 256, top=64)).tolist()
    [[64.0, 0.0, 512.0, 256.0]]
    """
    row = ops.cast(ops.stack([top, left, height, width]), dtype)
    return ops.broadcast_to(row[None, :], (batch_size, 4))
