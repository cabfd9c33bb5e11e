"""`kfcn evaluate IMAGES LABELS [--model PATH]`: a model's scores on an image/label folder pair, a table and a JSON."""

from __future__ import annotations

import sys

from kfcn.cli.common import add_model_option, check_json_path, file_sha256, load, model_path, table, write_json

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


def register(commands):
    text = "score a model on an image/label folder pair: a table, and a JSON with --json"
    sub = commands.add_parser("evaluate", help=text, description=text + ". Without --model the shipped ISBI U-Net.")
    sub.add_argument("images", help="folder of images (raw pixel values)")
    sub.add_argument("labels", help="folder of labels paired by file name")
    add_model_option(sub)
    sub.add_argument(
        "--task",
        default="segmentation",
        choices=TASKS,
        help="labels: class masks | dot images (a pure red pixel of an RGB image or a non-zero pixel of a "
        "single-channel one per object, as kfcn train --label-mode density reads them) | clean target images",
    )
    sub.add_argument("--label-mode", default="binary", choices=("binary", "index"))
    sub.add_argument("--num-classes", type=int, default=None, help="classes K for --label-mode index")
    sub.add_argument("--ignore-class", type=int, default=None, help="label value left out of every score")
    sub.add_argument("--threshold", type=float, default=0.5, help="foreground threshold of a one-channel output")
    sub.add_argument(
        "--class-names",
        default=None,
        help="comma-separated names of the classes 0..K-1, for the per-class table (e.g. CamVid's sky,building,...)",
    )
    sub.add_argument(
        "--border",
        default="singletons",
        choices=("singletons", "thin"),
        help="binary Rand error / VI: predicted membrane pixels as one-pixel segments (SNEMI3D/ISBI script) "
        "or given to the nearest cell (the ISBI leaderboard's 'thinned' scores)",
    )
    sub.add_argument("--json", default=None, help="also write the scores to this JSON file (atomically)")
    sub.add_argument("--tile", type=int, default=512, help="tile side for images larger than it")
    sub.add_argument("--batch", type=int, default=4)
    sub.add_argument("--tta", default=None, choices=("flips", "d4"))

    sub.set_defaults(run=run, needs_tensorflow=True)  # kfcn.data / kfcn.export


def _read_evaluation_pair(args, image_path, label_path, channels, input_range, conversions):
    """(raw float32 image with the model's channels, label as the task needs it); the image's bit
    depth is checked against the model's input range first (`kfcn.image_io.check_bit_depth`)."""
    from kfcn.data import load_pair
    from kfcn.data.density import dot_mask
    from kfcn.image_io import as_float32, check_bit_depth, read_image, read_model_input, stored_dtype
    from kfcn.inference.runner import check_pixel_range

    if args.task == "segmentation":
        check_bit_depth(stored_dtype(image_path), input_range, image_path)
        pair = load_pair(
            image_path, label_path, args.label_mode, args.num_classes, args.ignore_class, channels, conversions
        )
        check_pixel_range(pair[0], input_range, f"image {image_path}")  # named here, not by the prediction later
        return pair
    image = as_float32(read_model_input(image_path, channels, input_range, conversions))
    check_pixel_range(image, input_range, f"image {image_path}")
    target = read_image(label_path, palette_indices=False)
    if target.shape[:2] != image.shape[:2]:
        raise ValueError(
            f"Image {image_path} is {image.shape[1]}x{image.shape[0]} but its label {label_path} is "
            f"{target.shape[1]}x{target.shape[0]}: an image and its label must have the same size."
        )
    if args.task == "restoration":
        return image, target
    return image, int(dot_mask(target, str(label_path)).sum())  # the rule kfcn train --label-mode density reads


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


def run(args):
    from kfcn.data import pair_files
    from kfcn.evaluation import confusion_scores, isbi2012_scores_from_counts, mean_scores
    from kfcn.inference import model_geometry

    _check_options(args)
    json_path = check_json_path(args.json) if args.json else None  # before minutes of prediction, not after
    pairs = pair_files(args.images, args.labels)
    model = load(args)
    data = _read_every_pair(args, pairs, model_geometry(model))
    names, rows, confusion, isbi2012_counts = _score_every_pair(args, model, pairs, data)
    mean = mean_scores(rows)
    print(table(names, rows, _columns(args), footer=("mean", mean)))
    whole_set = None
    if args.task == "segmentation":
        whole_set = confusion_scores(confusion, args.ignore_class)
        if args.label_mode == "binary":
            whole_set["isbi2012_original"] = isbi2012_scores_from_counts(isbi2012_counts)
        print(_whole_set_text(whole_set, _class_names(args)))
    if json_path is not None:
        write_json(json_path, _report(args, model, names, rows, mean, whole_set, confusion))
        print(f"wrote {json_path}")


def _class_names(args):
    classes = 2 if args.label_mode == "binary" else args.num_classes
    if args.class_names is None:
        return [str(index) for index in range(classes)]
    return [name.strip() for name in args.class_names.split(",")]


