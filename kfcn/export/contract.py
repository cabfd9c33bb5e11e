"""What an exported model promises its clients: input, output, sizes, in one JSON model card."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass

import keras

MODEL_CARD_NAME = "kfcn_model_card.json"


@dataclass
class ServingContract:
    """The input/output contract of an exported image-to-image model.

    Attributes:
        channels: image channels the client sends.
        input_range: `(low, high)` of the raw pixel values the graph scales itself,
            or None if the model takes values as given.
        input_name: the signature's input name, which spells the contract out
            (`pixels_0_255` for an 8-bit model).
        output_name: "probabilities", "logits" or "values".
        output_channels: channels of the output.
        head: "binary", "semantic", "regression" or "logits".
        multiple, minimum: sides the network itself takes are `minimum + k * multiple`;
            the exported graph mirror-pads any other size up to one and crops back.
        margin: context pixels a valid-padding network consumes per side (mirrored in).
        image_input, frame_input: the model's input names (the coordinate frame, if
            any, is filled in the graph with the whole image's frame).
        fixed_size: `(height, width)` of a model built for one size (it serves only
            that size), else None.
    """

    channels: int
    input_range: tuple | None
    input_name: str
    output_name: str
    output_channels: int
    head: str
    multiple: int
    minimum: int
    margin: int
    image_input: str = "image"
    frame_input: str | None = None
    fixed_size: tuple | None = None

    def model_card(self, model, export_format, metadata=None):
        """The `kfcn_model_card.json` content."""
        import kfcn

        low_high = None if self.input_range is None else [_number(v) for v in self.input_range]
        return {
            "format": export_format,
            "model_name": model.name,
            "parameters": int(model.count_params()),
            "kfcn_version": kfcn.__version__,
            "keras_version": keras.__version__,
            "input": {
                "name": self.input_name,
                "dtype": "float32",
                "shape": ["batch", "height", "width", self.channels],
                "value_range": low_high,
                "meaning": (
                    f"raw pixel values in [{low_high[0]}, {low_high[1]}] as stored (e.g. uint8 values cast to "
                    "float); the graph scales them itself"
                    if low_high
                    else "values as the model was trained on them (no scaling in the graph)"
                ),
                "sizes": "any height and width >= 1; the graph mirror-pads to a size the network takes and crops "
                "the output back"
                if self.fixed_size is None
                else f"exactly {self.fixed_size[0]}x{self.fixed_size[1]} (the model was built for that size)",
            },
            "output": {
                "name": self.output_name,
                "dtype": "float32",
                "shape": ["batch", "height", "width", self.output_channels],
                "meaning": _output_meaning(self.head, self.output_channels),
            },
            "network_sizes": {"multiple": self.multiple, "minimum": self.minimum, "margin_per_side": self.margin},
            "metadata": metadata or {},
        }

    def to_json(self):
        return json.dumps(asdict(self))


def _number(value):
    return int(value) if float(value).is_integer() else float(value)


def _output_meaning(head, channels):
    return {
        "binary": "probability of the foreground class per pixel (sigmoid)",
        "semantic": f"probability of each of {channels} classes per pixel (softmax, sums to 1)",
        "regression": "predicted values per pixel (linear)",
        "logits": "logits per pixel (apply sigmoid or softmax for probabilities)",
    }[head]


def exportable(model):
    """`model` as a functional graph (a Sequential model is wrapped); subclassed models are refused.

    Example:
    >>> seq = keras.Sequential([keras.Input((None, None, 1)), keras.layers.Conv2D(1, 3, padding="same")])
    >>> isinstance(exportable(seq), keras.Model)
    True
    """
    from kfcn.analysis.graph import functional_model

    if not isinstance(model, keras.Model):
        raise ValueError(f"Export takes a Keras model; got {type(model).__name__}.")
    return functional_model(model, "kfcn.export")


def serving_contract(model):
    """Reads the contract off a Keras model: channels, pixel range, head, accepted sizes.

    Example:
    >>> from kfcn.models import unet
    >>> contract = serving_contract(unet((None, None, 1), num_classes=1, filters=4, depth=2))
    >>> contract.input_name, contract.output_name, contract.multiple, contract.minimum
    ('pixels_0_255', 'probabilities', 4, 4)
    """
    from kfcn.inference.geometry import model_geometry

    if not isinstance(model, keras.Model) or not hasattr(model, "inputs") or not model.inputs:
        raise ValueError(
            "Export needs a functional or Sequential Keras model with an image input; a subclassed model has no "
            "graph to export. Wrap it: keras.Model(inputs, subclassed(inputs))."
        )
    if not any(len(t.shape) == 4 for t in model.inputs):
        raise ValueError(
            "The model has no image input (batch, height, width, channels), so there is nothing to serve as an "
            f"image-to-image model; its inputs are {[tuple(t.shape) for t in model.inputs]}."
        )
    geometry = model_geometry(model)
    if geometry.extra_inputs:
        raise ValueError(
            f"The model takes further map inputs {list(geometry.extra_inputs)} beside the image; export serves one "
            "image input. Export a model without extra_inputs, or concatenate the maps into the image channels."
        )
    image = next(t for t in model.inputs if t.name == geometry.image_input)
    fixed = tuple(image.shape[1:3])
    if None not in fixed:
        # A model built for one size serves that size only (its graph cannot take another).
        multiple, minimum = 1, max(fixed)
    else:
        # The sizes `kfcn.inference.predict` pads to, so that serving and predict agree exactly.
        multiple = geometry.multiple
        minimum = geometry.valid_input_size(model, 1)
    if math.isinf(geometry.context) and geometry.margin:
        raise ValueError("A model with a global receptive field and a valid-padding margin cannot be exported.")
    output = keras.tree.flatten(model.outputs)[0]
    head = _head_of(model)
    input_range = geometry.input_range
    input_name = "pixels" if input_range is None else "pixels_{}_{}".format(*(_number(v) for v in input_range))
    input_name = input_name.replace(".", "p").replace("-", "minus")
    return ServingContract(
        channels=int(geometry.channels),
        input_range=input_range,
        input_name=input_name,
        output_name={"logits": "logits", "regression": "values"}.get(head, "probabilities"),
        output_channels=int(output.shape[-1]),
        head=head,
        multiple=int(multiple),
        minimum=int(minimum),
        margin=int(geometry.margin),
        image_input=geometry.image_input,
        frame_input=geometry.frame_input,
        fixed_size=None if None in fixed else tuple(int(v) for v in fixed),
    )


def _head_of(model):
    last = model.get_layer(keras.tree.flatten(model.outputs)[0]._keras_history[0].name)
    activation = getattr(getattr(last, "activation", None), "__name__", None)
    return {"sigmoid": "binary", "softmax": "semantic", "linear": "regression"}.get(activation, "regression")
