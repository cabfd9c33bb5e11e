"""Command line: `kfcn predict` segments image files tile by tile; `kfcn receptive-field` prints the table.

kfcn predict saved_models/unet_isbi.keras examples/data/isbi2012/images/slice_20.png out.png --tile 512
kfcn receptive-field saved_models/unet_isbi.keras
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np


def _write_png(array, path):
    """Writes a [0, 1] map (or class indices) as an 8-bit PNG via a temporary file: never half-written."""
    from PIL import Image

    path = Path(path)
    handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=path.suffix)
    os.close(handle)
    try:
        Image.fromarray(array).save(temporary)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def predict_command(args):
    import keras

    from kfcn.data.io import convert_channels, read_image, to_float
    from kfcn.inference import model_geometry, predict_tiled

    model = keras.saving.load_model(args.model)
    image = to_float(read_image(args.image, palette_indices=False))
    image = convert_channels(image, model_geometry(model).channels, args.image)
    prediction = predict_tiled(
        model, image, args.tile, overlap=args.overlap, blend=args.blend, batch_size=args.batch, tta=args.tta
    )
    if args.labels:
        labels = prediction[..., 0] > 0.5 if prediction.shape[-1] == 1 else prediction.argmax(-1)
        output = labels.astype(np.uint8) * (255 if prediction.shape[-1] == 1 else 1)
    else:
        output = np.clip(prediction[..., 0] if prediction.shape[-1] == 1 else prediction.max(-1), 0, 1) * 255
        output = output.astype(np.uint8)
    _write_png(output, args.output)
    print(f"wrote {args.output} ({prediction.shape[0]}x{prediction.shape[1]}, {prediction.shape[-1]} channel(s))")


def receptive_field_command(args):
    import keras

    from kfcn.analysis import receptive_field

    model = keras.saving.load_model(args.model)
    receptive_field(model, input_size=None if args.size is None else (args.size, args.size)).summary()


def main(argv=None):
    """Entry point of the `kfcn` command.

    Example:
    >>> main(["--help"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    SystemExit: 0
    """
    parser = argparse.ArgumentParser(
        prog="kfcn", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    predict = commands.add_parser("predict", help="predict one image file tile by tile and write a PNG")
    predict.add_argument("model", help="a .keras file")
    predict.add_argument("image", help="PNG, TIFF or JPEG")
    predict.add_argument("output", help="PNG to write")
    predict.add_argument("--tile", type=int, default=512)
    predict.add_argument("--overlap", type=int, default=None)
    predict.add_argument("--blend", default="none", choices=("none", "linear", "gaussian"))
    predict.add_argument("--batch", type=int, default=4)
    predict.add_argument("--tta", default=None, choices=("flips", "d4"))
    predict.add_argument("--labels", action="store_true", help="write class labels instead of probabilities")
    predict.set_defaults(run=predict_command)
    field = commands.add_parser("receptive-field", help="print the per-layer receptive-field table of a model")
    field.add_argument("model")
    field.add_argument("--size", type=int, default=None, help="input side to trace at")
    field.set_defaults(run=receptive_field_command)
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except (ValueError, FileNotFoundError) as error:
        print(f"kfcn {args.command}: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
