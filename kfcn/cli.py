"""Command line: `kfcn predict`, `kfcn export`, `kfcn receptive-field`.

kfcn predict kfcn/assets/models/unet_isbi.keras slice.png out.png --tile 512
kfcn export model.keras --format saved_model --output serving/isbi
kfcn export model.keras --format tflite --output model_int8.tflite --quantize int8 --representative images/
kfcn receptive-field model.keras

Images are read as raw pixel values (kfcn's input contract); the model scales them.
Errors are one line on stderr with exit status 2; --verbose shows TensorFlow's log too.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np


def _load(args):
    from kfcn.saving import load_model

    return load_model(args.model, safe_mode=not args.unsafe)


def _output_png(prediction, labels):
    if labels:
        classes = prediction[..., 0] > 0.5 if prediction.shape[-1] == 1 else prediction.argmax(-1)
        return classes.astype(np.uint8) * (255 if prediction.shape[-1] == 1 else 1)
    maps = prediction[..., 0] if prediction.shape[-1] == 1 else prediction.max(-1)
    return (np.clip(maps, 0, 1) * 255).round().astype(np.uint8)


def predict_command(args):
    from PIL import Image

    from kfcn.atomic import atomic_path, check_writable
    from kfcn.data.io import convert_channels, read_image
    from kfcn.inference import model_geometry, predict_tiled

    output = Path(args.output)
    if output.suffix.lower() != ".png":
        raise ValueError(f"The output {output} must be a .png file.")
    if output.is_dir():
        raise ValueError(f"The output {output} is a folder; give a .png file name.")
    check_writable(output.parent, "output folder")  # before minutes of prediction, not after
    if not Path(args.image).is_file():
        raise ValueError(f"Image file {args.image} does not exist.")
    model = _load(args)
    image = read_image(args.image, palette_indices=False)
    image = convert_channels(image, model_geometry(model).channels, args.image)
    prediction = predict_tiled(
        model, image, args.tile, overlap=args.overlap, blend=args.blend, batch_size=args.batch, tta=args.tta
    )
    with atomic_path(output) as temporary:
        Image.fromarray(_output_png(prediction, args.labels)).save(temporary, format="PNG")
    print(f"wrote {output} ({prediction.shape[0]}x{prediction.shape[1]}, {prediction.shape[-1]} channel(s))")


def export_command(args):
    import json

    from kfcn import export
    from kfcn.atomic import check_writable

    output = Path(args.output)
    check_writable(output if args.format == "saved_model" else output.parent, "output folder")
    model = _load(args)
    metadata = json.loads(args.metadata) if args.metadata else None
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
    from kfcn.data.io import list_images, read_image

    return [read_image(path, palette_indices=False).astype("float32") for path in list_images(folder).values()]


def receptive_field_command(args):
    from kfcn.analysis import receptive_field

    model = _load(args)
    receptive_field(model, input_size=None if args.size is None else (args.size, args.size)).summary()


def build_parser():
    parser = argparse.ArgumentParser(
        prog="kfcn", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--verbose", action="store_true", help="show TensorFlow's start-up log and full tracebacks")
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name, help_text, run):
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("model", help="a .keras file")
        sub.add_argument("--unsafe", action="store_true", help="load a trusted .keras file that holds code (Lambda)")
        sub.set_defaults(run=run)
        return sub

    predict = command("predict", "predict one image file tile by tile and write a PNG", predict_command)
    predict.add_argument("image", help="PNG, TIFF or JPEG (raw pixel values; the model scales them)")
    predict.add_argument("output", help="PNG to write (written atomically)")
    predict.add_argument("--tile", type=int, default=512)
    predict.add_argument("--overlap", type=int, default=None)
    predict.add_argument("--blend", default="none", choices=("none", "linear", "gaussian"))
    predict.add_argument("--batch", type=int, default=4)
    predict.add_argument("--tta", default=None, choices=("flips", "d4"))
    predict.add_argument("--labels", action="store_true", help="write class labels instead of probabilities")

    export = command("export", "export a model for TF Serving (SavedModel), TFLite or ONNX", export_command)
    export.add_argument("--format", required=True, choices=("saved_model", "tflite", "onnx"))
    export.add_argument(
        "--output", required=True, help="SavedModel: the base folder (versions go inside); else the file to write"
    )
    export.add_argument("--quantize", default=None, choices=("float16", "dynamic", "int8"), help="TFLite only")
    export.add_argument("--representative", default=None, help="folder of raw images to calibrate int8 on")
    export.add_argument("--input-size", type=int, nargs=2, default=None, metavar=("HEIGHT", "WIDTH"))
    export.add_argument("--version", type=int, default=None, help="SavedModel version (default: next free)")
    export.add_argument("--overwrite", action="store_true", help="replace an existing version or file")
    export.add_argument("--metadata", default=None, help="JSON object stored in the model card")

    field = command("receptive-field", "print the per-layer receptive-field table of a model", receptive_field_command)
    field.add_argument("--size", type=int, default=None, help="input side to trace at")
    return parser


def main(argv=None):
    """Entry point of the `kfcn` command.

    Example:
    >>> main(["--help"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    SystemExit: 0
    """
    args = build_parser().parse_args(argv)
    if not args.verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before TensorFlow is first imported
        os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")
    try:
        args.run(args)
    except (ValueError, FileNotFoundError, FileExistsError, OSError, RuntimeError) as error:
        if args.verbose:
            raise
        message = " ".join(str(error).split())  # one line
        print(f"kfcn {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"kfcn {args.command}: interrupted; nothing half-written was left behind", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
