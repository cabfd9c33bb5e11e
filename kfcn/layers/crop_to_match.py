"""Centre crop to another tensor's spatial size (the valid U-Net's skip crop)."""

from __future__ import annotations

import keras
from keras import ops

from kfcn.layers._checks import require_rank4


@keras.saving.register_keras_serializable(package="kfcn")
class CropToMatch(keras.layers.Layer):
    """Crops `x` about its centre to the height and width of `reference`.

    The valid-padding U-Net (Ronneberger 2015) crops each encoder feature map
    before concatenating it with the smaller upsampled decoder map. Unlike
    `keras.layers.Cropping2D`, the crop is taken from the reference at run time, so
    one model serves every input size. An odd difference puts the extra pixel on the
    bottom/right.

    Input shape:
        `[x, reference]`, both `(batch, height, width, channels)`, `x` at least as
        large as `reference`.

    Output shape:
        `(batch, reference_height, reference_width, x_channels)`.

    Example:
    >>> x, ref = keras.ops.ones((1, 64, 64, 8)), keras.ops.ones((1, 56, 56, 4))
    >>> tuple(CropToMatch()([x, ref]).shape)
    (1, 56, 56, 8)
    """

    def compute_output_shape(self, input_shape):
        x_shape, ref_shape = input_shape
        require_rank4(x_shape, self.name, "input")
        require_rank4(ref_shape, self.name, "reference")
        for axis in (1, 2):
            if None not in (x_shape[axis], ref_shape[axis]) and x_shape[axis] < ref_shape[axis]:
                raise ValueError(
                    f"{self.name}: cannot crop a map of size {x_shape[1:3]} to the larger "
                    f"reference size {ref_shape[1:3]}."
                )
        return (x_shape[0], ref_shape[1], ref_shape[2], x_shape[3])

    def call(self, inputs):
        x, reference = inputs
        self.compute_output_shape([x.shape, reference.shape])
        x_shape, ref_shape = ops.shape(x), ops.shape(reference)
        top = (x_shape[1] - ref_shape[1]) // 2
        left = (x_shape[2] - ref_shape[2]) // 2
        return x[:, top : top + ref_shape[1], left : left + ref_shape[2], :]
