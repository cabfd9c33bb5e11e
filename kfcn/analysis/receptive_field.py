"""Theoretical receptive field of any Keras functional model, computed from its graph.

Each tensor carries, per spatial axis, three numbers (Araujo et al. 2019, "Computing
receptive fields of convolutional neural networks"):

- `size` r: how many input pixels one of its units sees,
- `jump` j: the distance in input pixels between two adjacent units (its stride),
- `start` s: the input coordinate of the centre of unit 0's field.

A convolution of kernel k (dilation d, k' = d(k − 1) + 1), stride t and left padding p
gives r' = r + (k' − 1)·j, j' = j·t, s' = s + ((k' − 1)/2 − p)·j. Upsampling by t gives
j' = j/t; a transposed convolution also widens r by (⌈k/t⌉ − 1)·j. Merging paths
(Concatenate, Add, unpooling with indices) takes the union of the fields; crops and
paddings shift s. The model is traced once at a concrete probe size
(`keras.models.clone_model` with a `call_function`), so crops that depend on the
input size (the valid U-Net's skip crops) are exact, and nested models
(keras.applications backbones) are walked layer by layer. Each kind of layer's rule lives
in `kfcn.analysis.field_rules`, where a custom layer registers its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import keras

from kfcn.analysis.field_rules import (
    FIELD_RULES,
    GLOBAL,
    AxisField,
    is_pointwise,
    measured_field,
    rule_of,
    window_of,
    windowed,
)
from kfcn.analysis.fully_convolutional import (
    check_fully_convolutional,
    fixed_size_error,
    image_input,
    is_global_pooling,
)
from kfcn.analysis.graph import trace_layers

_PROBE_SIZES = (256, 252, 508, 572, 224, 512, 1020)


@dataclass
class LayerField:
    """One row of the per-layer table."""

    name: str
    kind: str
    output_shape: tuple
    size: tuple
    jump: tuple
    start: tuple

    @classmethod
    def of(cls, layer, output, field):
        """The row of `layer`, whose (first) output tensor is `output` with the per-axis `field`."""
        sizes, jumps, starts = (tuple(getattr(axis, name) for axis in field) for name in ("size", "jump", "start"))
        return cls(layer.name, type(layer).__name__, tuple(output.shape[1:]), sizes, jumps, starts)


@dataclass
class ReceptiveField:
    """The receptive field of a model's (first) output, with the per-layer table.

    Attributes:
        size: `(rows, cols)` of input pixels one output unit sees (inf if global).
        jump: `(rows, cols)` input pixels between adjacent output units.
        start: `(rows, cols)` input coordinate of the centre of output unit (0, 0)'s
            field: 92 for the valid U-Net (572 in, 388 out), about 0 for "same" models.
        required_multiple: the largest total stride inside the model; every input
            side must be a multiple of it (for "same" padding).
        probe_size: the input size the graph was traced at.
        layers: per-layer `LayerField` rows.
        measured: names of the layers without a field rule whose field was measured (or, for one that
            resamples, inferred from its size ratio); see `kfcn.analysis.field_rules`. Empty for kfcn's
            models and keras.applications encoders.
    """

    size: tuple
    jump: tuple
    start: tuple
    required_multiple: int
    probe_size: tuple
    layers: list = field(default_factory=list)
    strided: list = field(default_factory=list)
    strict: bool = True
    measured: list = field(default_factory=list)

    def accepts(self, size, axis=0):
        """Whether an input side `size` fits every strided layer exactly (no floor, no odd merge).

        Each strided layer saw `n` pixels at the probe size with input jump `J`; at
        `size` it sees `n + (size - probe) / J`, which must be a whole number that the
        layer's stride divides ("same": n % t == 0, "valid": (n - k) % t == 0). For
        models that floor sizes by design (keras.applications networks), sizes on the
        probe's grid of the total stride are accepted.

        Example:
        >>> from kfcn.models import unet
        >>> field = receptive_field(unet((None, None, 1), filters=2, depth=2, padding="valid"))
        >>> [s for s in range(42, 70) if field.accepts(s)]
        [44, 48, 52, 56, 60, 64, 68]
        """
        delta = size - self.probe_size[axis]
        if not self.strict:
            # The model floors sizes by design (keras.applications' valid strided
            # convolutions): keep to the probe's position on the total-stride grid.
            return delta % self.required_multiple == 0 and size >= self.required_multiple
        for layer in self.strided:
            seen, stride, jump, kernel, padding = layer[axis]
            shifted = seen + delta / jump
            if abs(shifted - round(shifted)) > 1e-9:
                return False
            shifted = int(round(shifted))
            remainder = shifted % stride if padding == "same" else (shifted - kernel) % stride
            if shifted < kernel or remainder:
                return False
        return True

    @property
    def margin(self):
        """Input pixels on each side that one output unit sees beyond itself: (size − 1) / 2."""
        return tuple(math.inf if math.isinf(s) else int(math.ceil((s - 1) / 2)) for s in self.size)

    def summary(self, print_fn=print):
        """Prints the per-layer table, like `model.summary()`."""
        header = f"{'layer':<34}{'type':<24}{'output shape':<24}{'field':>12}{'jump':>10}{'start':>14}"
        lines = [header, "-" * len(header)]
        for row in self.layers:
            lines.append(
                f"{row.name[:33]:<34}{row.kind[:23]:<24}{str(row.output_shape)[:23]:<24}"
                f"{_pair(row.size):>12}{_pair(row.jump):>10}{_pair(row.start):>14}"
            )
        lines.append("-" * len(header))
        lines.append(
            f"receptive field {_pair(self.size)} px, jump {_pair(self.jump)}, centre of unit 0 at "
            f"{_pair(self.start)}, inputs must be multiples of {self.required_multiple} "
            f"(traced at {self.probe_size[0]}x{self.probe_size[1]})"
        )
        if self.measured:
            more = len(self.measured) - 5
            shown = ", ".join(self.measured[:5]) + (f" and {more} more" if more > 0 else "")
            lines.append(
                f"measured, without a field rule: {shown} (register a rule to make them exact; see "
                "kfcn.analysis.field_rules)"
            )
        print_fn("\n".join(lines))


def _pair(values):
    def fmt(v):
        return "inf" if math.isinf(v) else (f"{v:g}" if abs(v - round(v)) > 1e-9 else str(int(round(v))))

    return fmt(values[0]) if values[0] == values[1] else f"{fmt(values[0])}x{fmt(values[1])}"


def receptive_field(model, input_size=None):
    """Computes the theoretical receptive field of `model`'s output from its graph.

    Args:
        model: a functional or Sequential `keras.Model` (kfcn's or any other); its
            first rank-4 input is the image, other inputs (e.g. a coordinate frame)
            carry no field. Subclassed models have no readable graph and are refused.
        input_size: `(height, width)` to trace at; default: the model's static size,
            else the first of 256, 252, 508, 572, … that the model accepts.

    Raises:
        ValueError: the model is not fully convolutional (a classifier: see
            `check_fully_convolutional`), is subclassed, or is built for another
            input size than `input_size`.

    Returns:
        A `ReceptiveField`.

    Example:
    >>> inputs = keras.Input((None, None, 1))
    >>> x = keras.layers.Conv2D(4, 3)(inputs)
    >>> x = keras.layers.MaxPooling2D(2)(x)
    >>> x = keras.layers.Conv2D(4, 3)(x)
    >>> receptive_field(keras.Model(inputs, x)).size
    (8, 8)
    """
    model = check_fully_convolutional(model, "receptive_field")
    if input_size is not None:
        fixed = tuple(image_input(model).shape[1:3])
        if any(side is not None and side != given for side, given in zip(fixed, input_size)):
            raise fixed_size_error(model, input_size, "receptive_field", "pass input_size=None (its own size)")
    candidates = [tuple(input_size)] if input_size is not None else _probe_candidates(model)
    errors, traced = [], []
    for probe in candidates:
        try:
            result = _trace(model, probe)
        except (ValueError, TypeError) as error:  # the probe size does not fit this model
            errors.append(f"{probe}: {error}")
            continue
        if input_size is not None or all(result.accepts(probe[a], a) for a in range(2)):
            return result
        traced.append(result)
    if traced:
        # No probe fits every stride exactly: the model floors some sizes on purpose.
        traced[0].strict = False
        return traced[0]
    raise ValueError(
        "Could not trace the model at any probe size; pass `input_size=(height, width)` that the model "
        "accepts. Tried:\n" + "\n".join(errors)
    )


def _probe_candidates(model):
    image = image_input(model)
    static = tuple(image.shape[1:3])
    if None not in static:
        return [static]
    return [(s, s) for s in _PROBE_SIZES]


def _trace(model, probe_size):
    fields = {}
    rows = []
    strided = []
    measured = []

    def make_probe(tensor):
        shape = tuple(tensor.shape[1:])
        spatial = len(tensor.shape) == 4
        if spatial:
            shape = (*probe_size, shape[-1])
        probe = keras.Input(batch_shape=(1, *shape), dtype=tensor.dtype, name=tensor.name)
        if spatial:  # the image and any map of the image's size (e.g. a mask)
            fields[id(probe)] = (AxisField(1, 1, 0.0), AxisField(1, 1, 0.0))
        return probe

    def visit(layer, inputs, outputs, replay):
        result = _layer_field(layer, inputs, outputs, fields, replay, measured)
        stride_info = _stride_info(layer, inputs, fields)
        if stride_info is not None:
            strided.append(stride_info)
        flat_outputs = keras.tree.flatten(outputs)
        if result is not None:
            for tensor in flat_outputs:
                fields[id(tensor)] = result
            rows.append(LayerField.of(layer, flat_outputs[0], result))

    clone = trace_layers(model, keras.tree.map_structure(make_probe, model.input), visit, fields, with_replay=True)
    output = keras.tree.flatten(clone.outputs)[0]
    if id(output) not in fields:
        raise ValueError("The model's output does not depend on its image input.")
    result = fields[id(output)]
    return ReceptiveField(
        size=tuple(_tidy(f.size) for f in result),
        jump=tuple(_tidy(f.jump) for f in result),
        start=tuple(_tidy(f.start) for f in result),
        required_multiple=_required_multiple(rows),
        probe_size=tuple(probe_size),
        layers=rows,
        strided=strided,
        measured=measured,
    )


def _required_multiple(rows):
    """The least common multiple of every whole-number jump (cumulative stride) in the model: the input
    sizes that keep each pooling grid aligned are its multiples."""
    multiple = 1
    for jump in (j for row in rows for j in row.jump):
        if jump >= 1 and abs(jump - round(jump)) < 1e-9:
            multiple = math.lcm(multiple, int(round(jump)))
    return multiple


def _stride_info(layer, inputs, fields):
    """Per axis (input size, stride, input jump, effective kernel, padding) of a strided layer."""
    window = window_of(layer)
    if window is None or max(window.strides) == 1 or not inputs or id(inputs[0]) not in fields:
        return None
    size = _spatial(inputs[0])
    return tuple(
        (size[a], window.strides[a], fields[id(inputs[0])][a].jump, window.extent(a), window.padding) for a in range(2)
    )


def _tidy(value):
    return int(round(value)) if not math.isinf(value) and abs(value - round(value)) < 1e-9 else value


def _spatial(tensor):
    return tuple(tensor.shape[1:3]) if len(tensor.shape) == 4 else None


def _layer_field(layer, inputs, outputs, fields, replay, measured):
    known = [(t, fields[id(t)]) for t in inputs if id(t) in fields]
    if not known:
        return None
    first_tensor, first = known[0]
    merged = first
    for _, other in known[1:]:
        merged = tuple(a.union(b) for a, b in zip(merged, other))
    in_size = _spatial(first_tensor)
    out_tensor = keras.tree.flatten(outputs)[0]
    out_size = _spatial(out_tensor)
    window = window_of(layer)
    if window is not None:
        return windowed(merged, window, in_size)
    rule = rule_of(layer, FIELD_RULES)
    if rule is not None:
        return rule(layer, merged, inputs, fields, in_size)
    if out_size is None or _contains_global_pooling(layer):
        # Global pooling (or a layer hiding one): every unit sees the whole input.
        return (
            None
            if out_size is None and not is_global_pooling(layer)
            else tuple(AxisField(GLOBAL, f.jump, f.start) for f in merged)
        )
    if in_size is None:  # a vector made an image again (a squeeze-and-excitation gate): its field carries on
        return merged
    if is_pointwise(layer) or None in (out_size + in_size):
        return merged
    if out_size == in_size:  # no rule, same size: measured (see kfcn.analysis.field_rules)
        measured.append(layer.name)
        return measured_field(merged, inputs, replay, in_size) or merged
    # An unknown resampling layer (e.g. Resizing): infer the factor from the sizes.
    measured.append(layer.name)
    result = []
    for axis, f in enumerate(merged):
        ratio = in_size[axis] / out_size[axis]
        widen = (ratio - 1) * f.jump if ratio > 1 else f.jump
        result.append(AxisField(f.size + widen, f.jump * ratio, f.start))
    return tuple(result)


def _contains_global_pooling(layer):
    if is_global_pooling(layer):
        return True
    return any(is_global_pooling(sub) for sub in getattr(layer, "_flatten_layers", lambda: [])())
