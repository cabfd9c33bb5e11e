"""CamVid road scenes: SegNet (pooling-index unpooling) against a U-Net of about the same size.

Both networks train on the same random crops of CamVid's 367 training images, with the
same loss, optimiser and number of steps, and are scored on the 101 validation images
at full size (480 x 360). CamVid's labels are 11 classes and 11 = void, which is left
out of the loss and of every score.

- SegNet (`kfcn.models.segnet`): VGG-style encoder, the decoder unpools with the
  encoder's argmax (Badrinarayanan 2015); filters 16, depth 4.
- U-Net (`kfcn.models.unet`): skip concatenation and transposed convolutions; its base
  width is chosen so that its parameter count is close to SegNet's.

The loss is the cross-entropy weighted by median-frequency class balancing (SegNet's
recipe: weight of class c = median frequency / frequency of c, void 0), so that poles,
signs and cyclists are not drowned by road and sky (`kfcn.training.median_frequency_weights`,
applied per pixel through the crop pipeline's weight map). Augmentation: horizontal flips only
(road scenes have an up and a down). `kfcn train --recipe camvid-unet` (or `camvid-segnet`)
trains the same networks from the command line.

Scores on the validation images, void excluded: global accuracy, class-average accuracy,
mIoU, and the IoU of each class. The better network by mIoU is saved as
`camvid_<family>.keras` in `--output-dir`: raw RGB 0-255 of any size in, 11 class
probabilities out.

    KERAS_BACKEND=tensorflow python examples/camvid_segmentation.py --quick   # a smoke test
    KERAS_BACKEND=tensorflow python examples/camvid_segmentation.py --jit --output-dir build/camvid \\
        --report saved_models/camvid_segmentation.json --figure build/camvid/camvid_networks.png

The full run (1,000 steps of 6 crops of 192x256 per network, XLA) takes about 50 minutes on
2 CPU cores (SegNet 27.6, U-Net 22.6 minutes); its scores are in saved_models/README.md. The
shipped `saved_models/camvid_unet.keras` is not this script's: `kfcn train --recipe
camvid-unet` trained it longer (its card, `saved_models/camvid_unet.md`, says how).
"""

from __future__ import annotations

import kfcn  # noqa: F401  (first: Keras and TensorFlow then start without their C++ log)

# isort: split
import argparse
import json
import os
import time
from pathlib import Path

import keras
import numpy as np
from figures import save_panels

import kfcn.saving
import kfcn.training
from kfcn.atomic import atomic_path
from kfcn.data import folder_dataset, load_pair, pair_files, random_crop_pipeline, read_image
from kfcn.data.augment import horizontal_flip
from kfcn.evaluation import confusion_matrix, confusion_scores
from kfcn.rendering import to_display

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "camvid"
CLASSES = (
    "sky", "building", "pole", "road", "pavement", "tree",
    "sign_symbol", "fence", "car", "pedestrian", "bicyclist",
)  # fmt: skip
VOID = len(CLASSES)  # label value 11
# The colours of the CamVid/SegNet class legend; void is black.
PALETTE = np.array(
    [
        [128, 128, 128], [128, 0, 0], [192, 192, 128], [128, 64, 128], [60, 40, 222], [128, 128, 0],
        [192, 128, 128], [64, 64, 128], [64, 0, 128], [64, 64, 0], [0, 128, 192], [0, 0, 0],
    ],
    dtype=np.uint8,
)  # fmt: skip
# SegNet-Basic on CamVid's test split (Badrinarayanan et al. 2015, Table 2), in %.
ANCHOR = {"global_accuracy": 82.8, "class_accuracy": 62.3, "mean_iou": 46.3}


def read_split(root, split, limit=None):
    """(images [(H, W, 3) float32 raw 0-255], labels [(H, W) int32 with 11 = void]) of one split."""
    pairs = pair_files(root / split / "images", root / split / "labels")[:limit]
    loaded = [load_pair(image, label, "index", len(CLASSES), VOID, channels=3) for image, label in pairs]
    return [image for image, _ in loaded], [label[..., 0] for _, label in loaded]


