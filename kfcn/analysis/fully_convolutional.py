"""What kfcn's analysis and tiling need of a model, checked once, with errors that name the problem.

kfcn's tools read image-to-image models: one (batch, height, width, channels) image
input and an output that is a map of that image, so that a tile of the input gives
the same tile of the output (a fully convolutional network, Long et al. 2015). A
classifier is not one: a `Flatten` or global-pooling layer turns the map into a
vector, and no receptive field, tile or shift of the output exists. Models built for
one input size (`keras.Input((64, 64, 1))`) are fully convolutional but take only
that size. The checks here say which layer breaks the map, or which size the model
takes, before Keras fails somewhere deeper with a message about something else.
"""

from __future__ import annotations

import itertools
import weakref

import keras

from kfcn.analysis.graph import functional_model, has_graph, trace_layers

_MAP = "map"
_reasons = weakref.WeakKeyDictionary()
_HINT = (
    "For a classifier, call the model itself (model.predict); to segment, give it a convolutional head instead "
    "(e.g. a 1x1 Conv2D with one filter per class in place of the Flatten/Dense or global-pooling layers)."
)

_TOKEN_HINT = (
    "Attention over the tokens sees the whole image, and such models are built for one input size: call the "
    "model itself (model.predict) on images of that size, or resize to it."
)


def image_input(model: keras.Model) -> keras.KerasTensor | None:
    """The first (batch, height, width, channels) input of a functional model, or None.

    Example:
    >>> inputs = keras.Input((None, None, 3))
    >>> image_input(keras.Model(inputs, keras.layers.Conv2D(1, 1)(inputs))).shape
    (None, None, None, 3)
    """
    return next((tensor for tensor in model.inputs if len(tensor.shape) == 4), None)


def check_fully_convolutional(model: keras.Model, what: str = "kfcn's analysis and tiling") -> keras.Model:
    """Raises unless `model` maps an image to a (batch, height, width, channels) map of that image.

    The model's graph is walked once (cached per model): a tensor stays a map of the
    image while layers keep it 4-D; a `Flatten`, a global pooling (also with
    `keepdims=True`), a `Reshape` or any layer that gives another rank ends it. A model
    whose first output is not such a map is refused, naming the layer closest to the
    output that ended it. Branches that pool globally and merge back into the map
    (DeepLab's image pooling) are fine: the output is still a map.

    Args:
        model: a Keras model (functional or Sequential; subclassed models have no
            graph to read and are refused by `functional_model`).
        what: the tool that needs the model, named in the message.

    Returns:
        The model as a functional graph (`functional_model(model)`).

    Raises:
        ValueError: the model has no 4-D image input, or its output is not a map of it.

    Example:
    >>> inputs = keras.Input((16, 16, 1))
    >>> x = keras.layers.Flatten(name="flatten")(keras.layers.Conv2D(2, 3)(inputs))
    >>> classifier = keras.Model(inputs, keras.layers.Dense(3)(x))
    >>> check_fully_convolutional(classifier, "receptive_field")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: This model is not fully convolutional (layer 'flatten' flattens the image; ...
    """
    graph = functional_model(model, what)
    image = image_input(graph)
    if image is None:
        shapes = ", ".join(str(tuple(tensor.shape)) for tensor in graph.inputs)
        raise ValueError(
            f"This model is not an image model: it has no 4-D (batch, height, width, channels) input (its inputs: "
            f"{shapes}); {what} needs an image-to-image (fully convolutional) model."
        )
    if model not in _reasons:
        _reasons[model] = _why_not_a_map(graph, image)
    reason = _reasons[model]
    if reason is not None:
        raise ValueError(
            f"This model is not fully convolutional ({reason}); {what} needs an image-to-image model, whose "
            f"output is a (batch, height, width, channels) map of its image input. "
            f"{_TOKEN_HINT if 'sequence of tokens' in reason else _HINT}"
        )
    return graph


def _why_not_a_map(graph, image):
    """None if the first output is a map of `image`, else why not (the layer that ended the map)."""
    states = {}  # id(tensor) -> _MAP, or (order, why) for a tensor derived from the image that is no map
    order = itertools.count()

    def make_input(tensor):
        fresh = keras.Input(batch_shape=tuple(tensor.shape), dtype=tensor.dtype, name=tensor.name)
        if tensor is image:
            states[id(fresh)] = _MAP
        return fresh

    def visit(layer, inputs, outputs):
        known = [states[id(t)] for t in inputs if id(t) in states]
        if not known:
            return
        flat = keras.tree.flatten(outputs)
        if _MAP in known:
            if len(flat[0].shape) == 4 and not is_global_pooling(layer):
                state = _MAP
            else:
                source = next(t for t in inputs if states.get(id(t)) == _MAP)
                state = (next(order), _what_layer_does(layer, source, flat[0]))
        else:  # derived from a tensor that already lost the map: the latest loss explains it
            state = max(known)
        for tensor in flat:
            states[id(tensor)] = state

    clone = trace_layers(graph, keras.tree.map_structure(make_input, graph.input), visit, states)
    output = keras.tree.flatten(clone.outputs)[0]
    state = states.get(id(output))
    if state == _MAP:
        return None
    if state is None:
        return f"its output, shape {tuple(output.shape)}, does not depend on its image input"
    return f"{state[1]}; its output, shape {tuple(output.shape)}, is no map of the image"


