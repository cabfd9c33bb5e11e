"""The README's first figure: overlap-tile against resized prediction, by the shipped U-Net.

    KERAS_BACKEND=tensorflow python examples/tiling_figure.py   # writes docs/images/isbi_comparison.png

Held-out slices 20-23 are stitched into a 1024x1024 mosaic, larger than anything the network
saw in training (256x256 crops), and segmented twice, as `make demo` does: tile by tile
(`kfcn.inference.predict_tiled`, 512-px tiles) and resized to 512x512 and back
(`predict_resized`). The figure shows the top-left 256x256 of the image, its label and both
probability maps, each titled with its pixel error over the whole mosaic (threshold 0.5).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from figures import save_panels

from kfcn.data import load_pair
from kfcn.inference import predict_resized, predict_tiled
from kfcn.samples import isbi2012_dir, shipped_model_path
from kfcn.saving import load_model

OUTPUT = Path("docs/images/isbi_comparison.png")
MOSAIC = (("slice_20", "slice_21"), ("slice_22", "slice_23"))  # held out from training


def mosaic_predictions(model, tile_size=512):
    """The mosaic, its 0/1 label, the tiled and the resized probability maps, and their pixel errors."""
    root = isbi2012_dir()
    pairs = [[load_pair(root / "images" / f"{n}.png", root / "labels" / f"{n}.png") for n in row] for row in MOSAIC]
    image = np.block([[pair[0][..., 0] for pair in row] for row in pairs])[..., None]
    label = np.block([[pair[1][..., 0] for pair in row] for row in pairs])
    tiled = predict_tiled(model, image, tile_size, batch_size=4, progress=False)[..., 0]
    resized = predict_resized(model, image, (512, 512))[..., 0]
    errors = {name: float(np.mean((p > 0.5) != (label == 1))) for name, p in (("tiled", tiled), ("resized", resized))}
    return image, label, tiled, resized, errors


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default=str(OUTPUT))
    parser.add_argument("--window", type=int, default=256, help="side of the top-left window shown")
    args = parser.parse_args()
    image, label, tiled, resized, errors = mosaic_predictions(load_model(shipped_model_path()))
    print(f"1024x1024 mosaic of slices 20-23: pixel error tiled {errors['tiled']:.4f}, resized {errors['resized']:.4f}")
    window = (slice(0, args.window), slice(0, args.window))
    grey = {"cmap": "gray", "vmin": 0, "vmax": 1}
    probability = grey | {"colorbar": "probability of cell interior (both predictions)"}
    save_panels(
        args.output,
        [
            [
                (image[window][..., 0], "image (raw 0–255)", {"cmap": "gray", "vmin": 0, "vmax": 255}),
                (label[window], "ground truth (white: cell interior)", grey),
                (tiled[window], f"overlap-tile: pixel error {errors['tiled']:.3f}", grey),
                (resized[window], f"resized to 512² and back: {errors['resized']:.3f}", probability),
            ]
        ],
        panel_size=(3.0, 3.0),
        fontsize=9,
        dpi=100,
        title=f"Shipped U-Net on a {image.shape[0]}×{image.shape[1]} mosaic of held-out slices 20–23 "
        f"(top-left {args.window}×{args.window} shown)",
    )


if __name__ == "__main__":
    main()
