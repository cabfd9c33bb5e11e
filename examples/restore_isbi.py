"""Restoration from degraded pairs: a U-Net learns to deblur and denoise ISBI 2012 slices.

`kfcn.data.degrade` makes the pairs: each clean slice is blurred with a random anisotropic
Gaussian (sigma 1-2 px) and given Gaussian noise (std 5-15 grey levels). Slices 00-19 train
(several degraded copies each, random crops, flips and 90-degree turns), slices 20-24 are held
out, each degraded once with a fixed seed. The script reports PSNR and SSIM
(`kfcn.evaluation.restoration_scores`, scikit-image's metrics) of the degraded input and of the
restored output against the clean slice, and writes a figure.

    KERAS_BACKEND=tensorflow python examples/restore_isbi.py --quick     # a smoke test, about a minute
    KERAS_BACKEND=tensorflow python examples/restore_isbi.py --report saved_models/isbi_restoration.json \\
        --figure docs/images/isbi_restoration.png

The model takes raw 0-255 pixels and returns raw pixels (both scalings are in its graph).
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
from PIL import Image

from kfcn.atomic import atomic_path
from kfcn.data import degrade, random_crop_pipeline
from kfcn.data.augment import flips_and_rot90
from kfcn.evaluation import restoration_scores
from kfcn.samples import isbi2012_dir
from kfcn.training import make_optimizer

HELD_OUT = range(20, 25)
DEGRADATION = {"blur_sigma": (1.0, 2.0), "noise_std": (5.0, 15.0)}


def slices(indices):
    return [np.asarray(Image.open(isbi2012_dir() / "images" / f"slice_{i:02d}.png")) for i in indices]


def degraded_pairs(images, copies, seed):
    """(degraded, clean) float32 raw-pixel pairs, `copies` random degradations per image."""
    rng = np.random.default_rng(seed)
    pairs = [degrade(image, **DEGRADATION, seed=rng) for image in images for _ in range(copies)]
    degraded = np.clip(np.stack([p[0] for p in pairs]), 0, 255)  # what an 8-bit sensor would store
    return degraded[..., None], np.stack([p[1] for p in pairs])[..., None]


def restoration_model(filters, depth):
    """A U-Net with a linear head on [0, 1] targets; the last layer returns raw pixels."""
    net = kfcn.models.unet((None, None, 1), num_classes=1, filters=filters, depth=depth, head="regression")
    restored = keras.layers.Rescaling(255.0, name="raw_pixels")(net.output)
    return net, keras.Model(net.input, restored, name="isbi_restorer")


def main():
    parser = example_parser(
        __doc__,
        figure="write degraded / restored / clean crops here (PNG)",
        filters=16,
        depth=3,
        crop=128,
        batch=8,
        epochs=20,
        steps=40,
        seed=0,
    )
    parser.add_argument("--copies", type=int, default=4, help="degraded copies of each training slice")
    args = parser.parse_args()
    train_indices = range(20)
    shrink_if_quick(args, filters=4, depth=2, copies=1, epochs=1, steps=3, crop=64)
    if args.quick:
        train_indices = range(4)
    keras.utils.set_random_seed(args.seed)
    degraded, clean = degraded_pairs(slices(train_indices), args.copies, args.seed)
    pairs = tf.data.Dataset.from_tensor_slices((degraded, clean / 255.0))
    batches = random_crop_pipeline(pairs, args.crop, batch_size=args.batch, augment=flips_and_rot90, seed=args.seed)
    net, restorer = restoration_model(args.filters, args.depth)
    total = args.epochs * args.steps
    net.compile(optimizer=make_optimizer("adam", 1e-3, "cosine", total_steps=total, warmup_fraction=0), loss="mse")
    started = time.time()
    net.fit(batches, epochs=args.epochs, steps_per_epoch=args.steps, verbose=2 if args.quick else 1, shuffle=False)
    minutes = (time.time() - started) / 60

    held_out = slices(HELD_OUT)
    rows = []
    for index, image in zip(HELD_OUT, held_out):
        blurred, _ = degrade(image, **DEGRADATION, seed=1000 + index)
        blurred = np.clip(blurred, 0, 255)
        restored = kfcn.inference.predict(restorer, blurred)
        rows.append(
            {
                "slice": index,
                "degraded": restoration_scores(blurred[..., None], image),
                "restored": restoration_scores(restored, image),
            }
        )
    mean = {
        kind: {metric: float(np.mean([row[kind][metric] for row in rows])) for metric in ("psnr", "ssim")}
        for kind in ("degraded", "restored")
    }
    print(json.dumps({"mean": mean, "minutes": round(minutes, 1)}))
    if args.report:
        report = {"settings": vars(args), "degradation": DEGRADATION, "per_slice": rows, "mean": mean}
        report["minutes"] = round(minutes, 1)
        with atomic_path(Path(args.report)) as temporary:
            temporary.write_text(json.dumps(report, indent=2) + "\n")
    if args.figure:
        write_figure(args.figure, image, blurred, restored[..., 0], rows[-1])


def write_figure(path, clean, blurred, restored, scores):
    window = (slice(128, 384), slice(128, 384))
    grey = {"cmap": "gray", "vmin": 0, "vmax": 255}
    titles = (
        f"degraded: {scores['degraded']['psnr']:.1f} dB, SSIM {scores['degraded']['ssim']:.3f}",
        f"restored: {scores['restored']['psnr']:.1f} dB, SSIM {scores['restored']['ssim']:.3f}",
        "clean",
    )
    pictures = (blurred, restored, clean)
    save_panels(
        path,
        [[(np.clip(p[window], 0, 255), t, grey) for p, t in zip(pictures, titles)]],
        panel_size=(3.0, 3.3),
        fontsize=9,
    )


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
