"""The largest tile that fits a memory budget: fewer, larger tiles waste less work on overlap."""

from __future__ import annotations

import math
import weakref

import numpy as np

_bytes_per_pixel = weakref.WeakKeyDictionary()
DEFAULT_BUDGET = 4 * 2**30
# A forward pass frees most outputs as it goes: the peak memory of a U-Net (filters 32, depth 4)
# on TensorFlow/CPU grew by 22-23 % of the summed layer outputs at 512^2 and 1024^2 (measured
# with the process's peak RSS); the estimate takes 25 %.
PEAK_FRACTION = 0.25


def activation_bytes_per_pixel(model, itemsize=4):
    """Bytes of every layer's output per input pixel, summed over layers: an upper bound on what
    one forward pass holds at once (frameworks free most of it as they go).

    Example:
    >>> from kfcn.models import plain_cnn
    >>> activation_bytes_per_pixel(plain_cnn((None, None, 1), num_layers=2, filters=8), itemsize=1)
    20.0
    """
    if model in _bytes_per_pixel and itemsize == 4:
        return _bytes_per_pixel[model]
    from kfcn.analysis import receptive_field
    from kfcn.inference.geometry import model_geometry

    geometry = model_geometry(model)
    wanted = max(64, 4 * geometry.multiple + 2 * geometry.margin)
    probe = [geometry.input_size[axis] or geometry.valid_input_size(model, wanted, axis) for axis in (0, 1)]
    total = 0.0
    for layer in receptive_field(model, input_size=tuple(probe)).layers:
        if len(layer.output_shape) == 3 and all(side is not None for side in layer.output_shape):
            total += float(np.prod(layer.output_shape))
    value = total / (probe[0] * probe[1]) * itemsize
    if itemsize == 4:
        _bytes_per_pixel[model] = value
    return value


def auto_tile_size(model, image_shape, memory_budget=DEFAULT_BUDGET, batch_size=1):
    """The input tile side for `predict_tiled(tile_size="auto")`: the largest the model takes whose
    estimated peak activation memory (`PEAK_FRACTION` of `activation_bytes_per_pixel`, times
    `batch_size`) fits `memory_budget` bytes; None when the whole image fits (then one call,
    `predict`, is both exact and cheapest). A model built for one input size gets its own
    size, `(height, width)`, when the image is larger.

    Example:
    >>> from kfcn.models import unet
    >>> model = unet((None, None, 1), num_classes=1, filters=4, depth=2)
    >>> auto_tile_size(model, (100, 100)) is None                         # small: one call
    True
    >>> auto_tile_size(model, (4096, 4096), memory_budget=2**26) % 4   # a size the model takes
    0
    """
    from kfcn.inference.geometry import model_geometry

    if not memory_budget > 0:
        raise ValueError(f"`memory_budget` is in bytes and must be positive; got {memory_budget!r}.")
    per_pixel = PEAK_FRACTION * activation_bytes_per_pixel(model) * batch_size
    geometry = model_geometry(model)
    height, width = image_shape[:2]
    fixed = geometry.input_size
    # A model built for one size takes tiles of that size: the whole image in one call only when it fits.
    too_large = any(side is not None and given + 2 * geometry.margin > side for side, given in zip(fixed, image_shape))
    if None not in fixed:
        return tuple(fixed) if too_large else None
    axis = fixed.index(None)  # the side to choose (both, unless one is fixed)
    whole = [
        side or geometry.valid_input_size(model, given + 2 * geometry.margin, a)
        for a, (side, given) in enumerate(zip(fixed, (height, width)))
    ]
    if not too_large and whole[0] * whole[1] * per_pixel / batch_size <= memory_budget:
        return None
    side = int(math.sqrt(memory_budget / per_pixel))
    candidate = geometry.valid_input_size(model, max(1, side - geometry.multiple - 2 * geometry.margin), axis)
    while candidate > side and candidate > geometry.multiple:
        candidate = geometry.valid_input_size(model, max(1, candidate - 2 * geometry.multiple), axis)
        if candidate > side:
            candidate -= geometry.multiple
    candidate = max(candidate, geometry.valid_input_size(model, 2 * geometry.multiple + 2 * geometry.margin, axis))
    return candidate if fixed == (None, None) else tuple(side or candidate for side in fixed)
