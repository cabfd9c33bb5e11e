"""Exports the shipped ISBI U-Net for deployment and measures every form on the held-out slices.

Writes, under saved_models/:
  unet_isbi_serving/1/            SavedModel for TF Serving (any image size, raw 0-255 pixels)
  unet_isbi_float32.tflite        TFLite, float32, 512x512 input
  unet_isbi_float16.tflite        TFLite, float16 weights
  unet_isbi_int8.tflite           TFLite, full-integer int8 (calibrated on training slices 00-19)
  unet_isbi_*.tflite.kfcn_model_card.json   each TFLite file's card (input, output, sizes, ops)
  unet_isbi_deployment.json       model card: command, input contract, metrics of each form

Held-out slices 20-24 are scored by each form (pixel error at 0.5, membrane Dice), and the
drift from the Keras model is stated (max and mean |difference| of the probability map).

    KERAS_BACKEND=tensorflow python examples/export_isbi.py
"""

from __future__ import annotations

import kfcn  # noqa: F401  (first: Keras and TensorFlow then start without their C++ log)

# isort: split
import argparse
import os
from pathlib import Path

import numpy as np
from deployment_forms import export_and_score

from kfcn.data import load_pair
from kfcn.saving import load_model

HELD_OUT = [f"slice_{index:02d}" for index in range(20, 25)]
TRAINING = [f"slice_{index:02d}" for index in range(20)]
COMMAND = "KERAS_BACKEND=tensorflow python examples/export_isbi.py"


def scores(probability, label):
    interior = probability[..., 0] > 0.5
    truth = label[..., 0] == 1
    membrane, true_membrane = ~interior, ~truth
    dice = 2 * np.sum(membrane & true_membrane) / max(np.sum(membrane) + np.sum(true_membrane), 1)
    return float(np.mean(interior != truth)), float(dice)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default="saved_models")
    args = parser.parse_args()
    output = Path(args.output)
    root = kfcn.samples.isbi2012_dir()
    model_path = Path(os.path.relpath(kfcn.samples.shipped_model_path()))  # kfcn/assets/models/... in a checkout
    model = load_model(model_path)
    pairs = {name: load_pair(root / "images" / f"{name}.png", root / "labels" / f"{name}.png") for name in HELD_OUT}
    calibration = [load_pair(root / "images" / f"{n}.png", root / "labels" / f"{n}.png")[0] for n in TRAINING]

    metadata = {
        "training": "saved_models/README.md (examples/train_isbi.py; slices 00-19 train, 20-24 held out)",
        "export_command": COMMAND,
    }
    images, labels = [pairs[name][0] for name in HELD_OUT], [pairs[name][1] for name in HELD_OUT]

    def score(outputs):
        errors, dices = zip(*(scores(probability, label) for probability, label in zip(outputs, labels)))
        return {"pixel_error": round(float(np.mean(errors)), 4), "membrane_dice": round(float(np.mean(dices)), 4)}

    export_and_score(
        model,
        model_path,
        output,
        "unet_isbi",
        calibration=calibration,
        input_shape=(512, 512),
        metadata=metadata,
        images=images,
        score=score,
        report=output / "unet_isbi_deployment.json",
        command=COMMAND,
        table_key="metrics_mean_over_held_out_slices",
        held_out_slices=HELD_OUT,
    )


if __name__ == "__main__":
    main()
