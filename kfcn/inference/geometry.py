"""How a model maps input sizes to output sizes: the facts tiling and padding rely on."""

from __future__ import annotations

import dataclasses
import math
import weakref
from dataclasses import dataclass

import keras

from kfcn.layers import FRAME_INPUT_NAME


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
    """

    channels: int
    multiple: int
    margin: int
    context: int
    image_input: str
    frame_input: str | None
    extra_inputs: tuple
    input_range: tuple | None = None
    field: object = dataclasses.field(default=None, repr=False, compare=False)

    def output_size(self, model, input_size):
        """Output side for input side `input_size`, or None if the model cannot take it exactly."""
        if not self.field.accepts(int(input_size)):
            return None
        return _output_size(model, int(input_size))

    def valid_input_size(self, model, min_size):
        """The smallest input side >= `min_size` that the model accepts."""
        for size in range(int(min_size), int(min_size) + 4 * self.multiple + 2 * self.margin + 2):
            if self.output_size(model, size):
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
    from kfcn.analysis.graph import functional_model
    from kfcn.analysis.receptive_field import receptive_field

    graph = functional_model(model, "kfcn.inference")

    image_input = _image_input_name(graph)
    names = [t.name for t in graph.inputs]
    frame_input = FRAME_INPUT_NAME if FRAME_INPUT_NAME in names else None
    extras = tuple(n for n, t in zip(names, graph.inputs) if n not in (image_input, frame_input) and len(t.shape) == 4)
    field = receptive_field(graph)
    probe = field.probe_size[0]
    output = _output_size(graph, probe)
    margin = (probe - output) // 2 if output is not None else 0
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
    from kfcn.models.inputs import INPUT_SCALING_NAME

    for layer in model.layers:
        if isinstance(layer, keras.layers.Rescaling) and layer.name == INPUT_SCALING_NAME:
            scale, offset = float(layer.scale), float(layer.offset)
            low = -offset / scale
            return round(low, 6), round(low + 1 / scale, 6)
    return None


def _image_input_name(model):
    from kfcn.models.inputs import IMAGE_INPUT_NAME

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


def _output_size(model, size):
    """Output side for a square input of side `size`, or None if the model cannot take it."""
    sizes = _output_sizes.setdefault(model, {})
    if size not in sizes:
        from kfcn.analysis.graph import functional_model

        model = functional_model(model, "kfcn.inference")
        structure = keras.tree.map_structure(
            lambda t: keras.KerasTensor(
                (1, size, size, t.shape[-1]) if len(t.shape) == 4 else (1, *t.shape[1:]), dtype=t.dtype
            ),
            model.input,
        )
        try:
            sizes[size] = keras.tree.flatten(model.compute_output_spec(structure))[0].shape[1]
        except Exception:  # any shape error means: this size does not fit
            sizes[size] = None
    return sizes[size]
