"""TFLite export with builtin ops only: float32, float16, dynamic-range and full-integer int8."""

from __future__ import annotations

import logging
import tempfile
import warnings
from pathlib import Path

import numpy as np

from kfcn.arguments import is_integer
from kfcn.atomic import atomic_path
from kfcn.export.backend import on_tensorflow, run_in_tensorflow_child
from kfcn.export.contract import (
    checked_metadata,
    exportable,
    model_card_path,
    serving_contract,
    write_model_card,
)

QUANTIZATIONS = (None, "float16", "dynamic", "int8")
logger = logging.getLogger("kfcn.export")


def tflite(
    model,
    path,
    quantize=None,
    representative_data=None,
    input_shape=None,
    overwrite=True,
    max_samples=64,
    input_dtype="float32",
    metadata=None,
):
    """Converts `model` to a `.tflite` file that needs builtin ops only (no Flex, no custom op).

    The graph is the SavedModel's (see `saved_model`): raw pixel values in, the
    model's own scaling, mirror padding to the network's stride, output cropped back.
    With `input_shape=(height, width)` the input is fixed (the fastest for XNNPACK; no
    padding op remains when the size suits the network); without it the height and
    width are dynamic: call `interpreter.resize_tensor_input` before
    `allocate_tensors`. Every kfcn architecture converts with builtin ops only,
    SegNet's pooling-index unpooling included.

    Quantization:
        - None: float32.
        - "float16": float16 weights (half the size), float32 compute on most CPUs.
        - "dynamic": int8 weights, float activations.
        - "int8": full-integer ops with int8 weights and activations, calibrated on
          `representative_data`; the output stays a float32 tensor, the input is
          `input_dtype`. Activations are calibrated on the range the images cover:
          pixels beyond it saturate in the file. The report and the model card record
          that range (`calibration_range`), and a warning says when it leaves more
          than a tenth of the model's `input_range` uncovered.

    Input type: `input_dtype="float32"` takes the raw pixels as float32;
    `"uint8"` (a model whose `input_range` lies within [0, 255]) or `"uint16"` (above
    255) takes them as stored, as a camera or an image decoder gives them, and casts
    inside the graph (a builtin CAST op; exact). For `quantize="int8"` with uint8 input
    the input tensor is itself quantized, with scale 1 and zero point 0 pinned to
    the contract's 0-255 range (not the calibration images' range), so an int8 device
    reads the pixels as they are: no float op at the input, and every pixel value
    represented exactly. The wrong type for the model's pixels is refused.

    Model card: `<file name>.kfcn_model_card.json` beside the file (the SavedModel's card
    format, with the input's dtype and shape as this file takes them, and the
    quantization and ops) holds `metadata`. TFLite's converter has no supported way to
    embed free-form metadata in the file, so the card is a sidecar: ship both.

    Args:
        model: a functional or Sequential Keras image-to-image model.
        path: the `.tflite` file to write (atomically).
        quantize: None, "float16", "dynamic" or "int8".
        representative_data: for "int8": images as the client sends them (raw
            pixels), an iterable of (H, W[, C]) arrays or a `tf.data.Dataset` of
            images or of (image, label) pairs. Some tens of images are enough.
        input_shape: `(height, width)` for a fixed input, or None for dynamic sizes.
        overwrite: replace an existing file.
        max_samples: calibration images used at most.
        input_dtype: "float32", "uint8" or "uint16", the input tensor's type.
        metadata: a dict of JSON values stored in the model card (refused before
            anything is written if JSON cannot hold it).

    Returns:
        A dict report: path, size in bytes, quantization, op names, input and output details
        (a dynamic height or width is None in the shape), and the model card's path.

    Backends: as `saved_model` (a JAX or PyTorch model is converted in a TensorFlow child process).

    Example:
    >>> import tempfile, os
    >>> from kfcn.models import segnet
    >>> model = segnet((None, None, 3), num_classes=3, filters=2, depth=2)
    >>> report = tflite(model, os.path.join(tempfile.mkdtemp(), "segnet.tflite"), input_shape=(32, 48))
    >>> report["input"]["shape"], any(op.startswith("Flex") for op in report["ops"])
    ([1, 32, 48, 3], False)
    >>> report = tflite(model, os.path.join(tempfile.mkdtemp(), "segnet_uint8.tflite"), input_dtype="uint8")
    >>> report["input"]["dtype"], report["input"]["shape"], os.path.basename(report["model_card"])
    ('uint8', [1, None, None, 3], 'segnet_uint8.tflite.kfcn_model_card.json')
    """
    metadata = checked_metadata(metadata)
    if quantize not in QUANTIZATIONS:
        raise ValueError(f"`quantize` must be one of {QUANTIZATIONS}; got {quantize!r}.")
    if quantize == "int8" and representative_data is None:
        raise ValueError(
            "quantize='int8' calibrates activations on real inputs: pass representative_data (a few tens of raw "
            "images, e.g. a list of arrays or a tf.data.Dataset; --representative DIR on the command line)."
        )
    model = exportable(model)
    contract = serving_contract(model)
    input_dtype = contract.check_input_dtype(input_dtype)
    path = Path(path)
    if path.suffix != ".tflite":
        raise ValueError(f"TFLite files end in .tflite; got {path}.")
    card_path = model_card_path(path)
    for existing in (path, card_path):
        if existing.exists() and not overwrite:
            raise FileExistsError(f"{existing} exists; pass overwrite=True (--overwrite) to replace it.")
    height, width = _check_input_shape(model, contract, input_shape)
    samples = None if representative_data is None else _calibration_images(representative_data, contract, max_samples)
    if not on_tensorflow():
        kwargs = {"path": str(path), "quantize": quantize, "input_shape": input_shape, "overwrite": overwrite}
        kwargs.update(input_dtype=input_dtype, metadata=metadata)
        if samples is not None:  # calibration images cross to the child as nested lists
            kwargs["representative_data"] = [sample.tolist() for sample in samples]
        return run_in_tensorflow_child(model, "tflite", kwargs)
    content = _convert(model, contract, quantize, samples, height, width, input_dtype)
    shape = [1, height or "height", width or "width", contract.channels]
    card = contract.model_card(model, "tflite", metadata, input_dtype=input_dtype, input_shape=shape)
    with atomic_path(path, overwrite=overwrite) as temporary, atomic_path(card_path, overwrite=overwrite) as card_file:
        temporary.write_bytes(content)
        report = {**tflite_report(temporary, quantize), "path": str(path), "model_card": str(card_path)}
        card["tflite"] = {"file": path.name, "quantization": report["quantization"], "ops": report["ops"]}
        if quantize == "int8":
            report["calibration_range"] = _calibration_range(samples, contract)
            card["tflite"]["calibration_range"] = report["calibration_range"]
            card["tflite"]["calibration_note"] = CALIBRATION_NOTE
        write_model_card(card_file, card)
    logger.info("wrote %s (%d bytes, %s): ops %s", path, report["bytes"], quantize or "float32", report["ops"])
    return report