def is_global_pooling(layer: keras.layers.Layer) -> bool:
    """Whether `layer` is one of Keras' global poolings (average or max, any rank, `keepdims` or not).

    Example:
    >>> is_global_pooling(keras.layers.GlobalAveragePooling2D(keepdims=True))
    True
    """
    name = type(layer).__name__
    return name.startswith("Global") and "Pooling" in name


def _what_layer_does(layer, source, output):
    """How `layer` turns the image map `source` into `output`, in words."""
    if isinstance(layer, keras.layers.Flatten):
        return f"layer {layer.name!r} flattens the image"
    if is_global_pooling(layer):
        return f"layer {layer.name!r} ({type(layer).__name__}) pools the whole image into one value per channel"
    if len(output.shape) == 3:
        return (
            f"layer {layer.name!r} ({type(layer).__name__}) turns the image map {tuple(source.shape)} into a "
            f"sequence of tokens {tuple(output.shape)}, as a vision transformer's patch embedding does"
        )
    return (
        f"layer {layer.name!r} ({type(layer).__name__}) turns the image map {tuple(source.shape)} into shape "
        f"{tuple(output.shape)}"
    )


def fixed_input_size(model: keras.Model) -> tuple:
    """`(height, width)` a model's image input was built with: ints where fixed, None where free.

    Example:
    >>> fixed_input_size(keras.Sequential([keras.Input((64, 48, 1)), keras.layers.Conv2D(1, 3)]))
    (64, 48)
    >>> fixed_input_size(keras.Sequential([keras.Input((None, None, 1)), keras.layers.Conv2D(1, 3)]))
    (None, None)
    """
    if not has_graph(model):
        return (None, None)
    image = image_input(functional_model(model))
    return (None, None) if image is None else tuple(image.shape[1:3])


def fixed_size_error(model: keras.Model, size: tuple, what: str, instead: str | None = None) -> ValueError:
    """The ValueError for an image of `size` (height, width) that a fixed-size model cannot take.

    Args:
        model: the model, built with a fixed input size.
        size: `(height, width)` it was given.
        what: the tool, named in the message.
        instead: what to do with the fixed size (default: "use HxW inputs"); the
            message adds how to rebuild the model for any size.

    Example:
    >>> inputs = keras.Input((64, 64, 1))
    >>> model = keras.Model(inputs, keras.layers.Conv2D(1, 3, padding="same")(inputs))
    >>> print(fixed_size_error(model, (100, 100), "predict"))  # doctest: +ELLIPSIS
    predict: the model takes only 64x64 inputs (its image input was built with shape (None, 64, 64, 1)), not ...
    """
    image = image_input(functional_model(model, what))
    sides = "x".join("any" if side is None else str(side) for side in image.shape[1:3])
    given = "x".join(str(side) for side in size)
    instead = instead or f"use {sides} inputs"
    return ValueError(
        f"{what}: the model takes only {sides} inputs (its image input was built with shape {tuple(image.shape)}), "
        f"not {given}. {instead[0].upper()}{instead[1:]}, or rebuild it for any size: new = "
        f"keras.models.clone_model(model, input_tensors=keras.Input((None, None, {image.shape[-1]}))); "
        "new.set_weights(model.get_weights()) (a fully convolutional model's weights fit every size)."
    )


def check_model_input(model: keras.Model, input_shape: tuple, what: str) -> None:
    """Raises unless `model` takes inputs of `input_shape` `(height, width, channels)`: channels, then size.

    Named before Keras' own `input_spec` error, which names a layer deep in the model. The
    model must be fully convolutional (`check_fully_convolutional`, which runs first).

    Example:
    >>> model = keras.Sequential([keras.Input((None, None, 1)), keras.layers.Conv2D(1, 3)])
    >>> check_model_input(model, (16, 16, 3), "erf")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: erf: the model expects 1 input channel(s), but `input_shape` (16, 16, 3) has 3. ...
    """
    graph = check_fully_convolutional(model, what)
    image = image_input(graph)
    height, width, channels = tuple(input_shape)
    expected = image.shape[-1]
    if expected is not None and channels != expected:
        raise ValueError(
            f"{what}: the model expects {expected} input channel(s), but `input_shape` {tuple(input_shape)} has "
            f"{channels}. Use input_shape=({height}, {width}, {expected})."
        )
    fixed = fixed_input_size(graph)
    if any(side is not None and side != given for side, given in zip(fixed, (height, width))):
        sides = tuple(given if side is None else side for side, given in zip(fixed, (height, width)))
        raise fixed_size_error(graph, (height, width), what, f"pass input_shape=({sides[0]}, {sides[1]}, {expected})")
