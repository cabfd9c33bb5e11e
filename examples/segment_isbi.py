"""kfcn's main job: segment the held-out ISBI 2012 slices with the shipped U-Net.

Slices 20-24 were held out from training (kfcn train --recipe isbi2012). Each is segmented
whole and tile by tile; the four first ones are also stitched into a 1024x1024 mosaic,
larger than anything the network saw in training, and segmented twice: tiled (the
overlap-tile strategy) and resized to 512x512 and back (the alternative). Writes
probability maps and a side-by-side picture to outputs/isbi/ and prints the scores: pixel
error (threshold 0.5), membrane Dice and the adapted Rand error at the best threshold, as
the ISBI 2012 challenge reported it (`kfcn.evaluation.best_rand_error`).

    KERAS_BACKEND=tensorflow python examples/segment_isbi.py
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from kfcn.data import isbi2012_dir, load_pair
from kfcn.evaluation import best_rand_error
from kfcn.inference import model_geometry, predict, predict_resized, predict_tiled
from kfcn.samples import shipped_model_path
from kfcn.saving import load_model

HELD_OUT = [f"slice_{index:02d}" for index in range(20, 25)]


def scores(probability, label):
    """Pixel error, membrane Dice (membrane = label 0) and best-threshold adapted Rand error of an interior map."""
    interior = probability[..., 0] > 0.5
    truth = label[..., 0] == 1
    membrane, true_membrane = ~interior, ~truth
    dice = 2 * np.sum(membrane & true_membrane) / max(np.sum(membrane) + np.sum(true_membrane), 1)
    rand = best_rand_error(probability[..., :1], label)["adapted_rand_error"]
    return float(np.mean(interior != truth)), float(dice), rand


def to_png(array, path):
    Image.fromarray((np.clip(array, 0, 1) * 255).astype(np.uint8)).save(path)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(shipped_model_path()))
    parser.add_argument("--output", default="outputs/isbi")
    parser.add_argument("--tile", type=int, default=512)
    args = parser.parse_args()
    if not Path(args.model).exists():
        raise SystemExit(f"No model at {args.model}. Train one with: kfcn train --recipe isbi2012 --output runs/isbi")
    model = load_model(args.model)
    geometry = model_geometry(model)
    print(
        f"model {args.model}: {model.count_params():,} parameters, receptive field "
        f"{geometry.field.size[0]} px, total stride {geometry.multiple}"
    )
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    root = isbi2012_dir()

    images, labels, rows = [], [], []
    print(f"\n{'slice':<10}{'pixel error':>12}{'membrane Dice':>15}{'Rand error':>12}{'tiled = whole (max diff)':>27}")
    for name in HELD_OUT:
        image, label = load_pair(root / "images" / f"{name}.png", root / "labels" / f"{name}.png")
        whole = predict(model, image)
        tiled = predict_tiled(model, image, args.tile, progress=False)
        border = geometry.context  # whole-image prediction sees zero padding within this band
        difference = np.abs(whole - tiled)[border:-border, border:-border].max()
        error, dice, rand = scores(tiled, label)
        rows.append((error, dice, rand))
        print(f"{name:<10}{error:>12.4f}{dice:>15.4f}{rand:>12.4f}{difference:>27.2e}")
        to_png(tiled[..., 0], output / f"{name}_interior_probability.png")
        images.append(image)
        labels.append(label)

    error, dice, rand = np.mean(rows, axis=0)
    print(f"{'mean':<10}{error:>12.4f}{dice:>15.4f}{rand:>12.4f}   (Rand error: best threshold, as ISBI 2012)")

    mosaic = np.block([[images[0][..., 0], images[1][..., 0]], [images[2][..., 0], images[3][..., 0]]])[..., None]
    mosaic_label = np.block([[labels[0][..., 0], labels[1][..., 0]], [labels[2][..., 0], labels[3][..., 0]]])[..., None]
    tiled = predict_tiled(model, mosaic, args.tile, batch_size=4)
    resized = predict_resized(model, mosaic, (512, 512))
    print("\n1024x1024 mosaic of slices 20-23 (the network was trained on 256x256 crops), scored per slice:")
    # Scored slice by slice: the mosaic's seams would join unrelated cells into one segment.
    quadrants = [(slice(row, row + 512), slice(col, col + 512)) for row in (0, 512) for col in (0, 512)]
    for method, prediction in (("tiled (overlap-tile)", tiled), ("resized to 512 and back", resized)):
        error, dice, rand = np.mean([scores(prediction[q], mosaic_label[q]) for q in quadrants], axis=0)
        print(f"  {method:<26} pixel error {error:.4f}   membrane Dice {dice:.4f}   Rand error {rand:.4f}")
    to_png(tiled[..., 0], output / "mosaic_tiled.png")
    to_png(resized[..., 0], output / "mosaic_resized.png")

    crop = slice(0, 256)
    panel = np.concatenate(
        [
            mosaic[crop, crop, 0] / 255,
            mosaic_label[crop, crop, 0].astype("float32"),
            tiled[crop, crop, 0],
            resized[crop, crop, 0],
        ],
        axis=1,
    )
    to_png(panel, output / "comparison.png")
    print(f"\nwrote {output}/ (comparison.png: image | ground truth | tiled | resized, top-left 256x256)")


if __name__ == "__main__":
    main()