CALIBRATION_NOTE = (
    "int8 activations are calibrated on images whose pixels span calibration_range; pixels outside it saturate "
    "inside the network (the int8 result differs from the float model's there)"
)


def _calibration_range(samples, contract):
    """[lowest, highest] pixel of the calibration images; a warning when they leave part of the model's
    pixel range uncovered, since an int8 file saturates beyond what it was calibrated on."""
    low, high = (float(min(image.min() for image in samples)), float(max(image.max() for image in samples)))
    if contract.input_range is not None:
        first, last = (float(v) for v in contract.input_range)
        if (low - first) + (last - high) > 0.1 * (last - first):
            warnings.warn(
                f"The int8 calibration images span pixels {low:g} to {high:g} of the model's [{first:g}, {last:g}]: "
                "in the int8 file, brighter or darker pixels saturate inside the network. Calibrate on images that "
                "span what clients send (the range is recorded in the model card as calibration_range).",
                UserWarning,
                stacklevel=3,
            )
    return [low, high]


def _check_input_shape(model, contract, input_shape):
    if input_shape is None:
        return None, None
    try:
        height, width = input_shape
    except (TypeError, ValueError):
        raise ValueError(f"`input_shape` is (height, width) or None; got {input_shape!r}.") from None
    if not all(is_integer(v) for v in (height, width)):
        raise ValueError(f"`input_shape` takes whole numbers of pixels (height, width); got {input_shape!r}.")
    height, width = int(height), int(width)
    if height < 1 or width < 1:
        raise ValueError(f"`input_shape` needs positive sizes; got {input_shape!r}.")
    for axis, size, static in zip(("height", "width"), (height, width), model.inputs[0].shape[1:3]):
        if static is not None and static != size:
            raise ValueError(
                f"The model was built for input {axis} {static}, so it cannot take input_shape {axis} {size}. "
                f"Pass input_shape with {axis} {static}, or rebuild the model with input size None."
            )
    return height, width


def _calibration_images(data, contract, max_samples):
    """Up to `max_samples` (H, W, C) float32 images from arrays, a tf.data dataset or (image, label) pairs."""
    images = []
    for item in data:
        image = item[0] if isinstance(item, (tuple, list)) and len(item) == 2 and np.ndim(item[1]) >= 2 else item
        image = np.asarray(image, dtype="float32")
        if image.ndim == 2:
            image = image[..., None]
        if image.ndim == 4 and image.shape[0] == 1:
            image = image[0]
        if image.ndim != 3 or image.shape[-1] != contract.channels:
            raise ValueError(
                f"representative_data must hold (height, width, {contract.channels}) images; got shape {image.shape}."
            )
        if not np.all(np.isfinite(image)):
            raise ValueError("representative_data holds NaN or infinite values; calibrate on clean images.")
        if contract.input_range is not None:
            low, high = contract.input_range
            if image.min() < low or image.max() > high:
                raise ValueError(
                    f"representative_data holds values from {image.min():g} to {image.max():g}, but the model takes "
                    f"raw pixels in [{low:g}, {high:g}]: int8 calibrated on another range is wrong on real inputs. "
                    "Calibrate on images as the model's clients send them."
                )
            if high > 1 and image.max() <= 1 and image.size > 1:
                raise ValueError(
                    f"representative_data looks rescaled to [0, 1] (its maximum is {image.max():g}), but the model "
                    f"takes raw pixels in [{low:g}, {high:g}]; calibrate on the stored pixel values."
                )
        images.append(image)
        if len(images) >= max_samples:
            break
    if not images:
        raise ValueError("representative_data is empty; quantize='int8' needs some images to calibrate on.")
    return images


