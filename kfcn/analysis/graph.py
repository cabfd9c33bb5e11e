"""The layer graph of a Keras model, which every size and field computation reads."""

from __future__ import annotations

import keras


def has_graph(model):
    """Whether `model` is a functional or Sequential model: a graph of layers kfcn can read.

    Example:
    >>> has_graph(keras.Sequential([keras.layers.Conv2D(2, 3)]))
    True
    """
    # Functional models have `inputs`; subclassed ones do not, even after being called.
    return isinstance(model, keras.Sequential) or (isinstance(model, keras.Model) and hasattr(model, "inputs"))


def functional_model(model, what="This function"):
    """`model` as a functional graph: itself if functional, a functional wrapper for a Sequential model.

    kfcn reads sizes and receptive fields off a model's graph of layers. Functional
    models (`keras.Model(inputs, outputs)`, keras.applications, kfcn's builders) have
    one; a `keras.Sequential` model gets a functional wrapper around it, whose trace
    walks its layers; a subclassed model (its graph lives in Python code in `call`)
    is refused with an error saying how to rebuild it.

    Args:
        model: a Keras model.
        what: the caller, for the error message.

    Returns:
        A functional `keras.Model` computing the same function.

    Example:
    >>> seq = keras.Sequential([keras.Input((None, None, 1)), keras.layers.Conv2D(2, 3)])
    >>> [tuple(t.shape) for t in functional_model(seq).inputs]
    [(None, None, None, 1)]
    """
    if isinstance(model, keras.Sequential):
        try:
            spec = model.inputs[0]
        except (AttributeError, ValueError, IndexError, TypeError) as error:
            raise ValueError(
                f"{what} needs to know the input of Sequential model {model.name!r}, which has none yet: "
                "start it with `keras.Input((None, None, channels))`, e.g. "
                "keras.Sequential([keras.Input((None, None, 1)), ...])."
            ) from error
        inputs = keras.Input(batch_shape=tuple(spec.shape), dtype=spec.dtype)
        return keras.Model(inputs, model(inputs), name=model.name)
    if not isinstance(model, keras.Model):
        raise TypeError(f"{what} takes a Keras model; got {type(model).__name__}.")
    _check_graph(model, what)
    return model


def _check_graph(model, what):
    """Raises if `model` or a model nested in it is subclassed (a graph kfcn cannot walk)."""
    if not has_graph(model):
        raise ValueError(
            f"{what} supports functional models (keras.Model(inputs, outputs)) and keras.Sequential models, "
            f"also nested; {model.name!r} is a subclassed model ({type(model).__name__}), whose layers form no "
            "graph kfcn can read. Rebuild it with the functional API or as a keras.Sequential (wrapping it as "
            "keras.Model(inputs, model(inputs)) is not enough: the wrapper would hide its layers)."
        )
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            _check_graph(layer, what)


def trace_layers(model, input_tensors, visit, carried, with_replay=False):
    """Calls every layer of functional `model` again on `input_tensors`, reporting each call to `visit`.

    Nested models (a keras.applications backbone, a `keras.Sequential` block) are walked
    layer by layer rather than as one opaque call. `visit(layer, inputs, outputs)` sees
    each leaf layer's KerasTensor inputs (a list) and outputs; `carried` is the caller's
    dict keyed by `id(tensor)` (a receptive field, a flag), which the walk copies across
    the boundaries of nested models so that the caller sees one continuous graph.

    Args:
        model: a functional `keras.Model` (see `functional_model`).
        input_tensors: `keras.Input` tensors structured like `model.input`.
        visit: the function called after each leaf layer call.
        carried: dict from `id(tensor)` to the caller's value.
        with_replay: also pass `visit` a fourth argument, `replay(arrays)`, which calls the layer
            again on concrete arrays in place of its tensor inputs (to measure what it does).

    Returns:
        The clone of `model` built on `input_tensors` (its `outputs` are the traced tensors).

    Example:
    >>> seen = []
    >>> inputs = keras.Input((None, None, 1))
    >>> model = keras.Model(inputs, keras.layers.Conv2D(2, 3, name="conv")(inputs))
    >>> _ = trace_layers(model, keras.Input((8, 8, 1)), lambda layer, i, o: seen.append(o.shape), {})
    >>> seen
    [(None, 6, 6, 2)]
    """

    def call_function(layer, *args, **kwargs):
        if isinstance(layer, keras.Sequential):
            outputs = args[0]
            for inner in layer.layers:
                outputs = call_function(inner, outputs)
            return outputs
        if isinstance(layer, keras.Model):
            # Inline a nested functional model so its layers are traced too. Fresh inputs carry the
            # values of the tensors fed in: clone_model needs inputs that are Input tensors, and the
            # nested model may sit after other layers.
            outer = keras.tree.flatten(args)
            fresh = [keras.Input(batch_shape=t.shape, dtype=t.dtype) for t in outer]
            for tensor, new in zip(outer, fresh):
                if id(tensor) in carried:
                    carried[id(new)] = carried[id(tensor)]
            inner = keras.models.clone_model(
                layer,
                input_tensors=keras.tree.pack_sequence_as(layer.input, fresh),
                clone_function=lambda sub: sub,
                call_function=call_function,
            )
            outputs = inner(keras.tree.pack_sequence_as(layer.input, outer))
            for new, old in zip(keras.tree.flatten(outputs), keras.tree.flatten(inner.output)):
                if id(old) in carried:
                    carried[id(new)] = carried[id(old)]
            return outputs
        outputs = layer(*args, **kwargs)
        flat = keras.tree.flatten((args, kwargs))
        positions = [index for index, value in enumerate(flat) if isinstance(value, keras.KerasTensor)]
        inputs = [flat[index] for index in positions]
        if with_replay:

            def replay(values):
                """The layer called again with `values` (arrays) in place of its tensor inputs, in order."""
                new = list(flat)
                for index, value in zip(positions, values):
                    new[index] = value
                new_args, new_kwargs = keras.tree.pack_sequence_as((args, kwargs), new)
                return layer(*new_args, **new_kwargs)

            visit(layer, inputs, outputs, replay)
        else:
            visit(layer, inputs, outputs)
        return outputs

    return keras.models.clone_model(
        model, input_tensors=input_tensors, clone_function=lambda layer: layer, call_function=call_function
    )
