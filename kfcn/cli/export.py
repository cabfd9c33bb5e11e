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
    sub.add_argument("--format", required=True, choices=tuple(EXPORTERS))
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

    from kfcn.atomic import check_writable
    from kfcn.export.contract import checked_metadata

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
    _refuse_options_of_other_formats(args)
    check_writable(output if args.format == "saved_model" else output.parent, "output folder")
    model = load(args)
    exporter, _ = EXPORTERS[args.format]
    exporter(args, model, output, metadata)


def _saved_model(args, model, output, metadata):
    import json

    from kfcn import export
    from kfcn.export.contract import exportable, serving_contract

    serving_contract(exportable(model)).check_input_dtype(args.input_dtype)
    folder = export.saved_model(model, output, version=args.version, overwrite=args.overwrite, metadata=metadata)
    card = json.loads((folder / export.MODEL_CARD_NAME).read_text())
    signatures = ", ".join(f"{name} ({dtype})" for name, dtype in card["serving"]["signatures"].items())
    print(f"wrote {folder} (TF Serving: --model_base_path={output.resolve()}); signatures: {signatures}")


def _tflite(args, model, output, metadata):
    from kfcn import export

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
    low, high = report.get("calibration_range", (None, None))
    print(
        f"wrote {report['path']} ({report['bytes'] / 1e6:.2f} MB, {report['quantization']}); input "
        f"{tensor['name']} {tensor['dtype']} {tensor['shape']}; ops: {', '.join(report['ops'])}; "
        f"model card {report['model_card']}"
        + (f"; int8 calibrated on pixels {low:g}-{high:g}" if (low, high) != (None, None) else "")
    )


def _onnx(args, model, output, metadata):
    from kfcn import export

    report = export.onnx(model, output, overwrite=args.overwrite, metadata=metadata)
    print(f"wrote {report['path']} ({report['bytes'] / 1e6:.2f} MB); model card {report['model_card']}")


# format -> (the function that writes it, the format-specific options it reads besides
# --output, --overwrite and --metadata, which every format takes).
EXPORTERS = {
    "saved_model": (_saved_model, ("version", "input_dtype")),
    "tflite": (_tflite, ("quantize", "representative", "input_size", "input_dtype")),
    "onnx": (_onnx, ()),
}
_DEFAULTS = {"version": None, "input_dtype": "float32", "quantize": None, "representative": None, "input_size": None}


def _refuse_options_of_other_formats(args):
    """An option the chosen format does not read is refused, not ignored: `--quantize int8` with
    `--format saved_model` would otherwise write an unquantised model without a word."""
    _, taken = EXPORTERS[args.format]
    given = [name for name, default in _DEFAULTS.items() if name not in taken and getattr(args, name) != default]
    if given:
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        takers = sorted(fmt for fmt, (_, options) in EXPORTERS.items() if any(name in options for name in given))
        one = len(given) == 1
        raise ValueError(
            f"{flags} {'does' if one else 'do'} not apply to --format {args.format} (only to "
            f"{' and '.join(takers)}); drop {'it' if one else 'them'} or export to {' or '.join(takers)}."
        )


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
