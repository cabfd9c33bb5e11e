"""The model zoo by name: one place that knows every family, for the command line, recipes and tests."""

from __future__ import annotations

import inspect

from kfcn.models.fcn import fcn
from kfcn.models.heads import resolve_head
from kfcn.models.plain_cnn import plain_cnn
from kfcn.models.segnet import segnet
from kfcn.models.unet import unet

FAMILIES = {"unet": unet, "segnet": segnet, "fcn": fcn, "plain_cnn": plain_cnn}


def options(name):
    """The keyword options a family's builder takes (besides `input_shape`, its outputs and `head`).

    Example:
    >>> "depth" in options("unet"), "depth" in options("plain_cnn")
    (True, False)
    """
    builder = _builder(name)
    taken = {"input_shape", _outputs_argument(builder), "head"}
    return tuple(key for key in inspect.signature(builder).parameters if key not in taken)


def build(family, /, input_shape, outputs, head=None, **kwargs):
    """Builds a model of the zoo by family name.

    Every family is called the same way: `outputs` channels, and `head=None` meaning
    "binary" (one sigmoid channel) for one output and "semantic" (softmax) for more,
    whatever the family's own default; pass `head="regression"` for values.

    Args:
        family: one of `FAMILIES` ("unet", "segnet", "fcn", "plain_cnn"); positional, so that `name` is free
            for the family's own option (the model's name).
        input_shape: `(height, width, channels)`; sides may be None.
        outputs: output channels (classes, or 1 for a mask or a density map).
        head: "binary", "semantic" or "regression" (default: from `outputs`).
        **kwargs: the family's own options (`options(name)` lists them).

    Raises:
        ValueError: an unknown family or an option the family does not take, naming those it does.

    Example:
    >>> model = build("segnet", (None, None, 1), outputs=3, filters=4, depth=2)
    >>> head_of(model), model.output.shape[-1]
    ('semantic', 3)
    >>> build("unet", (None, None, 1), 1, filters=4, depth=2, name="membranes").name
    'membranes'
    """
    builder = _builder(family)
    unknown = sorted(set(kwargs) - set(options(family)))
    if unknown:
        raise ValueError(
            f"{family} has no option {', '.join(map(repr, unknown))}; it takes {', '.join(options(family))}."
        )
    head = resolve_head(head, outputs)
    return builder(input_shape, **{_outputs_argument(builder): outputs, "head": head}, **kwargs)


def _builder(name):
    if name not in FAMILIES:
        raise ValueError(f"Unknown model family {name!r}; kfcn has {', '.join(FAMILIES)}.")
    return FAMILIES[name]


def _outputs_argument(builder):
    return "out_channels" if "out_channels" in inspect.signature(builder).parameters else "num_classes"


def head_of(model):
    """What a model's (first) output means, read from the activation of the layer that makes it:
    "binary" (sigmoid), "semantic" (softmax) or "regression" (anything else: values, or logits).

    Works on any Keras model, kfcn's or not, loaded or built.

    Example:
    >>> head_of(unet((None, None, 1), num_classes=1, filters=4, depth=2))
    'binary'
    """
    return {"sigmoid": "binary", "softmax": "semantic"}.get(output_activation(model), "regression")


def output_activation(model):
    """The name of the activation of the layer that makes the model's (first) output, or None.

    Example:
    >>> output_activation(unet((None, None, 1), num_classes=3, filters=4, depth=2, logits=True))
    'linear'
    """
    names = getattr(model, "output_names", None) or [model.layers[-1].name]
    try:
        layer = model.get_layer(names[0])
    except ValueError:
        layer = model.layers[-1]
    return getattr(getattr(layer, "activation", None), "__name__", None)
