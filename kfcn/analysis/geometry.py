"""How a model maps input sizes to output sizes: the facts tiling and padding rely on."""

from __future__ import annotations

import dataclasses
import math
import weakref
from dataclasses import dataclass

import keras

from kfcn.layers import FRAME_INPUT_NAME
from kfcn.names import IMAGE_INPUT_NAME, INPUT_SCALING_NAME


@dataclass(frozen=True)
class ModelGeometry:
    """Size facts of an image-to-image model, found by symbolic shape inference.

    Attributes:
        channels: input channels of the image input.
        multiple: total stride; tile origins stay on multiples of it, so that pooling
            grids line up with whole-image prediction.
        margin: pixels a valid-padding model consumes on each side (92 for the
            published U-Net), 0 for "same" models.
        context: half the theoretical receptive field: how far one output pixel
            sees, i.e. how far padding effects reach into a tile (inf for models
            with global pooling, such as DeepLab's image-pooling branch).
        image_input: name of the image input; `frame_input`: name of the
            coordinate-frame input or None; `extra_inputs`: names of other map inputs.
        input_range: `(low, high)` of the raw pixel values the model scales to [0, 1]
            in its graph (its "input_scaling" layer), or None if it has none.
        input_size: `(height, width)` of a model built for one input size
            (`keras.Input((64, 64, 1))`), None on a side it takes at any size.
    """

    channels: int
    multiple: int
    margin: int
    context: int
    image_input: str
    frame_input: str | None
    extra_inputs: tuple
    input_range: tuple | None = None
    input_size: tuple = (None, None)
    field: object = dataclasses.field(default=None, repr=False, compare=False)

    def output_size(self, model, input_size, axis=0):
        """Output side along `axis` (0: rows, 1: columns) for input side `input_size`, or None if the
        model cannot take it exactly."""
        fixed = self.input_size[axis]
        if (fixed is not None and int(input_size) != fixed) or not self.field.accepts(int(input_size), axis):
            return None
        return _output_size(model, int(input_size), axis)

    def valid_input_size(self, model, min_size, axis=0):
        """The smallest input side >= `min_size` along `axis` that the model accepts (its fixed side, if it has one)."""
        fixed = self.input_size[axis]
        if fixed is not None and min_size <= fixed:
            return fixed
        if fixed is not None:
            raise ValueError(
                f"The model takes only {fixed} px along its {('rows', 'columns')[axis]} (its input size is fixed at "
                f"{'x'.join('any' if side is None else str(side) for side in self.input_size)}); {min_size} px is "
                "more."
            )
        for size in range(int(min_size), int(min_size) + 4 * self.multiple + 2 * self.margin + 2):
            if self.output_size(model, size, axis):
                return size
        raise ValueError(f"Found no input size the model accepts near {min_size}.")


def model_geometry(model):
    """Inspects `model` once (cached per model object).

    Example:
    >>> from kfcn.models import unet
    >>> geometry = model_geometry(unet((None, None, 1), filters=4, depth=2, padding="valid"))
    >>> geometry.multiple, geometry.margin
    (4, 20)
    """
    if model in _geometries:
        return _geometries[model]
    from kfcn.analysis.fully_convolutional import check_fully_convolutional, fixed_input_size
    from kfcn.analysis.receptive_field import receptive_field

    graph = check_fully_convolutional(model, "kfcn.inference (whole-image and tiled prediction)")

    image_input = _image_input_name(graph)
    names = [t.name for t in graph.inputs]
    frame_input = FRAME_INPUT_NAME if FRAME_INPUT_NAME in names else None
    extras = tuple(n for n, t in zip(names, graph.inputs) if n not in (image_input, frame_input) and len(t.shape) == 4)
    field = receptive_field(graph)
    probe = field.probe_size[0]
    output = _output_size(graph, probe)
    margin = (probe - output) // 2 if output is not None else 0
    fixed = fixed_input_size(graph)
    context = math.inf if math.isinf(field.size[0]) else max(field.margin)
    geometry = ModelGeometry(
        channels=_input_by_name(graph, image_input).shape[-1],
        multiple=field.required_multiple,
        margin=int(margin),
        context=context if math.isinf(context) else int(context),
        image_input=image_input,
        frame_input=frame_input,
        extra_inputs=extras,
        input_range=input_range(graph),
        input_size=fixed,
        field=field,
    )
    _geometries[model] = geometry
    return geometry


def input_range(model):
    """`(low, high)` of the raw pixel values a model takes, read off its "input_scaling" layer.

    kfcn's builders put a `keras.layers.Rescaling` named "input_scaling" after the image
    input (see `kfcn.models.unet(input_range=...)`); None for a model without one.

    Example:
    >>> from kfcn.models import unet
    >>> input_range(unet((None, None, 1), filters=4, depth=2))
    (0.0, 255.0)
    >>> input_range(unet((None, None, 1), filters=4, depth=2, input_range=None)) is None
    True
    """
    for layer in model.layers:
        if isinstance(layer, keras.layers.Rescaling) and layer.name == INPUT_SCALING_NAME:
            scale, offset = float(layer.scale), float(layer.offset)
            low = -offset / scale
            return round(low, 6), round(low + 1 / scale, 6)
    return None


def _image_input_name(model):
    names = [t.name for t in model.inputs]
    if IMAGE_INPUT_NAME in names:
        return IMAGE_INPUT_NAME
    for tensor in model.inputs:
        if len(tensor.shape) == 4:
            return tensor.name
    raise ValueError("The model has no (batch, height, width, channels) input.")


def _input_by_name(model, name):
    return next(t for t in model.inputs if t.name == name)


_geometries = weakref.WeakKeyDictionary()
_output_sizes = weakref.WeakKeyDictionary()


def _output_size(model, size, axis=0):
    """Output side along `axis` for an input side `size` there, or None if the model cannot take it.

    The other side is `size` too (a square), or the model's own where it is fixed."""
    sizes = _output_sizes.setdefault(model, {})
    if (size, axis) not in sizes:
        from kfcn.analysis.graph import functional_model

        model = functional_model(model, "kfcn.inference")

        def probe(tensor):
            if len(tensor.shape) != 4:
                return keras.KerasTensor((1, *tensor.shape[1:]), dtype=tensor.dtype)
            spatial = [side or size for side in tensor.shape[1:3]]
            spatial[axis] = size
            return keras.KerasTensor((1, *spatial, tensor.shape[-1]), dtype=tensor.dtype)

        try:
            output = keras.tree.flatten(model.compute_output_spec(keras.tree.map_structure(probe, model.input)))[0]
            sizes[(size, axis)] = output.shape[1 + axis]
        except Exception:  # any shape error means: this size does not fit
            sizes[(size, axis)] = None
    return sizes[(size, axis)]
