"""Cell counting by density maps on the VGG synthetic cells (Lempitsky & Zisserman 2010).

An FCN regresses a density map whose sum over any region is the number of cells in it
(`kfcn.data.density_map`: a Gaussian per annotated dot). Images 001-100 of the data set are
available; N of them (a seeded draw) train, the other 100 - N are scored by the mean
absolute count error (MAE). The literature's anchors, N = 32, on the other 100 images:
Lempitsky & Zisserman 2010 3.5, FCRN-A (Xie 2016) 2.9, Count-ception (Cohen 2017) 2.3.

    KERAS_BACKEND=tensorflow python examples/count_cells.py --quick            # a smoke test, about a minute
    KERAS_BACKEND=tensorflow python examples/count_cells.py --train 32 --seeds 0 1 2 --output counting.keras

The model takes raw RGB 0-255 of any size (scaling inside the graph) and outputs one channel
whose sum is the count (the x100 scale used for training is folded into the graph, and so is a
calibration factor that makes the total count on the training images right; the uncalibrated
MAE is reported too).
"""

from __future__ import annotations

import kfcn  # noqa: F401  (first: Keras and TensorFlow then start without their C++ log)

# isort: split
import json
import os
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from example_options import example_parser, shrink_if_quick
from PIL import Image

from kfcn.atomic import atomic_path
from kfcn.data import density_map, dots_from_image, random_crop_pipeline
from kfcn.data.augment import flips_and_rot90
from kfcn.training import calibrate_density_model, fold_density_scale, make_optimizer

SCALE = 100.0  # density x 100 during training: targets of order 1 instead of 0.01
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "vgg_cells"


def load(folder, sigma):
    """(images (100, 256, 256, 3) float32 raw, densities (100, 256, 256) float32, counts (100,))."""
    folder = Path(folder)
    names = sorted(path.name[:3] for path in (folder / "images").glob("*cell.png"))
    if not names:
        raise SystemExit(f"No *cell.png images in {folder / 'images'}; pass --data with the VGG cells folder.")
    images, densities, counts = [], [], []
    for name in names:
        image = np.asarray(Image.open(folder / "images" / f"{name}cell.png").convert("RGB"), dtype="float32")
        dots = dots_from_image(np.asarray(Image.open(folder / "dots" / f"{name}dots.png").convert("RGB")))
        images.append(image)
        densities.append(density_map(dots, image.shape[:2], sigma=sigma))
        counts.append(len(dots))
    return np.stack(images), np.stack(densities), np.asarray(counts, dtype="float64")


def counting_model(filters, depth):
    """A U-Net with a linear head, and the counter: the U-Net followed by Rescaling(1 / SCALE)."""
    net = kfcn.models.unet(
        (None, None, 3), num_classes=1, filters=filters, depth=depth, head="regression", name="cells"
    )
    return net, fold_density_scale(net, SCALE)


def train_one(images, densities, args, seed):
    keras.utils.set_random_seed(seed)
    pairs = tf.data.Dataset.from_tensor_slices((images, SCALE * densities[..., None]))
    batches = random_crop_pipeline(pairs, args.crop, batch_size=args.batch, augment=flips_and_rot90, seed=seed)
    net, counter = counting_model(args.filters, args.depth)
    total = args.epochs * args.steps
    optimizer = make_optimizer("adam", args.learning_rate, "cosine", total_steps=total, warmup_fraction=0)
    net.compile(optimizer=optimizer, loss="mse", jit_compile=args.jit)
    net.fit(batches, epochs=args.epochs, steps_per_epoch=args.steps, verbose=2 if args.quick else 1, shuffle=False)
    return net, counter


def count_errors(model, images, counts):
    predicted = np.array([kfcn.inference.predict(model, image)[..., 0].sum(dtype=np.float64) for image in images])
    return predicted - counts


def main():
    parser = example_parser(__doc__, filters=32, depth=3, crop=128, batch=8, epochs=60, steps=50, learning_rate=1e-3)
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="folder with images/ and dots/")
    parser.add_argument("--train", type=int, nargs="+", default=[32], help="training-set sizes N (learning curve)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--sigma", type=float, default=2.0, help="Gaussian width of a dot, px")
    parser.add_argument("--jit", action="store_true", help="XLA-compile the training step")
    parser.add_argument("--output", default=None, help="save the model of the first N and seed here (.keras)")
    args = parser.parse_args()
    shrink_if_quick(args, train=[8], filters=4, depth=2, epochs=2, steps=3, crop=64)
    images, densities, counts = load(args.data, args.sigma)
    print(f"{len(images)} images, {counts.mean():.0f} +- {counts.std():.0f} cells each")
    results = []
    for size in args.train:
        for seed in args.seeds:
            order = np.random.default_rng(seed).permutation(len(images))
            train, test = order[:size], order[size:]
            started = time.time()
            net, raw = train_one(images[train], densities[train], args, seed)
            model, factor = calibrate_density_model(raw, images[train], counts[train])
            raw_errors = count_errors(raw, images[test], counts[test])
            errors = count_errors(model, images[test], counts[test])
            results.append(
                {
                    "train_size": size,
                    "seed": seed,
                    "test_images": len(test),
                    "mae": float(np.abs(errors).mean()),
                    "mean_error": float(errors.mean()),
                    "relative_mae": float(np.mean(np.abs(errors) / counts[test])),
                    "calibration_factor": factor,
                    "uncalibrated_mae": float(np.abs(raw_errors).mean()),
                    "uncalibrated_mean_error": float(raw_errors.mean()),
                    "minutes": round((time.time() - started) / 60, 1),
                }
            )
            print(json.dumps(results[-1]))
            if args.output and len(results) == 1:
                kfcn.saving.save_model(model, args.output)
    for size in args.train:
        maes = [r["mae"] for r in results if r["train_size"] == size]
        print(f"N = {size}: MAE {np.mean(maes):.2f} +- {np.std(maes):.2f} over {len(maes)} seed(s)")
    if args.report:
        settings = vars(args) | {"data": os.path.relpath(args.data)}  # no absolute path of this machine
        with atomic_path(Path(args.report)) as temporary:
            temporary.write_text(json.dumps({"settings": settings, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