def _whole_set_text(scores, class_names):
    """The whole set's scores (one confusion matrix summed over the images) and a table per class."""
    lines = [
        "",
        "whole set (one confusion matrix over every labelled pixel, as CamVid results are reported): "
        f"global accuracy {scores['global_accuracy']:.4f}, class average {scores['class_accuracy']:.4f}, "
        f"mIoU {scores['mean_iou']:.4f}",
    ]
    rows = [
        {"iou": iou, "accuracy": accuracy, "pixels": pixels}
        for iou, accuracy, pixels in zip(
            scores["iou_per_class"], scores["accuracy_per_class"], scores["pixels_per_class"]
        )
    ]
    columns = [("IoU", "iou", ".4f"), ("accuracy", "accuracy", ".4f"), ("pixels", "pixels", ",d")]
    lines.append(table(class_names, rows, columns, first="class"))
    original = scores.get("isbi2012_original")
    if original:
        lines.append(
            "as the ISBI 2012 challenge ranked entries until 2015 and the U-Net paper reports them (1 - the best "
            f"F-score over thresholds, counts pooled over the images): pixel error {original['pixel_error']:.4f} "
            f"(at {original['pixel_threshold']:g}), Rand error {original['rand_error']:.4f} "
            f"(at {original['rand_threshold']:g})"
        )
    return "\n".join(lines)


def _check_options(args):
    if args.task == "segmentation" and args.label_mode == "index" and args.num_classes is None:
        raise ValueError("--label-mode index needs --num-classes K (labels hold class indices 0..K-1).")
    if args.ignore_class is not None and (args.task != "segmentation" or args.label_mode != "index"):
        raise ValueError("--ignore-class applies to --task segmentation with --label-mode index.")
    if not 0 < args.threshold < 1:
        raise ValueError(f"--threshold must lie strictly between 0 and 1; got {args.threshold}.")
    if args.class_names is not None:
        if args.task != "segmentation":
            raise ValueError("--class-names applies to --task segmentation.")
        classes = 2 if args.label_mode == "binary" else args.num_classes
        names = [name.strip() for name in args.class_names.split(",")]
        if len(names) != classes or not all(names):
            raise ValueError(
                f"--class-names gives {len(names)} name(s) ({args.class_names!r}) for {classes} classes: give one "
                "non-empty name per class 0..K-1, comma-separated."
            )


def _read_every_pair(args, pairs, geometry):
    """Every pair read and checked before any prediction, so that a bad file fails at once, by name."""
    from kfcn.image_io import ChannelConversions

    conversions = ChannelConversions()
    data = [
        _read_evaluation_pair(args, image, label, geometry.channels, geometry.input_range, conversions)
        for image, label in pairs
    ]
    if conversions.summary():  # one line for the run, before the predictions
        print(f"kfcn evaluate: note: {conversions.summary()}", file=sys.stderr)
    return data


def _score_every_pair(args, model, pairs, data):
    """(image names, score rows, the confusion matrix summed over the images or None), predicting each
    image whole or tiled (predict_tiled decides)."""
    from tqdm.auto import tqdm

    from kfcn.evaluation import isbi2012_original_counts, segmentation_confusion
    from kfcn.inference import predict_tiled

    names, rows, confusion, isbi2012_counts = [], [], None, 0
    # A progress bar on a terminal only (disable=None): logs and pipes get the table alone.
    for (image_path, _), (image, label) in tqdm(
        list(zip(pairs, data)), desc="evaluating", unit="image", disable=None, leave=False
    ):
        prediction = predict_tiled(model, image, args.tile, batch_size=args.batch, tta=args.tta, progress=False)
        names.append(image_path.name)
        rows.append(_score(args, prediction, label))
        if args.task == "segmentation":
            one = segmentation_confusion(
                prediction, label, args.label_mode, args.num_classes, args.ignore_class, args.threshold
            )
            confusion = one if confusion is None else confusion + one
            if args.label_mode == "binary":
                isbi2012_counts = isbi2012_counts + isbi2012_original_counts(prediction, label)
    return names, rows, confusion, isbi2012_counts


def _options_that_applied(args, output_channels):
    """The options that shaped the scores, and no other: a threshold only for a one-channel output,
    the border rule only for binary labels (the Rand error of their segments), classes only for index
    labels, so that a report (and the card made from it) never states a setting that did nothing."""
    if args.task != "segmentation":
        return {"tta": args.tta}
    keys = ["label_mode"]
    if args.label_mode == "index":
        keys += ["num_classes", "ignore_class"]
    if output_channels == 1:
        keys.append("threshold")
    if args.label_mode == "binary":
        keys.append("border")
    return {key: getattr(args, key) for key in [*keys, "tta"]}


def _report(args, model, names, rows, mean, whole_set, confusion):
    report = {
        "model": str(model_path(args)),
        "model_sha256": file_sha256(model_path(args)),
        "parameters": int(model.count_params()),
        "images": str(args.images),
        "labels": str(args.labels),
        "task": args.task,
        "options": _options_that_applied(args, model.output_shape[-1]),
        "per_image": [{"image": name, **row} for name, row in zip(names, rows)],
        "mean": mean,
    }
    if whole_set is not None:
        report["whole_set"] = {"class_names": _class_names(args), **whole_set, "confusion": confusion.tolist()}
    return report
