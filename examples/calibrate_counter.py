"""Calibrates a saved cell counter on its own training images, as `count_cells.py` now does after training.

The shipped counter (saved_models/vgg_cells_counter.keras) was trained before `count_cells.py`
calibrated its models; this script applies the same step (`count_cells.calibrated`: one factor
that makes the total count on the training images right) to the saved model, and rewrites its
card data (saved_models/vgg_cells_counter.json) with the held-out MAE before and after.

    KERAS_BACKEND=tensorflow python examples/calibrate_counter.py
"""

from __future__ import annotations

import kfcn  # noqa: F401  (first: Keras and TensorFlow then start without their C++ log)

# isort: split
import argparse
import json
from pathlib import Path

import keras
import numpy as np
from count_cells import DEFAULT_DATA, SCALE, calibrated, count_errors, load, with_scale

import kfcn.saving

MODEL = Path("saved_models/vgg_cells_counter.keras")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(MODEL))
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    args = parser.parse_args()
    card_path = Path(args.model).with_suffix(".json")
    card = json.loads(card_path.read_text())
    if "calibration_factor" in card["result"]:
        raise SystemExit(f"{args.model} is calibrated already (factor {card['result']['calibration_factor']:.4f}).")
    images, _, counts = load(args.data, sigma=2.0)
    train = [number - 1 for number in card["train_images"]]
    test = [number - 1 for number in card["held_out_images"]]
    counter = keras.saving.load_model(args.model)
    density = counter.get_layer("density")
    net = keras.Model(counter.input, density.input)
    raw = with_scale(net, float(density.scale) * SCALE)  # the saved model as it is
    model, factor = calibrated(net, raw, images[train], counts[train])
    raw_errors = count_errors(raw, images[test], counts[test])
    errors = count_errors(model, images[test], counts[test])
    assert np.isclose(np.abs(raw_errors).mean(), card["result"]["mae"], atol=1e-3), "not the model of the card"
    card["result"].update(
        mae=float(np.abs(errors).mean()),
        mean_error=float(errors.mean()),
        relative_mae=float(np.mean(np.abs(errors) / counts[test])),
        calibration_factor=factor,
        uncalibrated_mae=float(np.abs(raw_errors).mean()),
        uncalibrated_mean_error=float(raw_errors.mean()),
    )
    card["calibration"] = "KERAS_BACKEND=tensorflow python examples/calibrate_counter.py"
    kfcn.saving.save_model(model, args.model)
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    print(json.dumps(card["result"], indent=2))


if __name__ == "__main__":
    main()
