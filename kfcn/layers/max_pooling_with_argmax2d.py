"""Max pooling that also returns where each maximum came from."""

from __future__ import annotations

import keras
from keras import ops

from kfcn.arguments import normalize_pair
from kfcn.layers._checks import require_rank4


@keras.saving.register_keras_serializable(package="kfcn")
class MaxPoolingWithArgmax2D(keras.layers.Layer):
    """Non-overlapping 2-D max pooling that returns the pooled map and the argmax indices.

    The indices follow `tf.nn.max_pool_with_argmax(..., include_batch_in_index=False)`:
    for a maximum found at row `y`, column `x` and channel `c` of one sample of the
    input, whose width is `W` and channel count `C`, the index is `(y * W + x) * C + c`.
    They are int32 and exact for every map of fewer than 2**31 elements per sample.
    When several values of a window tie for the maximum, the first one in row-major
    order wins, as in TensorFlow's kernel.

    The layer is written with `keras.ops` only (strided slices, `maximum`, `where`), so
    it runs on every backend and converts to builtin TFLite ops (no Flex op).
    `kfcn.layers.MaxUnpooling2D` puts the values back at these indices.

    Args:
        pool_size: int or pair, the window; the stride equals the window.
        padding: `"valid"` drops the last rows/columns that do not fill a window
            (45 -> 22, as SegNet does on CamVid's 360x480); `"same"` pads the
            bottom/right so that every pixel belongs to a window (45 -> 23).

    Input shape:
        `(batch, height, width, channels)`.

    Output shape:
        Two tensors of shape `(batch, height // p, width // p, channels)` (`ceil` for
        `"same"`): the pooled values (input dtype) and the indices (int32).

    Example:
    >>> x = keras.random.normal((1, 4, 4, 3))
    >>> pooled, indices = MaxPoolingWithArgmax2D(pool_size=2)(x)
    >>> tuple(pooled.shape), keras.backend.standardize_dtype(indices.dtype)
    ((1, 2, 2, 3), 'int32')
    """

    def __init__(self, pool_size=2, padding: str = "valid", **kwargs):
        super().__init__(**kwargs)
        self.pool_size = normalize_pair("pool_size", pool_size)
        if padding not in ("valid", "same"):
            raise ValueError(f"`padding` must be 'valid' or 'same', got {padding!r}.")
        self.padding = padding

    def _pooled_size(self, size, pool):
        if size is None:
            return None
        return size // pool if self.padding == "valid" else -(-size // pool)

    def compute_output_shape(self, input_shape):
        require_rank4(input_shape, self.name)
        batch, height, width, channels = input_shape
        shape = (
            batch,
            self._pooled_size(height, self.pool_size[0]),
            self._pooled_size(width, self.pool_size[1]),
            channels,
        )
        return shape, shape

    def compute_output_spec(self, inputs):
        shape, _ = self.compute_output_shape(inputs.shape)
        return (
            keras.KerasTensor(shape, dtype=inputs.dtype),
            keras.KerasTensor(shape, dtype="int32"),
        )

    def call(self, inputs):
        require_rank4(inputs.shape, self.name)
        pool_h, pool_w = self.pool_size
        shape = ops.shape(inputs)
        width, channels = shape[2], shape[3]
        out_h = self._pooled_size(shape[1], pool_h)
        out_w = self._pooled_size(shape[2], pool_w)
        if self.padding == "same":
            lowest = ops.convert_to_tensor(float("-inf"), inputs.dtype)
            inputs = ops.pad(
                inputs,
                [[0, 0], [0, out_h * pool_h - shape[1]], [0, out_w * pool_w - shape[2]], [0, 0]],
                constant_values=lowest,
            )
        else:
            inputs = inputs[:, : out_h * pool_h, : out_w * pool_w, :]

        # Scan the p*p window offsets in row-major order; a strict `>` keeps the
        # first maximum on ties. Each offset is one strided slice: a plain TFLite op.
        best_value, best_offset = None, None
        for dy in range(pool_h):
            for dx in range(pool_w):
                value = inputs[:, dy::pool_h, dx::pool_w, :]
                offset = (dy * width + dx) * channels
                if best_value is None:
                    best_value = value
                    best_offset = ops.zeros_like(value, dtype="int32") + ops.cast(offset, "int32")
                    continue
                better = ops.greater(value, best_value)
                best_value = ops.where(better, value, best_value)
                best_offset = ops.where(better, ops.cast(offset, "int32"), best_offset)

        rows = ops.arange(0, out_h, dtype="int32") * pool_h
        cols = ops.arange(0, out_w, dtype="int32") * pool_w
        chans = ops.arange(0, channels, dtype="int32")
        window_origin = (
            rows[:, None, None] * ops.cast(width * channels, "int32")
            + cols[None, :, None] * ops.cast(channels, "int32")
            + chans[None, None, :]
        )
        return best_value, best_offset + window_origin[None]

    def get_config(self):
        config = super().get_config()
        config.update({"pool_size": self.pool_size, "padding": self.padding})
        return config