def median_frequency_weights(labels):
    """SegNet's class balancing of CamVid's classes (`kfcn.training.median_frequency_weights`, void
    ignored) and void's weight 0 after them: K + 1 weights, indexable by the label value."""
    weights = kfcn.training.median_frequency_weights(labels, len(CLASSES), ignore_class=VOID)
    return np.append(weights, 0.0).astype(np.float32)


def training_batches(root, args, class_weights):
    """Random crops with horizontal flips, each pixel weighted by its class (void 0)."""
    pairs = folder_dataset(
        root / "train" / "images", root / "train" / "labels", "index", len(CLASSES), VOID, channels=3
    )
    if args.train_limit:
        pairs = pairs.take(args.train_limit)
    return random_crop_pipeline(
        pairs,
        (args.crop_height, args.crop_width),
        batch_size=args.batch,
        augment=horizontal_flip,
        weight_map=kfcn.training.class_weight_map(class_weights, ignore_class=VOID),
        seed=args.seed,
    )


def build(family, args):
    common = {"num_classes": len(CLASSES), "depth": args.depth, "batch_norm": True, "input_range": (0, 255)}
    if family == "segnet":
        return kfcn.models.segnet((None, None, 3), filters=args.filters, name="camvid_segnet", **common)
    return kfcn.models.unet((None, None, 3), filters=args.unet_filters, name="camvid_unet", **common)


def train(family, batches, args):
    keras.utils.set_random_seed(args.seed)
    model = build(family, args)
    total = args.epochs * args.steps
    model.compile(
        optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(args.learning_rate, total)),
        loss=keras.losses.SparseCategoricalCrossentropy(ignore_class=VOID),
        jit_compile=args.jit,
    )
    started = time.time()
    model.fit(batches, epochs=args.epochs, steps_per_epoch=args.steps, shuffle=False, verbose=2 if args.quick else 1)
    return model, (time.time() - started) / 60


def scores_from_confusion(confusion):
    """Global accuracy, class-average accuracy, mIoU (%) and per-class IoU of a [truth, predicted] matrix."""
    scores = confusion_scores(confusion)
    return {
        "global_accuracy": 100 * scores["global_accuracy"],
        "class_accuracy": 100 * scores["class_accuracy"],
        "mean_iou": 100 * scores["mean_iou"],
        "iou_per_class": {name: round(100 * value, 2) for name, value in zip(CLASSES, scores["iou_per_class"])},
        "accuracy_per_class": {
            name: round(100 * value, 2) for name, value in zip(CLASSES, scores["accuracy_per_class"])
        },
    }


def evaluate(model, images, labels):
    """Scores on whole images (void excluded) and the predicted class maps."""
    confusion = np.zeros((len(CLASSES), len(CLASSES)), np.int64)
    predictions = []
    for image, label in zip(images, labels):
        predicted = kfcn.inference.predict(model, image).argmax(-1)
        confusion += confusion_matrix(predicted, label, len(CLASSES), ignore_class=VOID)
        predictions.append(predicted)
    return scores_from_confusion(confusion), predictions


def shown_images(count, rows=3):
    """The indices of the validation images the figure shows: `rows` of them, spread evenly."""
    return [int(index) for index in np.linspace(0, count - 1, rows).round()]


def class_legend():
    """(colour, name) of every CamVid class and void, for the figure's legend."""
    names = [name.replace("_", " ") for name in CLASSES] + ["void (not scored)"]
    return list(zip(PALETTE.tolist(), names))


