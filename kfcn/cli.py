"""Command line: `kfcn predict`, `kfcn evaluate`, `kfcn export`, `kfcn inspect`, `kfcn receptive-field`.

kfcn predict kfcn/assets/models/unet_isbi.keras slice.png out.png --tile 512
kfcn export model.keras --format saved_model --output serving/isbi
kfcn export model.keras --format tflite --output model_int8.tflite --quantize int8 --representative images/
kfcn evaluate model.keras images/ labels/ --json scores.json
kfcn inspect model.keras --erf erf.png
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
    from kfcn.image_io import convert_channels, read_image
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
    try:
        metadata = json.loads(args.metadata) if args.metadata else None
    except json.JSONDecodeError as error:
        raise ValueError(
            f'--metadata is not valid JSON ({error}); pass an object such as \'{{"task": "isbi"}}\'.'
        ) from None
    model = _load(args)
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


def receptive_field_command(args):
    from kfcn.analysis import receptive_field

    model = _load(args)
    receptive_field(model, input_size=None if args.size is None else (args.size, args.size)).summary()


TASKS = ("segmentation", "counting", "restoration")
SEGMENTATION_COLUMNS = [
    ("pixel error", "pixel_error", ".4f"),
    ("Dice", "dice", ".4f"),
    ("Jaccard", "jaccard", ".4f"),
    ("mIoU", "mean_iou", ".4f"),
    ("class acc", "class_accuracy", ".4f"),
    ("Rand error", "adapted_rand_error", ".4f"),
    ("VI split", "vi_split", ".4f"),
    ("VI merge", "vi_merge", ".4f"),
]
BINARY_COLUMNS = [("Rand best", "rand_error_best", ".4f"), ("at", "rand_best_threshold", ".2f")]
COUNTING_COLUMNS = [
    ("predicted", "predicted_count", ".1f"),
    ("true", "true_count", "g"),
    ("abs error", "absolute_error", ".2f"),
    ("rel error", "relative_error", ".3f"),
]
RESTORATION_COLUMNS = [("PSNR (dB)", "psnr", ".2f"), ("SSIM", "ssim", ".4f")]


def _read_evaluation_pair(args, image_path, label_path, channels):
    """(raw float32 image with the model's channels, label as the task needs it)."""
    from kfcn.data import dots_from_image, load_pair
    from kfcn.data.io import as_float32, convert_channels, read_image

    if args.task == "segmentation":
        return load_pair(image_path, label_path, args.label_mode, args.num_classes, args.ignore_class, channels)
    image = as_float32(read_image(image_path, palette_indices=False))
    image = convert_channels(image, channels, image_path)
    target = read_image(label_path, palette_indices=False)
    if target.shape[:2] != image.shape[:2]:
        raise ValueError(
            f"Image {image_path} is {image.shape[1]}x{image.shape[0]} but its label {label_path} is "
            f"{target.shape[1]}x{target.shape[0]}: an image and its label must have the same size."
        )
    if args.task == "restoration":
        return image, target
    if target.shape[-1] < 3:
        raise ValueError(
            f"Counting label {label_path} has {target.shape[-1]} channel(s); counting labels are RGB dot images "
            "with one pure red (255, 0, 0) pixel per object."
        )
    return image, len(dots_from_image(target))


def _score(args, prediction, label):
    from kfcn import evaluation

    if args.task == "segmentation":
        return evaluation.segmentation_scores(
            prediction, label, args.label_mode, args.num_classes, args.ignore_class, args.threshold, border=args.border
        )
    if args.task == "counting":
        if prediction.shape[-1] != 1:
            raise ValueError(f"Counting needs a model with one density channel; this one gives {prediction.shape[-1]}.")
        return evaluation.counting_scores(prediction, label)
    return evaluation.restoration_scores(prediction, label)


def _columns(args):
    if args.task == "counting":
        return COUNTING_COLUMNS
    if args.task == "restoration":
        return RESTORATION_COLUMNS
    return SEGMENTATION_COLUMNS + (BINARY_COLUMNS if args.label_mode == "binary" else [])


def _table(names, rows, mean, columns):
    """Aligned columns: one row per image, then the mean (NaN: "-")."""

    def cell(value, spec):
        return "-" if np.isnan(value) else format(value, spec)

    width = max(len("image"), len("mean"), *(len(name) for name in names))
    widths = [max(len(header), 9) for header, _, _ in columns]
    lines = ["image".ljust(width) + "".join(f"  {h:>{w}}" for (h, _, _), w in zip(columns, widths))]
    lines.append("-" * len(lines[0]))
    for name, row in [*zip(names, rows), ("mean", mean)]:
        if name == "mean":
            lines.append("-" * len(lines[0]))
        cells = [cell(row[key], spec) for _, key, spec in columns]
        lines.append(name.ljust(width) + "".join(f"  {c:>{w}}" for c, w in zip(cells, widths)))
    return "\n".join(lines)


def _json_ready(value):
    """NaN and infinity become null: the file stays strict JSON."""
    if isinstance(value, dict):
        return {key: _json_ready(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(item) for item in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def evaluate_command(args):
    import json

    from tqdm.auto import tqdm

    from kfcn.atomic import atomic_path, check_writable
    from kfcn.data import pair_files
    from kfcn.evaluation import mean_scores
    from kfcn.inference import model_geometry, predict, predict_tiled

    if args.task == "segmentation" and args.label_mode == "index" and args.num_classes is None:
        raise ValueError("--label-mode index needs --num-classes K (labels hold class indices 0..K-1).")
    if args.ignore_class is not None and (args.task != "segmentation" or args.label_mode != "index"):
        raise ValueError("--ignore-class applies to --task segmentation with --label-mode index.")
    if not 0 < args.threshold < 1:
        raise ValueError(f"--threshold must lie strictly between 0 and 1; got {args.threshold}.")
    json_path = Path(args.json) if args.json else None
    if json_path is not None:
        if json_path.is_dir():
            raise ValueError(f"--json {json_path} is a folder; give a .json file name.")
        check_writable(json_path.parent, "--json folder")  # before minutes of prediction, not after
    pairs = pair_files(args.images, args.labels)
    model = _load(args)
    channels = model_geometry(model).channels
    # Every pair is read and checked before any prediction, so a bad file fails at once, by name.
    data = [_read_evaluation_pair(args, image, label, channels) for image, label in pairs]
    names, rows = [], []
    # A progress bar on a terminal only (disable=None): logs and pipes get the table alone.
    for (image_path, _), (image, label) in tqdm(
        list(zip(pairs, data)), desc="evaluating", unit="image", disable=None, leave=False
    ):
        if max(image.shape[:2]) <= args.tile:
            prediction = predict(model, image, tta=args.tta)
        else:
            prediction = predict_tiled(model, image, args.tile, batch_size=args.batch, tta=args.tta, progress=False)
        names.append(image_path.name)
        rows.append(_score(args, prediction, label))
    mean = mean_scores(rows)
    print(_table(names, rows, mean, _columns(args)))
    if args.task == "segmentation" and args.label_mode == "index":
        for key in ("jaccard_per_class", "dice_per_class"):
            values = "  ".join(f"{k}: {v:.4f}" for k, v in enumerate(mean[key]) if not np.isnan(v))
            print(f"{key.replace('_', ' ')} (mean over images): {values}")
    if json_path is not None:
        report = {
            "model": str(args.model),
            "images": str(args.images),
            "labels": str(args.labels),
            "task": args.task,
            "options": {
                key: getattr(args, key)
                for key in ("label_mode", "num_classes", "ignore_class", "threshold", "border", "tta")
            },
            "per_image": [{"image": name, **row} for name, row in zip(names, rows)],
            "mean": mean,
        }
        with atomic_path(json_path) as temporary:
            temporary.write_text(json.dumps(_json_ready(report), indent=2, allow_nan=False))
        print(f"wrote {json_path}")


def _head(model):
    """What the output means, from the last layer's activation."""
    activation = getattr(getattr(model.layers[-1], "activation", None), "__name__", None)
    meaning = {"sigmoid": "binary mask (sigmoid)", "softmax": "classes (softmax)", "linear": "values / logits (linear)"}
    return meaning.get(activation, f"activation {activation}" if activation else "unknown (no final activation)")


def _accepted_sizes(model, geometry):
    """A line on the input sides the model takes, with examples (and their output sides if they differ)."""
    static = tuple(model.inputs[0].shape[1:3])
    if all(side is not None for side in static):
        return f"fixed input size {static[0]}x{static[1]}"
    examples = []
    for wanted in (1, 64, 256, 512, 1024):
        size = geometry.valid_input_size(model, wanted)
        output = geometry.output_size(model, size)
        text = str(size) if output == size else f"{size} (-> {output})"
        if text not in examples:
            examples.append(text)
    if geometry.margin:
        rule = f"every {geometry.multiple} px, where each pooling stage gets an even size (output = input - 2 x margin)"
    else:
        rule = f"multiples of {geometry.multiple}"
    return f"accepted input sides: {rule}; e.g. {', '.join(examples)}"


def _layer_table(model):
    """One line a layer (name, type, output shape, parameters): `model.summary` without boxes or wrapping."""
    header = f"{'layer':<34}{'type':<24}{'output shape':<26}{'params':>12}"
    lines = [header, "-" * len(header)]
    for layer in model.layers:
        try:
            shape = str(tuple(layer.output.shape[1:]))
        except (AttributeError, ValueError):  # a layer used several times has no single output
            shape = "(several)"
        lines.append(f"{layer.name[:33]:<34}{type(layer).__name__[:23]:<24}{shape[:25]:<26}{layer.count_params():>12,}")
    return "\n".join(lines)


def inspect_command(args):
    from kfcn.analysis import effective_receptive_field, receptive_field
    from kfcn.atomic import atomic_path, check_writable
    from kfcn.inference import input_range, model_geometry

    erf_path = Path(args.erf) if args.erf else None
    if erf_path is not None:
        if erf_path.suffix.lower() != ".png":
            raise ValueError(f"--erf {erf_path} must be a .png file.")
        check_writable(erf_path.parent, "--erf folder")
    model = _load(args)
    total = model.count_params()
    trainable = int(sum(np.prod(weight.shape) for weight in model.trainable_weights))
    print(
        f"{args.model}: model {model.name!r}, {total:,} parameters ({trainable:,} trainable, "
        f"{total - trainable:,} non-trainable)\n"
    )
    print(_layer_table(model))
    geometry = model_geometry(model)
    scaling = input_range(model)
    print("\ninput contract:")
    print(f"  channels: {geometry.channels} (channels-last)")
    print(
        f"  pixels: raw values in [{scaling[0]:g}, {scaling[1]:g}], scaled to [0, 1] inside the model (input_scaling)"
        if scaling
        else "  pixels: taken as they come (the model has no input_scaling layer)"
    )
    print(f"  head: {_head(model)}, {model.outputs[0].shape[-1]} output channel(s)")
    print("geometry:")
    print(
        f"  total stride {geometry.multiple}, margin {geometry.margin} px (valid padding)"
        if geometry.margin
        else f"  total stride {geometry.multiple}, 'same' padding (output size = input size)"
    )
    print(f"  {_accepted_sizes(model, geometry)}\n")
    receptive_field(model).summary()
    if erf_path is not None:
        static = tuple(model.inputs[0].shape[1:3])
        side = static if all(static) else (geometry.valid_input_size(model, 128 + 2 * geometry.margin),) * 2
        erf = effective_receptive_field(model, (*side, geometry.channels), samples=4)
        with atomic_path(erf_path) as temporary:
            erf.save_png(temporary)
        print(
            f"\nwrote {erf_path}: effective receptive field at {side[0]}x{side[1]}: 95 % of the gradient within "
            f"{erf.radius_95} px of the centre ({erf.coverage:.0%} of the theoretical {erf.theoretical_size:g} px)"
        )


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

    evaluate = command("evaluate", "score a model on an image/label folder pair; a table and a JSON", evaluate_command)
    evaluate.add_argument("images", help="folder of images (raw pixel values)")
    evaluate.add_argument("labels", help="folder of labels paired by file name")
    evaluate.add_argument(
        "--task",
        default="segmentation",
        choices=TASKS,
        help="labels: class masks | RGB dot images (red dots) | clean target images",
    )
    evaluate.add_argument("--label-mode", default="binary", choices=("binary", "index"))
    evaluate.add_argument("--num-classes", type=int, default=None, help="classes K for --label-mode index")
    evaluate.add_argument("--ignore-class", type=int, default=None, help="label value left out of every score")
    evaluate.add_argument("--threshold", type=float, default=0.5, help="foreground threshold of a one-channel output")
    evaluate.add_argument(
        "--border",
        default="singletons",
        choices=("singletons", "thin"),
        help="binary Rand error / VI: predicted membrane pixels as one-pixel segments (SNEMI3D/ISBI script) "
        "or given to the nearest cell (the ISBI leaderboard's 'thinned' scores)",
    )
    evaluate.add_argument("--json", default=None, help="also write the scores to this JSON file (atomically)")
    evaluate.add_argument("--tile", type=int, default=512, help="tile side for images larger than it")
    evaluate.add_argument("--batch", type=int, default=4)
    evaluate.add_argument("--tta", default=None, choices=("flips", "d4"))

    inspect = command("inspect", "parameters, layers, input contract, valid sizes, receptive field", inspect_command)
    inspect.add_argument("--erf", default=None, metavar="PNG", help="write the effective receptive field heat map")

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
