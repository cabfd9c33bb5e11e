"""`kfcn export MODEL --format saved_model|tflite|onnx --output PATH`: deployable forms, written atomically."""

from __future__ import annotations

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

    sub.set_defaults(run=run, needs_tensorflow=True)  # kfcn.data / kfcn.export


def run(args):
    import json

    from kfcn import export
    from kfcn.atomic import check_writable

    output = Path(args.output)
    check_writable(output if args.format == "saved_model" else output.parent, "output folder")
    try:
        metadata = json.loads(args.metadata) if args.metadata else None
    except json.JSONDecodeError as error:
        raise ValueError(
            f'--metadata is not valid JSON ({error}); pass an object such as \'{{"task": "isbi"}}\'.'
        ) from None
    model = load(args)
    if args.format == "saved_model":
        folder = export.saved_model(model, output, version=args.version, overwrite=args.overwrite, metadata=metadata)
        print(f"wrote {folder} (TF Serving: --model_base_path={output.resolve()})")
    elif args.format == "tflite":
        representative = _representative_images(args.representative) if args.representative else None
        input_shape = None if args.input_size is None else tuple(args.input_size)
        report = export.tflite(
            model, output, args.quantize, representative, input_shape=input_shape, overwrite=args.overwrite
        )
        print(
            f"wrote {report['path']} ({report['bytes'] / 1e6:.2f} MB, {report['quantization']}); input "
            f"{report['input']['name']} {report['input']['shape']}; ops: {', '.join(report['ops'])}"
        )
    else:
        report = export.onnx(model, output, overwrite=args.overwrite)
        print(f"wrote {report['path']} ({report['bytes'] / 1e6:.2f} MB)")


def _representative_images(folder):
    from kfcn.image_io import list_images, read_image

    return [read_image(path, palette_indices=False).astype("float32") for path in list_images(folder).values()]
