"""`kfcn export MODEL --format saved_model|tflite|onnx --output PATH`: deployable forms, written atomically."""

from __future__ import annotations

import sys
from pathlib import Path

from kfcn.cli.common import add_unsafe_option, load


def register(commands):
    text = "export a model for TF Serving (SavedModel), TFLite or ONNX"
    sub = commands.add_parser("export", help=text, description=text)
    sub.add_argument("model", help="a .keras file")
    add_unsafe_option(sub)
    sub.add_argument("--format", required=True, choices=("saved_model", "tflite", "onnx"))
    sub.add_argument(
        "--output", required=True, help="SavedModel: the base folder (versions go inside); else the file to write"
    )
    sub.add_argument("--quantize", default=None, choices=("float16", "dynamic", "int8"), help="TFLite only")
    sub.add_argument("--representative", default=None, help="folder of raw images to calibrate int8 on")
    sub.add_argument("--input-size", type=int, nargs=2, default=None, metavar=("HEIGHT", "WIDTH"))
    sub.add_argument("--version", type=int, default=None, help="SavedModel version (default: next free)")
    sub.add_argument("--overwrite", action="store_true", help="replace an existing version or file")
    sub.add_argument("--metadata", default=None, help="JSON object stored in the model card")
    sub.add_argument(
        "--input-dtype",
        default="float32",
        choices=("float32", "uint8", "uint16"),
        help="TFLite: the input tensor's type; uint8 (8-bit models) or uint16 (models of pixels above 255) takes "
        "raw pixels as stored. A SavedModel always has serving_default (float32) and serving_uint8 or "
        "serving_uint16; here the flag checks that the model takes that type",
    )

    sub.set_defaults(run=run, needs_tensorflow=True)  # kfcn.data / kfcn.export


def run(args):
    import json

    from kfcn import export
    from kfcn.atomic import check_writable
    from kfcn.export.contract import checked_metadata, exportable, serving_contract

    output = Path(args.output)
    try:
        metadata = json.loads(args.metadata) if args.metadata else None
    except json.JSONDecodeError as error:
        raise ValueError(
            f'--metadata is not valid JSON ({error}); pass an object such as \'{{"task": "isbi"}}\'.'
        ) from None
    try:
        metadata = checked_metadata(metadata)
    except ValueError as error:
        raise ValueError(f"--metadata: {error}") from None
    if args.format == "onnx" and args.input_dtype != "float32":
        raise ValueError(f"--input-dtype {args.input_dtype} is for tflite and saved_model; ONNX takes float32 input.")
    check_writable(output if args.format == "saved_model" else output.parent, "output folder")
    model = load(args)
    if args.format == "saved_model":
        serving_contract(exportable(model)).check_input_dtype(args.input_dtype)
        folder = export.saved_model(model, output, version=args.version, overwrite=args.overwrite, metadata=metadata)
        card = json.loads((folder / export.MODEL_CARD_NAME).read_text())
        signatures = ", ".join(f"{name} ({dtype})" for name, dtype in card["serving"]["signatures"].items())
        print(f"wrote {folder} (TF Serving: --model_base_path={output.resolve()}); signatures: {signatures}")
    elif args.format == "tflite":
        representative = _representative_images(args.representative, model) if args.representative else None
        input_shape = None if args.input_size is None else tuple(args.input_size)
        report = export.tflite(
            model,
            output,
            args.quantize,
            representative,
            input_shape=input_shape,
            overwrite=args.overwrite,
            input_dtype=args.input_dtype,
            metadata=metadata,
        )
        tensor = report["input"]
        print(
            f"wrote {report['path']} ({report['bytes'] / 1e6:.2f} MB, {report['quantization']}); input "
            f"{tensor['name']} {tensor['dtype']} {tensor['shape']}; ops: {', '.join(report['ops'])}; "
            f"model card {report['model_card']}"
        )
    else:
        report = export.onnx(model, output, overwrite=args.overwrite, metadata=metadata)
        print(f"wrote {report['path']} ({report['bytes'] / 1e6:.2f} MB); model card {report['model_card']}")


def _representative_images(folder, model):
    """The calibration images, read by the rule of every verb (`kfcn.image_io.read_model_input`)."""
    from kfcn.image_io import ChannelConversions, list_images, read_model_input
    from kfcn.inference import model_geometry

    geometry, conversions = model_geometry(model), ChannelConversions()
    images = [
        read_model_input(path, geometry.channels, geometry.input_range, conversions).astype("float32")
        for path in list_images(folder).values()
    ]
    if conversions.summary():
        print(f"kfcn export: note: {conversions.summary()}", file=sys.stderr)
    return images
