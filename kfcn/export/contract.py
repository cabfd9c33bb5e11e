"""What an exported model promises its clients: input, output, sizes, in one JSON model card."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass

import keras

from kfcn.models.registry import head_of

MODEL_CARD_NAME = "kfcn_model_card.json"
INPUT_DTYPES = ("float32", "uint8", "uint16")


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

    @property
    def pixel_dtype(self):
        """The integer type that holds this model's raw pixels: "uint8" for an `input_range` within
        [0, 255], "uint16" within [0, 65535]; None for a model without whole-number pixel bounds.

        Example:
        >>> from kfcn.models import plain_cnn
        >>> serving_contract(plain_cnn((None, None, 1), num_layers=1, input_range=(0, 4095))).pixel_dtype
        'uint16'
        """
        if self.input_range is None:
            return None
        low, high = (float(v) for v in self.input_range)
        if not (low.is_integer() and high.is_integer() and low >= 0 and high <= 65535):
            return None
        return "uint8" if high <= 255 else "uint16"

    def check_input_dtype(self, input_dtype):
        """`input_dtype` as a name from `INPUT_DTYPES` if this model can take it, else a `ValueError`.

        Integer input carries raw pixels as stored, so it needs the type that holds the
        model's `input_range` (`pixel_dtype`): uint8 for an 8-bit model, uint16 above 255.

        Example:
        >>> from kfcn.models import plain_cnn
        >>> contract = serving_contract(plain_cnn((None, None, 1), num_layers=1))
        >>> contract.check_input_dtype("uint8")
        'uint8'
        >>> try:
        ...     contract.check_input_dtype("uint16")
        ... except ValueError as error:
        ...     print(str(error).split(";")[0])
        input_dtype='uint16' is for models of pixels above 255
        """
        name = input_dtype if isinstance(input_dtype, str) else getattr(input_dtype, "name", None)
        if name not in INPUT_DTYPES:
            raise ValueError(f"`input_dtype` is one of {INPUT_DTYPES}; got {input_dtype!r}.")
        if name == "float32" or name == self.pixel_dtype:
            return name
        if self.pixel_dtype is None:
            what = (
                "no input_range: it takes values as given, not stored pixels"
                if self.input_range is None
                else "input_range [{}, {}], which no unsigned integer type of 16 bits or less holds exactly".format(
                    *(_number(v) for v in self.input_range)
                )
            )
            raise ValueError(
                f"input_dtype={name!r} sends raw pixels as stored, but this model has {what}. Export it with "
                "input_dtype='float32'."
            )
        low, high = (_number(v) for v in self.input_range)
        if name == "uint16":
            raise ValueError(
                f"input_dtype='uint16' is for models of pixels above 255; this model takes raw pixels in [{low}, "
                f"{high}] (its input_range): export it with input_dtype='uint8' (or 'float32')."
            )
        raise ValueError(
            f"input_dtype='uint8' cannot carry this model's pixels: it takes raw values in [{low}, {high}] (its "
            "input_range), above uint8's 255. Export it with input_dtype='uint16' (or 'float32')."
        )

    def model_card(self, model, export_format, metadata=None, input_dtype="float32", input_shape=None):
        """The `kfcn_model_card.json` content: the input as the file takes it (`input_dtype`,
        `input_shape`, default `[batch, height, width, channels]`), the output, `metadata`."""
        import kfcn

        low_high = None if self.input_range is None else [_number(v) for v in self.input_range]
        stored = f"as stored ({'e.g. uint8 values cast to float' if input_dtype == 'float32' else input_dtype})"
        shape = input_shape or ["batch", "height", "width", self.channels]
        converted_for = shape[1:3] if all(isinstance(side, int) for side in shape[1:3]) else None
        if self.fixed_size is not None:
            sizes = f"exactly {self.fixed_size[0]}x{self.fixed_size[1]} (the model was built for that size)"
        elif converted_for is not None:  # a TFLite file converted for one size: it takes no other
            sizes = (
                f"exactly {converted_for[0]}x{converted_for[1]} (this file was converted for that size; the graph "
                "mirror-pads it to a size the network takes and crops the output back)"
            )
        else:
            sizes = (
                "any height and width >= 1; the graph mirror-pads to a size the network takes and crops the output back"
            )
        return {
            "format": export_format,
            "model_name": model.name,
            "parameters": int(model.count_params()),
            "kfcn_version": kfcn.__version__,
            "keras_version": keras.__version__,
            "input": {
                "name": self.input_name,
                "dtype": input_dtype,
                "shape": shape,
                "value_range": low_high,
                "meaning": (
                    f"raw pixel values in [{low_high[0]}, {low_high[1]}] {stored}; the graph scales them itself"
                    if low_high
                    else "values as the model was trained on them (no scaling in the graph)"
                ),
                "sizes": sizes,
            },
            "output": {
                "name": self.output_name,
                "dtype": "float32",
                "shape": [*shape[:3], self.output_channels],  # the input's batch and size
                "meaning": _output_meaning(self.head, self.output_channels),
            },
            "network_sizes": {"multiple": self.multiple, "minimum": self.minimum, "margin_per_side": self.margin},
            "metadata": checked_metadata(metadata),
        }

    def to_json(self):
        return json.dumps(asdict(self))


def model_card_path(path):
    """Where the model card of a single-file export goes: beside it, named after the whole file name.

    Example:
    >>> model_card_path("models/isbi_int8.tflite").as_posix()
    'models/isbi_int8.tflite.kfcn_model_card.json'
    """
    from pathlib import Path

    path = Path(path)
    return path.with_name(f"{path.name}.{MODEL_CARD_NAME}")


def write_model_card(path, card):
    """Writes `card` (a `model_card` dict) as strict JSON to `path`, the one writer of every export's card."""
    from pathlib import Path

    Path(path).write_text(json.dumps(card, indent=2, allow_nan=False) + "\n")