def _convert(model, contract, quantize, samples, height, width, input_dtype="float32"):
    import tensorflow as tf

    from kfcn.export.saved_model import write_saved_model
    from kfcn.export.serving import serving_function

    # int8 with uint8 pixels 0-255: a float graph whose input the converter quantizes to uint8,
    # pinned to scale 1 (the pixels themselves). Otherwise an integer input is cast in the graph.
    pinned = quantize == "int8" and input_dtype == "uint8" and tuple(map(float, contract.input_range)) == (0, 255)
    graph_dtype = "float32" if pinned else input_dtype
    serve = serving_function(model, contract, height, width, 1, input_dtype=graph_dtype, pinned_input=pinned)
    with tempfile.TemporaryDirectory(prefix="kfcn-tflite-") as folder:
        write_saved_model(model, folder, {"serving_default": serve})
        converter = tf.lite.TFLiteConverter.from_saved_model(folder, signature_keys=["serving_default"])
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if quantize in ("float16", "dynamic", "int8"):
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantize == "float16":
            converter.target_spec.supported_types = [tf.float16]
        if quantize == "int8":
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]

            def representative_dataset():
                for image in samples:
                    if height is not None:
                        image = _fit(image, height, width)
                    if graph_dtype != "float32":
                        image = np.rint(image).astype(graph_dtype)
                    yield {contract.input_name: image[None]}

            converter.representative_dataset = representative_dataset
        if pinned:
            converter.inference_input_type = tf.uint8
        try:
            content = converter.convert()
        except Exception as error:  # the converter raises ConverterError and others
            raise ValueError(
                "TFLite conversion with builtin ops only failed: a layer of this model needs an op that TFLite has "
                f"no builtin for (Flex or custom ops are not allowed). Converter said: {str(error)[-600:]}"
            ) from error
    if pinned:
        _check_raw_pixel_input(content)
    return content


def _check_raw_pixel_input(content):
    """Refuses a uint8-input int8 file whose input is not the raw pixels (scale 1, zero point 0)."""
    details = interpreter_class()(model_content=content).get_input_details()[0]
    if tuple(details["quantization"]) != (1.0, 0):
        raise RuntimeError(
            "The int8 TFLite file's uint8 input came out quantized with (scale, zero point) "
            f"{tuple(details['quantization'])}, not (1.0, 0), so it would not take the pixels as stored. Export with "
            "input_dtype='float32', and report this TensorFlow version's converter behaviour."
        )


def _fit(image, height, width):
    """Crops or mirror-pads a calibration image to the fixed input size."""
    image = image[:height, :width]
    pad = ((0, height - image.shape[0]), (0, width - image.shape[1]), (0, 0))
    return np.pad(image, pad, mode="symmetric") if any(p[1] for p in pad) else image


def tflite_report(path, quantize=None):
    """Op names, size and input/output details of a `.tflite` file (None in a shape: any size there).

    Example:
    >>> import tempfile, os
    >>> from kfcn.models import plain_cnn
    >>> path = os.path.join(tempfile.mkdtemp(), "m.tflite")
    >>> _ = tflite(plain_cnn((None, None, 1), num_layers=2, filters=2), path, input_shape=(8, 8))
    >>> report = tflite_report(path)
    >>> "CONV_2D" in report["ops"], report["output"]["name"]
    (True, 'values')
    """
    path = Path(path)
    interpreter = interpreter_class()(model_path=str(path))
    ops = sorted({op["op_name"] for op in interpreter._get_ops_details()})
    runner = interpreter.get_signature_runner("serving_default")
    inputs, outputs = runner.get_input_details(), runner.get_output_details()
    (input_name, input_detail), (output_name, output_detail) = next(iter(inputs.items())), next(iter(outputs.items()))
    return {
        "path": str(path),
        "bytes": path.stat().st_size,
        "quantization": quantize or "float32",
        "ops": ops,
        "input": {"name": input_name, "shape": _shape(input_detail), "dtype": input_detail["dtype"].__name__},
        "output": {"name": output_name, "shape": _shape(output_detail), "dtype": output_detail["dtype"].__name__},
    }


def _shape(detail):
    """The tensor's shape as the file takes it: None for a dynamic axis (`shape` shows 1 there)."""
    return [None if side < 0 else int(side) for side in detail["shape_signature"]]


def interpreter_class():
    """LiteRT's interpreter class (what edge devices run) where installed, else TensorFlow's.

    Example:
    >>> interpreter_class().__name__
    'Interpreter'
    """
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    return Interpreter
