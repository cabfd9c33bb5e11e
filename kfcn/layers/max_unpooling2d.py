"""Unpooling with the indices recorded by `MaxPoolingWithArgmax2D` (SegNet's decoder)."""

from __future__ import annotations

import keras
from keras import ops

from kfcn.arguments import normalize_pair
from kfcn.layers._checks import require_rank4


@keras.saving.register_keras_serializable(package="kfcn")
class MaxUnpooling2D(keras.layers.Layer):
    """Puts every pooled value back where its maximum came from, zeros elsewhere.

    Called on `[pooled, indices]` or `[pooled, indices, reference]`, where `indices`
    come from `MaxPoolingWithArgmax2D` with the same `pool_size` (flat index
    `(y * W + x) * C + c` within one sample). The output has the spatial size of
    `reference` (typically the tensor that was pooled), which is how sizes that were
    odd before pooling come back exactly (CamVid: 45 -> 22 -> 45). Without a reference
    the output is `pool_size` times the input, or `output_size` when given.

    The computation is local, not a scatter: each window offset `(dy, dx)` is
    selected by comparing the decoded index with it, and the `p*p` planes are
    interleaved by stacking and reshaping. It needs only builtin TFLite ops, its
    gradient is exact on every backend, and indices stay int32 throughout.

    Args:
        pool_size: int or pair, the window used for pooling.
        output_size: optional static `(height, width)` of the output, for use
            without a reference tensor.

    Input shape:
        `pooled`, `indices`: `(batch, h, w, channels)`, indices of an integer dtype;
        `reference` (optional): `(batch, height, width, any)`.

    Output shape:
        `(batch, height, width, channels)`.

    Example:
    >>> from kfcn.layers import MaxPoolingWithArgmax2D
    >>> x = keras.random.normal((1, 5, 5, 2))
    >>> pooled, indices = MaxPoolingWithArgmax2D(2)(x)
    >>> tuple(MaxUnpooling2D(2)([pooled, indices, x]).shape)
    (1, 5, 5, 2)
    """

    def __init__(self, pool_size=2, output_size=None, **kwargs):
        super().__init__(**kwargs)
        self.pool_size = normalize_pair("pool_size", pool_size)
        self.output_size = None if output_size is None else normalize_pair("output_size", output_size)

    def _check_inputs(self, shapes, dtypes=None):
        if not isinstance(shapes, (list, tuple)) or len(shapes) not in (2, 3):
            raise ValueError(
                f"{self.name} is called on [pooled, indices] or [pooled, indices, reference]; "
                f"got {len(shapes) if isinstance(shapes, (list, tuple)) else 'a single'} input(s)."
            )
        for what, shape in zip(("pooled input", "indices", "reference"), shapes):
            require_rank4(shape, self.name, what)
        pooled_shape, indices_shape = tuple(shapes[0]), tuple(shapes[1])
        if any(a is not None and b is not None and a != b for a, b in zip(pooled_shape, indices_shape)):
            raise ValueError(
                f"{self.name}: indices of shape {indices_shape} do not match the pooled input "
                f"of shape {pooled_shape}. Pass the indices returned with this very tensor by "
                "MaxPoolingWithArgmax2D."
            )
        if len(shapes) == 3:
            reference_shape = tuple(shapes[2])
            for axis, name in ((1, "height"), (2, "width")):
                pooled, size, pool = pooled_shape[axis], reference_shape[axis], self.pool_size[axis - 1]
                if None not in (pooled, size) and pooled not in (size // pool, -(-size // pool)):
                    raise ValueError(
                        f"{self.name}: the reference's {name} {size} is not the size the indices were pooled from "
                        f"(pooling by {pool} gives {pooled}, so the reference must be {pooled * pool - pool + 1}"
                        f" to {pooled * pool + pool - 1}). Pass the tensor that was fed to the pooling layer."
                    )
        if dtypes is not None and "int" not in str(dtypes[1]):
            raise TypeError(
                f"{self.name}: indices must have an integer dtype (int32 from "
                f"MaxPoolingWithArgmax2D), got {dtypes[1]}. Float indices lose exactness "
                "above 2**24 positions; do not cast them."
            )

    def compute_output_shape(self, input_shape):
        self._check_inputs(input_shape)
        batch, height, width, channels = input_shape[0]
        if len(input_shape) == 3:
            height, width = input_shape[2][1], input_shape[2][2]
        elif self.output_size is not None:
            height, width = self.output_size
        else:
            height = None if height is None else height * self.pool_size[0]
            width = None if width is None else width * self.pool_size[1]
        return (batch, height, width, channels)

    def compute_output_spec(self, inputs):
        self._check_inputs([t.shape for t in inputs], [t.dtype for t in inputs])
        shape = self.compute_output_shape([t.shape for t in inputs])
        return keras.KerasTensor(shape, dtype=inputs[0].dtype)

    def call(self, inputs):
        self._check_inputs([tuple(t.shape) for t in inputs], [keras.backend.standardize_dtype(t.dtype) for t in inputs])
        pooled, indices = inputs[0], ops.cast(inputs[1], "int32")
        pool_h, pool_w = self.pool_size
        shape = ops.shape(pooled)
        pooled_h, pooled_w, channels = shape[1], shape[2], shape[3]
        if len(inputs) == 3:
            ref_shape = ops.shape(inputs[2])
            height, width = ref_shape[1], ref_shape[2]
        elif self.output_size is not None:
            height, width = self.output_size
        else:
            height, width = pooled_h * pool_h, pooled_w * pool_w

        # Decode the window offset of every maximum: windows start at multiples of p.
        position = indices // ops.cast(channels, "int32")
        row_in_window = (position // ops.cast(width, "int32")) % pool_h
        col_in_window = (position % ops.cast(width, "int32")) % pool_w
        zeros = ops.zeros_like(pooled)

        rows = []
        for dy in range(pool_h):
            planes = [ops.where((row_in_window == dy) & (col_in_window == dx), pooled, zeros) for dx in range(pool_w)]
            # (B, h, w, pw, C) -> (B, h, w*pw, C): column ox*pw + dx.
            rows.append(ops.reshape(ops.stack(planes, axis=3), (-1, pooled_h, pooled_w * pool_w, channels)))
        # (B, h, ph, W', C) -> (B, h*ph, W', C): row oy*ph + dy.
        unpooled = ops.reshape(ops.stack(rows, axis=2), (-1, pooled_h * pool_h, pooled_w * pool_w, channels))

        # Back to the pre-pooling size: crop what 'same' pooling padded, pad what
        # 'valid' pooling dropped (those positions never held a maximum).
        unpooled = unpooled[:, :height, :width, :]
        pad_h = _non_negative(height - pooled_h * pool_h)
        pad_w = _non_negative(width - pooled_w * pool_w)
        unpooled = ops.pad(unpooled, [[0, 0], [0, pad_h], [0, pad_w], [0, 0]])
        # A pad by computed widths loses the static channel count in TensorFlow's shape
        # inference; TFLite's builtin convolutions need it back.
        return ops.reshape(unpooled, (-1, height, width, channels))

    def get_config(self):
        config = super().get_config()
        config.update({"pool_size": self.pool_size, "output_size": self.output_size})
        return config


def _non_negative(value):
    # Static sizes stay Python ints (JAX needs concrete pad widths under jit).
    return max(value, 0) if isinstance(value, int) else ops.maximum(value, 0)
