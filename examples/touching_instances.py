"""Touching objects -> instances: a 3-class U-Net and a watershed separate what a foreground mask merges.

`kfcn.data.touching_ellipses` draws bright ellipses that mostly touch or overlap, with no
visible edge between touching ones. Two U-Nets of the same size train on the same images
for the same number of steps:

- the baseline learns foreground / background; its instances are the connected components
  of the foreground (`kfcn.instances.instances_from_foreground`), so touching objects merge;
- the other learns background / interior / boundary (`kfcn.data.three_class_labels`, a
  2-pixel boundary band); the interiors' connected components seed a watershed that grows
  them over the foreground (`kfcn.instances.instances_from_probabilities`).

Both are scored on images drawn with seeds never trained on: instance precision, recall and
F1 at IoU 0.5 (`kfcn.instances.instance_f1`), pooled over all held-out objects. Both losses
are cross-entropies with class weights proportional to 1 / sqrt(class frequency), so the
thin boundary band is not drowned by the background.

    KERAS_BACKEND=tensorflow python examples/touching_instances.py --quick   # a smoke test, under a minute
    KERAS_BACKEND=tensorflow python examples/touching_instances.py \\
        --report saved_models/touching_instances.json --figure docs/images/touching_instances.png

The full run (400 images of 128 x 128, filters 16, depth 3, 6 epochs of 50 steps for each
model, 100 held-out images) takes about 10 minutes on 2 CPU cores (0.6-1.2 s a step). The
models take raw 0-255 pixels.
"""

from __future__ import annotations

import kfcn  # noqa: F401  (first: Keras and TensorFlow then start without their C++ log)

# isort: split
import json
import time
from pathlib import Path

import keras
import numpy as np
from example_options import example_parser, shrink_if_quick
from figures import save_panels

from kfcn.atomic import atomic_path
from kfcn.data import three_class_labels, touching_ellipses
from kfcn.instances import instance_f1, instances_from_foreground, instances_from_probabilities
from kfcn.training import make_optimizer

IOU = 0.5
MIN_SIZE = 15  # pixels: smaller predicted objects are dropped (the generator keeps objects of 20 or more)
COUNTS = ("true_positives", "false_positives", "false_negatives", "predicted_objects", "true_objects")
METHODS = {
    "three_class_watershed": (3, lambda p: instances_from_probabilities(p, min_size=MIN_SIZE)),
    "two_class_components": (2, lambda p: instances_from_foreground(p, min_size=MIN_SIZE)),
}


def ellipse_images(count, side, first_seed, noise):
    """(images (N, side, side, 1) float32 raw pixels, instances (N, side, side) int32)."""
    pairs = [touching_ellipses((side, side), seed=first_seed + i, noise=noise) for i in range(count)]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def targets(instances, num_classes, boundary_width):
    """Class maps: 0/1 foreground for 2 classes, background/interior/boundary for 3."""
    if num_classes == 2:
        return (instances > 0).astype("int32")
    return np.stack([three_class_labels(one, boundary_width) for one in instances])


def inverse_sqrt_frequency_weights(labels, num_classes):
    """Per-pixel weights, class c weighing 1 / sqrt(frequency of c), 1 on average."""
    frequency = np.bincount(labels.ravel(), minlength=num_classes) / labels.size
    weights = 1.0 / np.sqrt(np.maximum(frequency, 1e-6))
    weights /= np.sum(frequency * weights)
    return weights[labels].astype("float32"), weights