def figure(path, images, labels, predictions, rows=3, title=None):
    """Rows of image, truth and each model's prediction, coloured with the CamVid legend (drawn below).

    `predictions` maps a network's name to its class maps, indexable by the image index
    (a list, or a dict holding the shown images only).
    """
    panels = []
    for index in shown_images(len(images), rows):
        row = [
            (to_display(images[index]), f"validation image {index}", None),
            (PALETTE[labels[index]], "ground truth", None),
        ]
        row += [(PALETTE[predicted[index]], f"{name} prediction", None) for name, predicted in predictions.items()]
        panels.append(row)
    save_panels(path, panels, panel_size=(3.2, 2.5), legend=class_legend(), legend_columns=6, title=title)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="CamVid folder with train/ and val/")
    parser.add_argument("--families", nargs="+", default=["segnet", "unet"], choices=["segnet", "unet"])
    parser.add_argument("--filters", type=int, default=16, help="SegNet's first-level filters")
    parser.add_argument("--unet-filters", type=int, default=12, help="the U-Net's (12: about SegNet's parameters)")
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--crop-height", type=int, default=192)
    parser.add_argument("--crop-width", type=int, default=256)
    parser.add_argument("--batch", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jit", action="store_true", help="XLA-compile the training step (the full run used it)")
    parser.add_argument("--train-limit", type=int, default=None, help="use only the first N training images")
    parser.add_argument("--val-limit", type=int, default=None, help="score only the first N validation images")
    parser.add_argument("--output-dir", default=None, help="save the better model here as camvid_<family>.keras")
    parser.add_argument("--report", default=None, help="write the scores as JSON here")
    parser.add_argument("--figure", default=None, help="write a PNG of predictions beside the truth here")
    parser.add_argument("--quick", action="store_true", help="tiny settings: checks that the script runs")
    args = parser.parse_args()
    if args.quick:
        args.filters, args.unet_filters, args.depth, args.epochs, args.steps = 4, 4, 2, 1, 2
        args.crop_height, args.crop_width, args.batch, args.train_limit, args.val_limit = 64, 64, 2, 6, 3

    root = Path(args.data)
    train_pairs = pair_files(root / "train" / "images", root / "train" / "labels")[: args.train_limit]
    class_weights = median_frequency_weights([read_image(label)[..., 0] for _, label in train_pairs])
    print("median-frequency class weights:", {c: round(float(w), 3) for c, w in zip(CLASSES, class_weights)})
    val_images, val_labels = read_split(root, "val", args.val_limit)
    batches = training_batches(root, args, class_weights)

    results, predictions, models = {}, {}, {}
    for family in args.families:
        model, minutes = train(family, batches, args)
        scores, predictions[family] = evaluate(model, val_images, val_labels)
        results[family] = {"parameters": int(model.count_params()), "training_minutes": round(minutes, 1), **scores}
        models[family] = model
        print(
            f"{family}: {results[family]['parameters']:,} parameters, {minutes:.1f} min; val global "
            f"{scores['global_accuracy']:.1f}, class average {scores['class_accuracy']:.1f}, "
            f"mIoU {scores['mean_iou']:.1f} (SegNet-Basic on test: {ANCHOR['global_accuracy']}, "
            f"{ANCHOR['class_accuracy']}, {ANCHOR['mean_iou']})"
        )
    best = max(results, key=lambda family: results[family]["mean_iou"])
    if args.output_dir:
        path = Path(args.output_dir) / f"camvid_{best}.keras"
        kfcn.saving.save_model(models[best], path)
        print(f"saved the better model by mIoU, {best}, to {path}")
    if args.report:
        settings = vars(args) | {"data": os.path.relpath(args.data)}  # no absolute path of this machine
        report = {
            "settings": settings,
            "classes": list(CLASSES),
            "class_weights": {c: round(float(w), 4) for c, w in zip(CLASSES, class_weights)},
            "validation_images": len(val_images),
            "anchor_segnet_basic_test": ANCHOR,
            "better_by_mean_iou": best,
            "results": results,
            "keras": keras.__version__,
            "backend": keras.backend.backend(),
        }
        with atomic_path(Path(args.report)) as temporary:
            temporary.write_text(json.dumps(report, indent=2) + "\n")
    if args.figure:
        names = {"segnet": "SegNet", "unet": "U-Net"}
        figure(args.figure, val_images, val_labels, {names[family]: maps for family, maps in predictions.items()})


if __name__ == "__main__":
    main()
