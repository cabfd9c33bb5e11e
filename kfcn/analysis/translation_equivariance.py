"""Translation equivariance: does shifting the input shift the output by the same amount?"""

from __future__ import annotations

from dataclasses import dataclass, field

import keras
import numpy as np

from kfcn.analysis.fully_convolutional import check_fully_convolutional, check_model_input
from kfcn.analysis.graph import has_graph
from kfcn.arguments import is_integer


@dataclass
class EquivarianceReport:
    """Result of `translation_equivariance`.

    Attributes:
        equivariant: True if every shift's interior error is below the tolerance.
        errors: {shift: max |f(shift(x)) − shift(f(x))|} over the interior.
        scale: output size / input size (2 for an upsampling layer, 0.5 for pooling).
        border: output pixels at each edge excluded from the comparison: the shift
            plus the band that padding spoils (half the receptive field).
        spoiled_border: the smallest border at which the errors vanish for every
            shift (None if they never do): how far padding effects really reach.
    """

    equivariant: bool
    errors: dict = field(default_factory=dict)
    scale: float = 1.0
    border: int = 0
    spoiled_border: int | None = None


def _as_model(model_or_layer, input_shape):
    if isinstance(model_or_layer, keras.Model):
        return model_or_layer
    inputs = keras.Input(input_shape)
    return keras.Model(inputs, model_or_layer(inputs))


def translation_equivariance(model_or_layer, input_shape, shifts=((1, 0), (0, 1), (1, 1)), tolerance=1e-4, seed=0):
    """Tests f(shift(x)) = shift'(f(x)) away from the borders, for each shift.

    The output shift is the input shift times the resampling factor (output/input
    size); a factor that makes it fractional (a 1-pixel shift through stride-2
    pooling) cannot be matched, which is exactly how pooling breaks equivariance.
    Shifts are circular (`np.roll`), and the comparison skips the border where the
    wrap-around and the padding interfere.

    Args:
        model_or_layer: a Keras model or a layer (wrapped in a one-layer model).
        input_shape: (H, W, C) of the random probe input.
        shifts: (rows, cols) input shifts to test.
        tolerance: largest error still counted as equal.
        seed: seed of the random input.

    Returns:
        An `EquivarianceReport`.

    Raises:
        ValueError: the model is not fully convolutional (`check_fully_convolutional`),
            `input_shape` does not suit it (channels, or the size of a fixed-size
            model), or the shifts leave nothing to compare.

    Example:
    >>> translation_equivariance(keras.layers.Conv2D(2, 3, padding="same"), (16, 16, 1)).equivariant
    True
    >>> translation_equivariance(keras.layers.MaxPooling2D(2), (16, 16, 1)).equivariant
    False
    """
    input_shape, shifts = _check_arguments(input_shape, shifts)
    model = _as_model(model_or_layer, input_shape)
    if has_graph(model):  # a subclassed model is only called: its output's rank is checked below
        check_fully_convolutional(model, "translation_equivariance")
        check_model_input(model, input_shape, "translation_equivariance")
    x = np.random.default_rng(seed).normal(size=(1, *input_shape)).astype("float32")
    base = np.asarray(keras.ops.convert_to_numpy(model(x, training=False)))
    if base.ndim != 4:
        raise ValueError(
            f"This model is not fully convolutional (its output has shape {base.shape} for a {input_shape} input, "
            "no (batch, height, width, channels) map); translation_equivariance needs an image-to-image model."
        )
    scale = base.shape[1] / input_shape[0]
    try:
        from kfcn.analysis.receptive_field import receptive_field

        context = max(receptive_field(model, input_size=input_shape[:2]).margin)
    except Exception:  # a layer the graph walk cannot trace: compare the centre half only
        context = input_shape[0] // 4
    max_shift = max(max(abs(s) for s in shift) for shift in shifts)
    border = _border(context, input_shape[0], max_shift, scale)
    if 2 * border >= min(base.shape[1:3]):
        # The shift and the band padding spoils cover the whole output: nothing is left to compare.
        side = min(input_shape[:2])
        fits = (n for n in range(side, 64 * side) if n * scale > 2 * _border(context, n, max_shift, scale))
        larger = next(fits, None)
        raise ValueError(
            f"Nothing to compare: the output is {base.shape[1]}x{base.shape[2]} px and the border excluded on "
            f"each side is {border} px (the largest shift, {max_shift} px, plus the band that padding spoils). "
            + (f"Use a larger input_shape (at least {larger} px per side) or " if larger else "Use ")
            + "smaller shifts."
        )
    errors, difference_maps = {}, []
    for shift in shifts:
        shifted_out = np.asarray(keras.ops.convert_to_numpy(model(np.roll(x, shift, axis=(1, 2)), training=False)))
        out_shift = (shift[0] * scale, shift[1] * scale)
        if any(abs(s - round(s)) > 1e-9 for s in out_shift):
            # A fractional output shift: compare with the nearest whole shift (it cannot match).
            out_shift = tuple(np.floor(s) for s in out_shift)
        expected = np.roll(base, tuple(int(s) for s in out_shift), axis=(1, 2))
        difference = np.abs(shifted_out - expected).max(axis=(0, 3))
        difference_maps.append(difference)
        interior = difference[border : -border or None, border : -border or None]
        errors[tuple(shift)] = float(interior.max()) if interior.size else float("nan")
    equivariant = all(error <= tolerance for error in errors.values())
    return EquivarianceReport(equivariant, errors, scale, border, _spoiled_border(difference_maps, tolerance))


def _border(context, size, max_shift, scale):
    """Output pixels excluded at each edge: the shift plus the padding band (capped at a quarter of the input)."""
    return int(np.ceil((min(context, size // 4) + max_shift) * max(scale, 1)))


def _check_arguments(input_shape, shifts):
    input_shape = tuple(input_shape)
    if len(input_shape) != 3 or not all(is_integer(v) and v > 0 for v in input_shape):
        raise ValueError(f"`input_shape` must be (height, width, channels) of positive ints; got {input_shape!r}.")
    if np.ndim(shifts) == 1:  # one (rows, cols) pair
        shifts = [shifts]
    if np.ndim(shifts) != 2 or np.shape(shifts)[1] != 2 or len(shifts) == 0:
        raise ValueError(f"`shifts` must be a list of (rows, cols) pairs, e.g. [(1, 0), (0, 1)]; got {shifts!r}.")
    return input_shape, [tuple(int(v) for v in shift) for shift in shifts]


def _spoiled_border(maps, tolerance):
    size = min(maps[0].shape)
    for width in range(size // 2):
        if all(m[width : m.shape[0] - width, width : m.shape[1] - width].max() <= tolerance for m in maps):
            return width
    return None