def train(num_classes, images, labels, args):
    keras.utils.set_random_seed(args.seed)  # the same initialisation and batches for both models
    model = kfcn.models.unet(
        (None, None, 1), num_classes=num_classes, filters=args.filters, depth=args.depth, name=f"unet_{num_classes}"
    )
    steps = args.epochs * -(-len(images) // args.batch)
    optimizer = make_optimizer("adam", args.learning_rate, "cosine", total_steps=steps, warmup_fraction=0)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
    sample_weight, weights = inverse_sqrt_frequency_weights(labels, num_classes)
    print(f"{num_classes} classes, class weights {np.round(weights, 2).tolist()}")
    model.fit(
        images,
        labels,
        sample_weight=sample_weight,
        batch_size=args.batch,
        epochs=args.epochs,
        verbose=2 if args.quick else 1,
    )
    return model


def score(model, to_instances, images, instances):
    """Pooled instance scores over the held-out images, and the first image's instances."""
    totals = dict.fromkeys(COUNTS, 0.0)
    per_image_f1, first = [], None
    for image, true in zip(images, instances):
        predicted = to_instances(kfcn.inference.predict(model, image))
        first = predicted if first is None else first
        scores = instance_f1(predicted, true, iou=IOU)
        per_image_f1.append(scores["f1"])
        for name in COUNTS:
            totals[name] += scores[name]
    tp, fp, fn = totals["true_positives"], totals["false_positives"], totals["false_negatives"]
    summary = {
        "f1": 2 * tp / max(2 * tp + fp + fn, 1),
        "precision": tp / max(tp + fp, 1),
        "recall": tp / max(tp + fn, 1),
        "mean_image_f1": float(np.nanmean(per_image_f1)),
        **{name: int(value) for name, value in totals.items()},
    }
    return {name: round(value, 4) if isinstance(value, float) else value for name, value in summary.items()}, first


def touching_fraction(instances):
    """The fraction of objects that share an edge with another object."""
    touching, objects = 0, 0
    for one in instances:
        ids = set()
        for a, b in ((one[:, :-1], one[:, 1:]), (one[:-1], one[1:])):
            contact = (a != b) & (a > 0) & (b > 0)
            ids |= set(a[contact].tolist()) | set(b[contact].tolist())
        touching += len(ids)
        objects += int(one.max())
    return round(touching / max(objects, 1), 4)


def main():
    parser = example_parser(
        __doc__,
        figure="write one held-out image and its instances here (PNG)",
        filters=16,
        depth=3,
        epochs=6,
        batch=8,
        learning_rate=2e-3,
        seed=0,
    )
    parser.add_argument("--train", type=int, default=400, help="training images")
    parser.add_argument("--test", type=int, default=100, help="held-out images (other seeds)")
    parser.add_argument("--side", type=int, default=128, help="image side (a multiple of 2**depth)")
    parser.add_argument("--noise", type=float, default=0.05, help="noise std, a fraction of the 8-bit range")
    parser.add_argument("--boundary-width", type=int, default=2, help="the boundary band's width, pixels")
    args = parser.parse_args()
    shrink_if_quick(args, train=16, test=4, side=64, filters=4, epochs=1)
    images, instances = ellipse_images(args.train, args.side, 0, args.noise)
    test_images, test_instances = ellipse_images(args.test, args.side, 10**6, args.noise)  # seeds never trained on

    results, examples, minutes = {}, {}, {}
    for name, (num_classes, to_instances) in METHODS.items():
        started = time.time()
        model = train(num_classes, images, targets(instances, num_classes, args.boundary_width), args)
        minutes[name] = round((time.time() - started) / 60, 1)
        results[name], examples[name] = score(model, to_instances, test_images, test_instances)
    summary = {
        "held_out": args.test,
        "touching_fraction": touching_fraction(test_instances),
        "iou": IOU,
        **results,
        "minutes": minutes,
    }
    print(json.dumps(summary))
    if args.report:
        report = {"settings": vars(args), **summary}
        Path(args.report).parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(Path(args.report)) as temporary:
            temporary.write_text(json.dumps(report, indent=2) + "\n")
    if args.figure:
        write_figure(args.figure, test_images[0, ..., 0], test_instances[0], examples)


def colours(labels, seed=0):
    """RGB picture of an instance map: a random colour for each id, black background."""
    palette = np.random.default_rng(seed).uniform(0.25, 1.0, (int(labels.max()) + 1, 3))
    palette[0] = 0
    return palette[labels]


def write_figure(path, image, true, examples):
    grey = {"cmap": "gray", "vmin": 0, "vmax": 255, "interpolation": "nearest"}
    panels = [(image, "input", grey), (colours(true), f"true: {true.max()} objects", {"interpolation": "nearest"})]
    for name, title in (
        ("two_class_components", "2 classes + components"),
        ("three_class_watershed", "3 classes + watershed"),
    ):
        predicted = examples[name]
        f1 = instance_f1(predicted, true, iou=IOU)["f1"]
        panels.append(
            (colours(predicted), f"{title}: {predicted.max()} objects, F1 {f1:.2f}", {"interpolation": "nearest"})
        )
    save_panels(path, [panels], panel_size=(3.0, 3.3))


if __name__ == "__main__":
    main()
