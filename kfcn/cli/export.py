"""`kfcn export MODEL --format saved_model|tflite|onnx|web --output PATH`: deployable forms, written atomically."""

from __future__ import annotations

import sys
from pathlib import Path

from kfcn.cli.common import add_unsafe_option, load


def register(commands):
    text = "export a model for TF Serving (SavedModel), TFLite, ONNX or a web page (TFLite in the browser)"
    sub = commands.add_parser("export", help=text, description=text)
    sub.add_argument("model", help="a .keras file")
    add_unsafe_option(sub)
    sub.add_argument("--format", required=True, choices=tuple(EXPORTERS))
    sub.add_argument(
        "--output",
        required=True,
        help="SavedModel: the base folder (versions go inside); web: the page's folder; else the file to write",
    )
    sub.add_argument(
        "--quantize",
        default=None,
        choices=("float16", "dynamic", "int8", "float32"),
        help="TFLite (default float32) and web (default float16)",
    )
    sub.add_argument("--representative", default=None, help="folder of raw images to calibrate int8 on")
    sub.add_argument(
        "--input-size",
        type=int,
        nargs=2,
        default=None,
        metavar=("HEIGHT", "WIDTH"),
        help="TFLite: a fixed input size; web: the page's tile (default 512 512)",
    )
    sub.add_argument(
        "--runtime",
        default=None,
        help="web: a node_modules folder with @litertjs/core (default: kfcn's vendored copy, or web/node_modules "
        "of a source checkout; `make web-runtime` makes both)",
    )
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
    if args.format == "web":  # before the model loads: the runtime and the folder
        from kfcn.export.web import runtime_files

        runtime_files(args.runtime)
        if output.exists() and not args.overwrite:
            raise FileExistsError(f"{output} exists; pass --overwrite to replace it.")
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
        None if args.quantize == "float32" else args.quantize,
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


def _web(args, model, output, metadata):
    from kfcn.export.web import web

    representative = _representative_images(args.representative, model) if args.representative else None
    report = web(
        model,
        output,
        args.quantize or "float16",
        args.input_size,
        representative,
        runtime=args.runtime,
        overwrite=args.overwrite,
        metadata=metadata,
    )
    tflite = report["tflite"]
    print(
        f"wrote {report['folder']} ({report['bytes'] / 1e6:.1f} MB): {tflite['quantization']} TFLite "
        f"({tflite['bytes'] / 1e6:.2f} MB) on {report['tile'][0]}x{report['tile'][1]} tiles, overlap "
        f"{report['overlap'][0]} px; open it with `kfcn serve-web {output}`"
    )


# format -> (the function that writes it, the format-specific options it reads besides
# --output, --overwrite and --metadata, which every format takes).
EXPORTERS = {
    "saved_model": (_saved_model, ("version", "input_dtype")),
    "tflite": (_tflite, ("quantize", "representative", "input_size", "input_dtype")),
    "onnx": (_onnx, ()),
    "web": (_web, ("quantize", "representative", "input_size", "runtime")),
}
_DEFAULTS = {
    "version": None,
    "input_dtype": "float32",
    "quantize": None,
    "representative": None,
    "input_size": None,
    "runtime": None,
}


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
            f"{_listed(takers, 'and')}); drop {'it' if one else 'them'} or export to {_listed(takers, 'or')}."
        )


def _listed(names, conjunction):
    """'a', 'a and b', 'a, b and c'."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} {conjunction} {names[-1]}"


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
