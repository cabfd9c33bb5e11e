"""Robustness to contour errors: the ISBI U-Net trained on clean labels and on labels with moved contours.

The claim to test: an FCN trained on annotations whose contours are off by a few pixels,
one way on one cell and the other way on the next, still finds the true membranes,
because the errors are random and average out over many cells. Two U-Nets with the
shipped model's architecture and recipe (`examples/train_isbi.py`: crops, elastic
augmentation, the U-Net weight map, cross-entropy + j2) train on slices 00-19 for the
same steps from the same seed, hence the same initial weights, crops and augmentation:

- "clean": the published labels;
- "perturbed": every cell of every training label eroded or dilated by its own random
  1-3 px (`kfcn.data.perturb_contours`, drawn once per slice), about 12 % of the pixels
  changed.

Both are scored against the clean labels of the held-out slices 20-24: pixel error at
0.5 and the adapted Rand error at its best threshold (the ISBI 2012 metrics,
`kfcn.evaluation.segmentation_scores`), per seed and in the mean.

    KERAS_BACKEND=tensorflow python examples/contour_robustness.py --quick   # a smoke test
    KERAS_BACKEND=tensorflow python examples/contour_robustness.py --seeds 0 1 \\
        --report saved_models/contour_robustness.json --figure docs/images/contour_robustness.png

The full run (two seeds, 400 steps of 4 crops of 256^2 per model, filters 16) takes about 50
minutes on 2 CPU cores (12-13 minutes a model); its figures are in the README.
"""

from __future__ import annotations

import kfcn  # noqa: F401  (first: Keras and TensorFlow then start without their C++ log)

# isort: split
import json
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from example_options import example_parser, shrink_if_quick
from figures import save_panels
from train_isbi import HELD_OUT, compile_isbi, isbi_batches, isbi_model

from kfcn.atomic import atomic_path
from kfcn.data import isbi2012_dir, load_pair, pair_files, perturb_contours
from kfcn.evaluation import segmentation_scores

VARIANTS = ("clean", "perturbed")
SCORES = ("pixel_error", "rand_error_best", "dice")


def load_isbi():
    """(images (25, 512, 512, 1) float32 raw 0-255, labels (25, 512, 512) uint8, 1 = cell interior)."""
    root = isbi2012_dir()
    pairs = [load_pair(image, label) for image, label in pair_files(root / "images", root / "labels")]
    return np.stack([image for image, _ in pairs]), np.stack([label[..., 0] for _, label in pairs]).astype(np.uint8)


def perturbed_labels(labels, shift, seed):
    """Each label with its cells' contours moved (one random generator for the whole set)."""
    rng = np.random.default_rng(seed)
    return np.stack([perturb_contours(label, shift, seed=rng) for label in labels])


def train_and_score(images, labels, held_out_images, held_out_labels, seed, args):
    keras.utils.set_random_seed(seed)
    pairs = tf.data.Dataset.from_tensor_slices((images, labels[..., None].astype(np.int32)))
    batches = isbi_batches(pairs, args.crop, args.batch, seed)
    model = compile_isbi(isbi_model(args.filters, name="unet_contours"), args.learning_rate)
    started = time.time()
    model.fit(batches, epochs=args.epochs, steps_per_epoch=args.steps, shuffle=False, verbose=2 if args.quick else 1)
    minutes = (time.time() - started) / 60
    probabilities = [kfcn.inference.predict(model, image) for image in held_out_images]
    per_slice = [segmentation_scores(p, label) for p, label in zip(probabilities, held_out_labels)]
    mean = {name: float(np.mean([scores[name] for scores in per_slice])) for name in SCORES}
    return {"minutes": round(minutes, 1), "mean": mean, "per_slice": per_slice}, probabilities


def figure(path, clean, perturbed, held_out_label, predictions, size=192):
    """Top: a training label, clean and perturbed. Bottom: a held-out truth and both models' predictions."""
    window = (slice(0, size), slice(0, size))
    grey = {"cmap": "gray", "vmin": 0, "vmax": 1}
    save_panels(
        path,
        [
            [(clean[window], "training label, clean", grey), (perturbed[window], "contours moved 1-3 px", grey)],
            [(held_out_label[window], "held-out truth (slice 20)", grey)]
            + [(p[window][..., 0], f"trained on {variant} labels", grey) for variant, p in predictions.items()],
        ],
        panel_size=(2.8, 3.0),
    )


def main():
    parser = example_parser(
        __doc__,
        figure="write a PNG of labels and predictions here",
        filters=16,
        crop=256,
        batch=4,
        epochs=8,
        steps=50,
        learning_rate=1e-3,
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="a pair of trainings per seed")
    parser.add_argument("--shift", type=int, nargs=2, default=(1, 3), help="contour shift range, px")
    parser.add_argument("--label-seed", type=int, default=0, help="seed of the contour perturbation")
    args = parser.parse_args()
    shrink_if_quick(args, filters=2, crop=64, batch=2, epochs=1, steps=2)

    images, labels = load_isbi()
    train_images, train_labels = images[:-HELD_OUT], labels[:-HELD_OUT]
    if args.quick:  # three slices: the weight maps of all twenty take most of a smoke test's time
        train_images, train_labels = train_images[:3], train_labels[:3]
    held_out_images, held_out_labels = images[-HELD_OUT:], labels[-HELD_OUT:]
    variants = {"clean": train_labels, "perturbed": perturbed_labels(train_labels, tuple(args.shift), args.label_seed)}
    changed = float(np.mean(variants["perturbed"] != train_labels))
    print(f"contours moved by {args.shift[0]}-{args.shift[1]} px: {100 * changed:.1f} % of the training pixels changed")

    runs, shown = [], {}
    for seed in args.seeds:
        for variant in VARIANTS:
            result, probabilities = train_and_score(
                train_images, variants[variant], held_out_images, held_out_labels, seed, args
            )
            runs.append({"seed": seed, "labels": variant, **result})
            shown.setdefault(variant, probabilities[0])
            print(f"seed {seed}, {variant} labels: " + ", ".join(f"{k} {v:.4f}" for k, v in result["mean"].items()))
    summary = {
        variant: {
            name: {
                "mean": float(np.mean(values := [r["mean"][name] for r in runs if r["labels"] == variant])),
                "std": float(np.std(values)),
            }
            for name in SCORES
        }
        for variant in VARIANTS
    }
    for variant, scores in summary.items():
        print(f"{variant:>9}: " + ", ".join(f"{k} {v['mean']:.4f} +- {v['std']:.4f}" for k, v in scores.items()))
    if args.report:
        report = {
            "settings": vars(args),
            "changed_training_pixels": changed,
            "summary": summary,
            "runs": runs,
            "keras": keras.__version__,
            "backend": keras.backend.backend(),
        }
        with atomic_path(Path(args.report)) as temporary:
            temporary.write_text(json.dumps(report, indent=2) + "\n")
    if args.figure:
        figure(args.figure, train_labels[0], variants["perturbed"][0], held_out_labels[0], shown)


if __name__ == "__main__":
    main()
