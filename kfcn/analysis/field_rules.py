"""How each kind of layer moves the receptive field: one rule per layer class, in a registry.

Each tensor carries, per spatial axis, an `AxisField` (size r, jump j, start s; see
`kfcn.analysis.receptive_field`). A layer's rule maps its inputs' fields to its output's.
Two kinds of rule:

- a **window** (`register_window`): the layer slides a kernel over its input
  (convolutions, pooling). Its rule returns the `Window` (kernel, strides, dilation,
  padding); the field follows (r' = r + (k' − 1)·j, j' = j·t, s' = s + ((k' − 1)/2 − p)·j),
  and so does the input-size constraint of a stride above 1.
- a **field rule** (`register_field_rule`): any other layer that moves the field
  (upsampling, transposed convolution, crops, paddings). Its rule gets the layer, the
  merged field of its inputs, its input tensors, their fields and its input size.

- **pointwise** (`register_pointwise`): the layer computes each pixel from the same pixel
  of its inputs (activations, batch normalisation, Add, Concatenate, Dropout, Dense,
  Rescaling); the field passes through unchanged.

A layer with none of these rules sees the whole input when it pools globally. Otherwise,
if it keeps its input's size, its field is **measured**: it is called on random inputs
with and without a change at one central pixel, and the output pixels that change (over
two draws) give its window, reaching an edge of the probe meaning global (so a
GroupNormalization, whose statistics span the image, is found to be global, and a
custom 5 x 5 filter to be a 5 x 5 window). A layer that changes the size without a rule is
taken as a resampling by the ratio of its sizes. Both fallbacks are named in
`ReceptiveField.measured`; a rule makes them exact. Rules are looked up along the layer's
class hierarchy (a subclass of Conv2D is a window unless it has a rule of its own, as
Conv2DTranspose has). A custom layer registers its rule:

Example:
>>> class Blur(keras.layers.Layer):  # a fixed 5 x 5 filter: a window of stride 1
...     def call(self, x):
...         return x
>>> @register_window(Blur)
... def _blur(layer):
...     return Window(kernel=(5, 5), strides=(1, 1), dilation=(1, 1), padding="same")
>>> window_of(Blur()).kernel
(5, 5)
>>> _ = WINDOWS.pop(Blur)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import keras
import numpy as np

from kfcn.layers import (
    ChannelAffine,
    CoordinateChannels,
    CropToMatch,
    InputSizeCheck,
    MaxPoolingWithArgmax2D,
    MaxUnpooling2D,
)

GLOBAL = math.inf


@dataclass(frozen=True)
class AxisField:
    """The field of a tensor's units along one axis: `size` input pixels seen, `jump` input
    pixels between adjacent units, `start` the input coordinate of unit 0's field centre.

    Example:
    >>> AxisField(3, 1, 1.0).union(AxisField(5, 1, 1.0))
    AxisField(size=5.0, jump=1, start=1.0)
    """

    size: float
    jump: float
    start: float

    def union(self, other):
        if math.isinf(self.size) or math.isinf(other.size):
            return AxisField(GLOBAL, max(self.jump, other.jump), self.start)
        low = min(self.start - (self.size - 1) / 2, other.start - (other.size - 1) / 2)
        high = max(self.start + (self.size - 1) / 2, other.start + (other.size - 1) / 2)
        return AxisField(high - low + 1, max(self.jump, other.jump), (low + high) / 2)


@dataclass(frozen=True)
class Window:
    """A sliding window per axis (rows, cols): kernel, strides, dilation; padding "same" or "valid".

    `pads_before=False`: "same" padding goes to the bottom/right only (kfcn's argmax pooling).
    """

    kernel: tuple
    strides: tuple
    dilation: tuple
    padding: str
    pads_before: bool = True

    def extent(self, axis):
        """The kernel's span in input units along `axis`, dilation included."""
        return self.dilation[axis] * (self.kernel[axis] - 1) + 1


WINDOWS = {}  # layer class -> rule(layer) -> Window
FIELD_RULES = {}  # layer class -> rule(layer, merged, inputs, fields, in_size) -> (AxisField, AxisField)
POINTWISE = {}  # layer class -> predicate(layer) -> whether this layer (its axis) acts pixel by pixel


def register_window(*classes):
    """Registers `rule(layer) -> Window` for the layer classes (a decorator; see the module example)."""

    def register(rule):
        for cls in classes:
            WINDOWS[cls] = rule
        return rule

    return register


def register_field_rule(*classes):
    """Registers `rule(layer, merged, inputs, fields, in_size) -> (rows, cols) AxisFields` for the classes.

    Example:
    >>> class Shift(keras.layers.Layer):  # moves the image one pixel down
    ...     def call(self, x):
    ...         return x
    >>> @register_field_rule(Shift)
    ... def _shift(layer, merged, inputs, fields, in_size):
    ...     rows, cols = merged
    ...     return AxisField(rows.size, rows.jump, rows.start - rows.jump), cols
    >>> rule_of(Shift(), FIELD_RULES) is _shift
    True
    >>> _ = FIELD_RULES.pop(Shift)
    """

    def register(rule):
        for cls in classes:
            FIELD_RULES[cls] = rule
        return rule

    return register


def register_pointwise(*classes, when=None):
    """Registers layer classes that compute each pixel from the same pixel of their inputs.

    `when(layer) -> bool`, if given, decides per layer (a normalisation is pointwise only over
    the channel axis).

    Example:
    >>> class Gamma(keras.layers.Layer):  # x ** 0.5, pixel by pixel
    ...     def call(self, x):
    ...         return keras.ops.sqrt(x)
    >>> register_pointwise(Gamma)
    >>> is_pointwise(Gamma())
    True
    >>> _ = POINTWISE.pop(Gamma)
    """
    for cls in classes:
        POINTWISE[cls] = when or (lambda layer: True)


def is_pointwise(layer):
    """Whether the layer's class (or its nearest registered base class) is registered as pointwise for it."""
    predicate = rule_of(layer, POINTWISE)
    return predicate is not None and bool(predicate(layer))


def measured_field(merged, inputs, replay, in_size):
    """The output fields of a size-keeping layer without a rule, measured: the output pixels that a change
    at one central input pixel reaches, over two random draws (see the module docstring).

    `replay(arrays)` calls the layer on arrays in place of its tensor `inputs`; the change goes into
    the first input of size `in_size`. Returns None where nothing can be measured (no float input of
    that size), else the (rows, cols) fields.

    Example:
    >>> blur = keras.layers.AveragePooling2D(3, strides=1, padding="same")  # measured as if it had no rule
    >>> x = keras.Input(batch_shape=(1, 9, 9, 1))
    >>> rows, cols = measured_field((AxisField(1, 1, 0.0),) * 2, [x], lambda values: blur(*values), (9, 9))
    >>> rows
    AxisField(size=3, jump=1, start=0.0)
    """
    shapes = [tuple(1 if side is None else side for side in tensor.shape) for tensor in inputs]
    target = next(
        (
            index
            for index, (tensor, shape) in enumerate(zip(inputs, shapes))
            if len(shape) == 4 and shape[1:3] == tuple(in_size) and "float" in str(tensor.dtype)
        ),
        None,
    )
    if target is None:
        return None
    centre = (in_size[0] // 2, in_size[1] // 2)
    reached = np.zeros(in_size, bool)
    for seed in (0, 1):
        rng = np.random.default_rng(seed)
        dtypes = [str(tensor.dtype) for tensor in inputs]
        values = [
            rng.normal(size=shape).astype(dtype) if "float" in dtype else np.zeros(shape, dtype)
            for dtype, shape in zip(dtypes, shapes)
        ]
        before = _first_output(replay(values))
        values[target] = values[target].copy()
        values[target][0, centre[0], centre[1], :] += 1.0
        after = _first_output(replay(values))
        if before.shape[1:3] != tuple(in_size):
            return None
        change = np.abs(after - before).max(axis=(0, 3))
        reached |= change > 1e-6 * (1.0 + np.abs(before).max())
    result = []
    for axis, f in enumerate(merged):
        hit = np.flatnonzero(reached.any(axis=1 - axis))
        if hit.size == 0:  # the change reached nothing: the field passes through
            result.append(f)
        elif hit[0] == 0 and hit[-1] == in_size[axis] - 1 and in_size[axis] > 1:  # edge to edge: global
            result.append(AxisField(GLOBAL, f.jump, f.start))
        else:
            low, high = int(hit[0]) - centre[axis], int(hit[-1]) - centre[axis]
            result.append(AxisField(f.size + (high - low) * f.jump, f.jump, f.start + (low + high) / 2 * f.jump))
    return tuple(result)


def _first_output(outputs):
    return np.asarray(keras.ops.convert_to_numpy(keras.tree.flatten(outputs)[0]), dtype="float64")


def rule_of(layer, registry):
    """The rule registered for the layer's class or its nearest registered base class, else None."""
    for cls in type(layer).__mro__:
        if cls in registry:
            return registry[cls]
    return None


def window_of(layer):
    """The layer's `Window` if it slides one (and has no field rule of its own that overrides it), else None."""
    for cls in type(layer).__mro__:
        if cls in FIELD_RULES:
            return None
        if cls in WINDOWS:
            return WINDOWS[cls](layer)
    return None


def windowed(fields, window, in_size):
    """The output fields of a sliding window over inputs with `fields` of spatial size `in_size`."""
    out = []
    for axis, f in enumerate(fields):
        k, t = window.extent(axis), window.strides[axis]
        before = 0
        if window.padding == "same" and window.pads_before:
            remainder = in_size[axis] % t
            before = max(k - (t if remainder == 0 else remainder), 0) // 2
        out.append(AxisField(f.size + (k - 1) * f.jump, f.jump * t, f.start + ((k - 1) / 2 - before) * f.jump))
    return tuple(out)


layers = keras.layers


@register_window(layers.Conv2D, layers.DepthwiseConv2D, layers.SeparableConv2D)
def _convolution(layer):
    return Window(layer.kernel_size, layer.strides, layer.dilation_rate, layer.padding)


@register_window(layers.MaxPooling2D, layers.AveragePooling2D)
def _pooling(layer):
    return Window(layer.pool_size, layer.strides, (1, 1), layer.padding)


@register_window(MaxPoolingWithArgmax2D)
def _argmax_pooling(layer):
    # Strides are the pool size; "same" pads only at the bottom/right.
    return Window(layer.pool_size, layer.pool_size, (1, 1), layer.padding, pads_before=False)


@register_field_rule(layers.Conv2DTranspose)
def _transposed_convolution(layer, merged, inputs, fields, in_size):
    result = []
    for axis, f in enumerate(merged):
        k, t = layer.kernel_size[axis], layer.strides[axis]
        before = max(k - t, 0) // 2 if layer.padding == "same" else 0
        result.append(
            AxisField(
                f.size + (math.ceil(k / t) - 1) * f.jump, f.jump / t, f.start + f.jump * (before - (k - 1) / 2) / t
            )
        )
    return tuple(result)


@register_field_rule(layers.UpSampling2D, MaxUnpooling2D)
def _upsampling(layer, merged, inputs, fields, in_size):
    factor = layer.size if isinstance(layer, layers.UpSampling2D) else layer.pool_size
    bilinear = getattr(layer, "interpolation", "nearest") != "nearest"
    return tuple(
        AxisField(f.size + (f.jump if bilinear else 0), f.jump / factor[axis], f.start) for axis, f in enumerate(merged)
    )


@register_field_rule(CropToMatch)
def _crop_to_match(layer, merged, inputs, fields, in_size):
    x_size, reference_size = tuple(inputs[0].shape[1:3]), tuple(inputs[1].shape[1:3])
    return tuple(
        AxisField(f.size, f.jump, f.start + ((x_size[a] - reference_size[a]) // 2) * f.jump)
        for a, f in enumerate(fields[id(inputs[0])])
    )


@register_field_rule(layers.Cropping2D)
def _cropping(layer, merged, inputs, fields, in_size):
    return tuple(AxisField(f.size, f.jump, f.start + layer.cropping[a][0] * f.jump) for a, f in enumerate(merged))


@register_field_rule(layers.ZeroPadding2D)
def _zero_padding(layer, merged, inputs, fields, in_size):
    return tuple(AxisField(f.size, f.jump, f.start - layer.padding[a][0] * f.jump) for a, f in enumerate(merged))


def _over_channels(layer):
    """A normalisation or softmax whose axis is the channels only (the last axis) acts pixel by pixel."""
    axis = getattr(layer, "axis", -1)
    axes = [axis] if isinstance(axis, int) else list(axis)
    return all(a in (-1, 3) for a in axes)


register_pointwise(
    layers.InputLayer,
    layers.Activation,
    layers.ReLU,
    layers.LeakyReLU,
    layers.PReLU,
    layers.ELU,
    layers.Dropout,
    layers.SpatialDropout2D,
    layers.GaussianNoise,
    layers.GaussianDropout,
    layers.AlphaDropout,
    layers.ActivityRegularization,
    layers.Add,
    layers.Subtract,
    layers.Multiply,
    layers.Average,
    layers.Maximum,
    layers.Minimum,
    layers.Rescaling,
    layers.Identity,
    layers.Dense,
    layers.Masking,
    InputSizeCheck,
    CoordinateChannels,
    ChannelAffine,
)
register_pointwise(
    layers.BatchNormalization,
    layers.LayerNormalization,
    layers.UnitNormalization,
    layers.Normalization,
    layers.Softmax,
    layers.Concatenate,
    when=_over_channels,
)
