"""Weight initialisers for kfcn models."""

from __future__ import annotations

import keras
import numpy as np


@keras.saving.register_keras_serializable(package="kfcn")
class BilinearUpsampling(keras.initializers.Initializer):
    """Initialises a `Conv2DTranspose` kernel to bilinear interpolation, channel by channel.

    For a kernel of shape `(k, k, out_channels, in_channels)` with stride `k // 2`,
    output channel `c` interpolates input channel `c` (FCN, Long 2015); other pairs are 0.

    Example:
    >>> kernel = BilinearUpsampling()((4, 4, 1, 1))
    >>> weights = keras.ops.convert_to_numpy(kernel)[:, :, 0, 0]  # outer(v, v)
    >>> [round(float(v), 2) for v in weights[1] / weights[1, 1]]
    [0.33, 1.0, 1.0, 0.33]
    """

    def __call__(self, shape, dtype=None):
        height, width, out_channels, in_channels = shape
        kernel_1d = [_bilinear_1d(height), _bilinear_1d(width)]
        weights = np.zeros(shape, dtype="float32")
        for channel in range(min(out_channels, in_channels)):
            weights[:, :, channel, channel] = np.outer(*kernel_1d)
        return keras.ops.convert_to_tensor(weights, dtype=dtype or "float32")


def _bilinear_1d(size):
    factor = (size + 1) // 2
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    return 1 - np.abs(np.arange(size) - center) / factor
