"""Shape rules shared by kfcn's NumPy helpers."""

from __future__ import annotations

import numpy as np


def one_channel(array, what, dtype=None):
    """`array` as (H, W): an (H, W, 1) array loses its channel axis, any other shape is refused.

    Args:
        array: an array-like, (H, W) or (H, W, 1).
        what: how the error names it, e.g. "unet_weight_map: the label map".
        dtype: convert to this dtype (None keeps the array's).

    Raises:
        ValueError: `"{what} must be (H, W) or (H, W, 1); got shape ..."`.

    Example:
    >>> one_channel(np.zeros((2, 3, 1)), "The mask").shape
    (2, 3)
    """
    array = np.asarray(array, dtype=dtype)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 2:
        raise ValueError(f"{what} must be (H, W) or (H, W, 1); got shape {array.shape}.")
    return array
