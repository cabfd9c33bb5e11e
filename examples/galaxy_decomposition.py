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
import json
import time
from pathlib import Path

import keras
import numpy as np
from example_options import example_parser, shrink_if_quick
from figures import save_panels

from kfcn.atomic import atomic_path
from kfcn.data import bulge_disk_galaxy
from kfcn.training import make_optimizer

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
    parser = example_parser(
        __doc__,
        figure="write one held-out galaxy and its components here (PNG)",
        filters=16,
        depth=3,
        epochs=15,
        batch=16,
        seed=0,
    )
    parser.add_argument("--train", type=int, default=2000, help="training galaxies")
    parser.add_argument("--test", type=int, default=200, help="held-out galaxies (other seeds)")
    parser.add_argument("--side", type=int, default=64)
    parser.add_argument("--noise", type=float, default=0.01, help="noise std, in units of each image's peak")
    args = parser.parse_args()
    shrink_if_quick(args, train=32, test=8, filters=4, depth=2, epochs=1)
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
    model.compile(optimizer=make_optimizer("adam", 1e-3, "cosine", total_steps=steps, warmup_fraction=0), loss="mse")
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
        with atomic_path(Path(args.report)) as temporary:
            temporary.write_text(json.dumps(report, indent=2) + "\n")
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
