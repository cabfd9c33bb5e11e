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

A layer without a rule keeps the merged field of its inputs when it keeps their size
(activations, normalisation, Add, Concatenate), sees the whole input when it pools
globally, and otherwise is taken as a resampling by the ratio of its sizes. Rules are
looked up along the layer's class hierarchy (a subclass of Conv2D is a window unless it
has a rule of its own, as Conv2DTranspose has). A custom layer registers its rule:

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

from kfcn.layers import CropToMatch, MaxPoolingWithArgmax2D, MaxUnpooling2D

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