def checked_metadata(metadata):
    """`metadata` as a dict the model card can hold, or a `ValueError` naming the key that JSON cannot.

    An export refuses it before writing anything: a model card must read back as the
    dict it was given, so only str keys and JSON values (str, finite int or float,
    bool, None, lists and dicts of them) pass; NumPy values, sets, functions, NaN and
    infinity do not.

    Example:
    >>> checked_metadata({"data": "isbi", "dice": 0.91, "slices": [20, 24]})
    {'data': 'isbi', 'dice': 0.91, 'slices': [20, 24]}
    >>> try:
    ...     checked_metadata({"scores": {"dice": float("nan")}})
    ... except ValueError as error:
    ...     print(str(error).split(";")[0])
    metadata['scores']['dice'] is nan, which JSON cannot hold (it has no NaN or infinity)
    """
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise ValueError(
            f"`metadata` is a dict written into the model card, e.g. {{'data': 'isbi'}}; got {type(metadata).__name__}."
        )
    _check_json_value(metadata, "metadata")
    return metadata


def _check_json_value(value, where):
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(
                    f"{where} has the key {key!r} ({type(key).__name__}); the model card is JSON, whose keys are "
                    f"strings: use str({key!r}) as the key."
                )
            _check_json_value(item, f"{where}[{key!r}]")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_json_value(item, f"{where}[{index}]")
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValueError(
            f"{where} is {value}, which JSON cannot hold (it has no NaN or infinity); store None or a string such "
            f"as {str(value)!r} instead."
        )
    elif not (value is None or isinstance(value, (str, bool, int, float))):
        kind = f"{type(value).__module__}.{type(value).__qualname__}".removeprefix("builtins.")
        raise ValueError(
            f"{where} is a {kind}, which JSON cannot hold, and the metadata goes into the model card as JSON. "
            "Convert it first (an array with .tolist(), a NumPy number with float() or int(), a set with "
            "sorted()) or leave it out."
        )


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
    """`model` as a functional graph (a Sequential model is wrapped) computing in float32; subclassed models are
    refused.

    Every export computes in float32 (or in the quantization asked for): a model in a mixed
    policy, e.g. one loaded from a mixed-precision run or made by `kfcn.models.with_policy`,
    is exported from its float32 copy, since TFLite and ONNX have no builtin bfloat16
    convolution and a served bfloat16 graph runs emulated, slowly, on most CPUs.

    Example:
    >>> seq = keras.Sequential([keras.Input((None, None, 1)), keras.layers.Conv2D(1, 3, padding="same")])
    >>> isinstance(exportable(seq), keras.Model)
    True
    >>> from kfcn.models import unet, with_policy
    >>> exportable(with_policy(unet((None, None, 1), filters=2, depth=1), "mixed_bfloat16")).layers[3].compute_dtype
    'float32'
    """
    from kfcn.analysis.graph import functional_model
    from kfcn.finite_weights import check_finite_weights
    from kfcn.models.precision import with_policy

    if not isinstance(model, keras.Model):
        raise ValueError(f"Export takes a Keras model; got {type(model).__name__}.")
    check_finite_weights(model)
    return with_policy(functional_model(model, "kfcn.export"), "float32")


def serving_contract(model):
    """Reads the contract off a Keras model: channels, pixel range, head, accepted sizes.

    Example:
    >>> from kfcn.models import unet
    >>> contract = serving_contract(unet((None, None, 1), num_classes=1, filters=4, depth=2))
    >>> contract.input_name, contract.output_name, contract.multiple, contract.minimum
    ('pixels_0_255', 'probabilities', 4, 4)
    """
    from kfcn.analysis.geometry import model_geometry

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
    from kfcn.analysis import check_fully_convolutional

    check_fully_convolutional(model, "kfcn.export")
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
    head = head_of(model)
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
