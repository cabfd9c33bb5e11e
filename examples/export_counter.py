"""Exports the shipped cell counter for deployment and measures every form's count error on its held-out images.

Writes, under --output (build/vgg_cells_counter by default: a command makes them, so they are not committed):
  vgg_cells_counter_serving/1/        SavedModel for TF Serving (any image size, raw 0-255 RGB)
  vgg_cells_counter_float32.tflite    TFLite, float32, 256x256 input (the VGG images' size)
  vgg_cells_counter_float16.tflite    TFLite, float16 weights
  vgg_cells_counter_int8.tflite       TFLite, full-integer int8 (calibrated on the 32 training images)
and the table saved_models/vgg_cells_counter_deployment.json (--report): for each form the count MAE,
mean error and relative MAE on the 68 held-out images of saved_models/vgg_cells_counter.json, and the
drift of its density map from the Keras model's.

    KERAS_BACKEND=tensorflow python examples/export_counter.py
"""

from __future__ import annotations

import kfcn  # noqa: F401  (first: Keras and TensorFlow then start without their C++ log)

# isort: split
import argparse
import json
from pathlib import Path

import numpy as np
from count_cells import DEFAULT_DATA, load
from deployment_forms import export_and_score

from kfcn.saving import load_model

COMMAND = "KERAS_BACKEND=tensorflow python examples/export_counter.py"


def count_scores(counts):
    """outputs -> MAE, mean error and relative MAE of the maps' sums against the true `counts`."""

    def score(outputs):
        errors = np.array([float(output.sum()) for output in outputs]) - counts
        return {
            "mae": round(float(np.abs(errors).mean()), 4),
            "mean_error": round(float(errors.mean()), 4),
            "relative_mae": round(float((np.abs(errors) / counts).mean()), 5),
        }

    return score


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="VGG cells folder (images/, dots/)")
    parser.add_argument("--model", type=Path, default=Path("saved_models/vgg_cells_counter.keras"))
    parser.add_argument("--card", type=Path, default=Path("saved_models/vgg_cells_counter.json"))
    parser.add_argument("--output", type=Path, default=Path("build/vgg_cells_counter"))
    parser.add_argument("--report", type=Path, default=Path("saved_models/vgg_cells_counter_deployment.json"))
    args = parser.parse_args()
    card = json.loads(args.card.read_text())
    images, _, counts = load(args.data, sigma=2.0)
    held_out, train = [n - 1 for n in card["held_out_images"]], [n - 1 for n in card["train_images"]]
    model = load_model(args.model)
    metadata = {
        "training": f"saved_models/README.md ({args.card.name}: recipe {card['recipe']})",
        "export_command": COMMAND,
    }
    export_and_score(
        model,
        args.model,
        args.output,
        "vgg_cells_counter",
        calibration=list(images[train]),
        input_shape=(256, 256),
        metadata=metadata,
        images=list(images[held_out]),
        score=count_scores(counts[held_out]),
        report=args.report,
        command=COMMAND,
        table_key="metrics_over_held_out_images",
        held_out_images=card["held_out_images"],
    )


if __name__ == "__main__":
    main()
