"""The README's counting figure: the shipped cell counter on three VGG cell images it never trained on.

    KERAS_BACKEND=tensorflow python examples/counting_figure.py   # writes docs/images/vgg_cells_counting.png

Each row: the image, the predicted density map (its sum is the count) and the annotated dots'
density map (`kfcn.data.density_map`), with the true and predicted counts, both maps on one
colour scale (cells per pixel). The images come
from the 68 that the shipped model did not see (N = 32: the first 32 of
`numpy.random.default_rng(0).permutation(100)` trained it, as `examples/counter_runs.py` splits).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from count_cells import DEFAULT_DATA, load
from figures import save_panels

from kfcn.inference import predict
from kfcn.saving import load_model

MODEL = Path("saved_models/vgg_cells_counter.keras")
OUTPUT = Path("docs/images/vgg_cells_counting.png")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--model", default=str(MODEL))
    parser.add_argument("--train", type=int, default=32, help="N the model was trained with (its held-out set)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split's draw")
    parser.add_argument("--output", default=str(OUTPUT))
    args = parser.parse_args()
    images, densities, counts = load(args.data, sigma=2.0)
    held_out = np.random.default_rng(args.seed).permutation(len(images))[args.train :]
    model = load_model(args.model)
    rows = []
    for index in held_out[:3]:
        density = predict(model, images[index])[..., 0]
        shared = {"cmap": "magma", "vmin": 0, "vmax": max(float(density.max()), float(densities[index].max()))}
        rows.append(
            [
                (images[index].astype("uint8"), f"image {index + 1:03d} (not trained on)", None),
                (density, f"predicted density: sum {density.sum():.1f} cells", shared),
                (
                    densities[index],
                    f"from the annotated dots: {counts[index]:.0f} cells",
                    shared | {"colorbar": "cells per pixel"},
                ),
            ]
        )
    save_panels(args.output, rows, panel_size=(3.0, 3.0), fontsize=9, dpi=80)


if __name__ == "__main__":
    main()
