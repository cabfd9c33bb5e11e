"""Image-to-image regression with two outputs: bulge / disk decomposition of synthetic galaxies.

`kfcn.data.bulge_disk_galaxy` draws a de Vaucouleurs bulge (Sérsic n = 4) and an exponential
disk (n = 1) with random sizes, fluxes, ellipticities and angles, and adds noise to their sum.
A U-Net with a linear two-channel head takes the noisy sum and returns both components; its
channels' sums are the components' fluxes. Scored on galaxies it never saw: the relative flux
error of each component, (predicted - true) / true, its median absolute value and its bias.

    KERAS_BACKEND=tensorflow python examples/galaxy_decomposition.py --quick   # a smoke test
    KERAS_BACKEND=tensorflow python examples/galaxy_decomposition.py \\
        --report saved_models/galaxy_decomposition.json --figure docs/images/galaxy_components.png
"""

from __future__ import annotations

import kfcn  # noqa: F401  (first: Keras and TensorFlow then start without their C++ log)

# isort: split
import argparse
import json
import time
from pathlib import Path

import keras
import numpy as np
from figures import save_panels

from kfcn.data import bulge_disk_galaxy

COMPONENTS = ("bulge", "disk")
UNIT = 100.0  # fluxes in units of 0.01: pixel values of order 1, as networks like them


def galaxies(count, side, first_seed, noise):
    pairs = [bulge_disk_galaxy((side, side), seed=first_seed + i, noise=noise) for i in range(count)]
    return UNIT * np.stack([p[0] for p in pairs]), UNIT * np.stack([p[1] for p in pairs])


def flux_errors(model, images, components):
    """{component: relative flux errors}, one per galaxy."""
    predicted = np.stack([kfcn.inference.predict(model, image) for image in images]).sum(axis=(1, 2))
    true = components.sum(axis=(1, 2))
    return {name: (predicted[:, k] - true[:, k]) / true[:, k] for k, name in enumerate(COMPONENTS)}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=int, default=2000, help="training galaxies")
    parser.add_argument("--test", type=int, default=200, help="held-out galaxies (other seeds)")
    parser.add_argument("--side", type=int, default=64)
    parser.add_argument("--noise", type=float, default=0.01, help="noise std, in units of each image's peak")
    parser.add_argument("--filters", type=int, default=16)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--report", default=None, help="write the scores as JSON here")
    parser.add_argument("--figure", default=None, help="write one held-out galaxy and its components here (PNG)")
    parser.add_argument("--quick", action="store_true", help="tiny settings: checks that the script runs")
    args = parser.parse_args()
    if args.quick:
        args.train, args.test, args.filters, args.depth, args.epochs = 32, 8, 4, 2, 1
    keras.utils.set_random_seed(args.seed)
    images, components = galaxies(args.train, args.side, 0, args.noise)
    test_images, test_components = galaxies(args.test, args.side, 10**6, args.noise)  # seeds never trained on
    model = kfcn.models.unet(
        (None, None, 1),
        num_classes=2,
        filters=args.filters,
        depth=args.depth,
        head="regression",
        input_range=None,
        name="bulge_disk",
    )
    steps = args.epochs * -(-args.train // args.batch)
    model.compile(optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(1e-3, steps)), loss="mse")
    started = time.time()
    model.fit(images, components, batch_size=args.batch, epochs=args.epochs, verbose=2 if args.quick else 1)
    minutes = (time.time() - started) / 60
    errors = flux_errors(model, test_images, test_components)
    summary = {
        name: {
            "median_abs_relative_error": float(np.median(np.abs(values))),
            "mean_abs_relative_error": float(np.mean(np.abs(values))),
            "bias": float(np.mean(values)),
        }
        for name, values in errors.items()
    }
    print(json.dumps({"held_out": args.test, "components": summary, "minutes": round(minutes, 1)}))
    if args.report:
        report = {"settings": vars(args), "held_out": args.test, "components": summary, "minutes": round(minutes, 1)}
        Path(args.report).write_text(json.dumps(report, indent=2) + "\n")
    if args.figure:
        write_figure(args.figure, model, test_images[0], test_components[0])


def write_figure(path, model, image, components):
    predicted = kfcn.inference.predict(model, image)
    stretch = 0.02 * float(image.max())  # an arcsinh stretch shows the faint disk beside the bright bulge
    shown = {"cmap": "magma"}
    panels = [(np.arcsinh(np.maximum(image[..., 0], 0) / stretch), "input: bulge + disk + noise", shown)]
    for k, name in enumerate(COMPONENTS):
        true, guess = components[..., k].sum(), predicted[..., k].sum()
        panels += [
            (np.arcsinh(np.maximum(components[..., k], 0) / stretch), f"true {name}: flux {true:.3f}", shown),
            (np.arcsinh(np.maximum(predicted[..., k], 0) / stretch), f"kfcn {name}: {guess:.3f}", shown),
        ]
    save_panels(path, [panels], panel_size=(2.4, 2.8))


if __name__ == "__main__":
    main()
