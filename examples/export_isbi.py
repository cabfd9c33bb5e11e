"""Exports the shipped ISBI U-Net for deployment and measures every form on the held-out slices.

Writes, under saved_models/:
  unet_isbi_serving/1/            SavedModel for TF Serving (any image size, raw 0-255 pixels)
  unet_isbi_float32.tflite        TFLite, float32, 512x512 input
  unet_isbi_float16.tflite        TFLite, float16 weights
  unet_isbi_int8.tflite           TFLite, full-integer int8 (calibrated on training slices 00-19)
  unet_isbi_deployment.json       model card: command, input contract, metrics of each form

Held-out slices 20-24 are scored by each form (pixel error at 0.5, membrane Dice), and the
drift from the Keras model is stated (max and mean |difference| of the probability map).

    KERAS_BACKEND=tensorflow python examples/export_isbi.py
"""

from __future__ import annotations

import kfcn  # noqa: F401  (first: Keras and TensorFlow then start without their C++ log)

# isort: split
import argparse
import json
from pathlib import Path

import numpy as np
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

from kfcn.data import load_pair
from kfcn.inference import predict
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


def tflite_predictor(path):
    runner = Interpreter(model_path=str(path), num_threads=2).get_signature_runner("serving_default")
    return lambda image: runner(pixels_0_255=image[None].astype("float32"))["probabilities"][0]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default="saved_models")
    args = parser.parse_args()
    output = Path(args.output)
    root = kfcn.samples.isbi2012_dir()
    model = load_model(kfcn.samples.shipped_model_path())
    pairs = {name: load_pair(root / "images" / f"{name}.png", root / "labels" / f"{name}.png") for name in HELD_OUT}
    calibration = [load_pair(root / "images" / f"{n}.png", root / "labels" / f"{n}.png")[0] for n in TRAINING]

    serving_base = output / "unet_isbi_serving"
    metadata = {
        "training": "saved_models/README.md (examples/train_isbi.py; slices 00-19 train, 20-24 held out)",
        "export_command": COMMAND,
    }
    folder = kfcn.export.saved_model(model, serving_base, version=1, overwrite=True, metadata=metadata)  # atomic
    reports = {
        "float32": kfcn.export.tflite(model, output / "unet_isbi_float32.tflite", input_shape=(512, 512)),
        "float16": kfcn.export.tflite(model, output / "unet_isbi_float16.tflite", "float16", input_shape=(512, 512)),
        "int8": kfcn.export.tflite(
            model, output / "unet_isbi_int8.tflite", "int8", calibration, input_shape=(512, 512)
        ),
    }
    serve = tf.saved_model.load(str(folder)).signatures["serving_default"]
    forms = {
        "keras": lambda image: predict(model, image),
        "saved_model": lambda image: serve(pixels_0_255=tf.constant(image[None]))["probabilities"].numpy()[0],
        **{f"tflite_{name}": tflite_predictor(report["path"]) for name, report in reports.items()},
    }
    table = {}
    reference = {name: forms["keras"](image) for name, (image, _) in pairs.items()}
    print(f"{'form':<16}{'pixel error':>12}{'membrane Dice':>15}{'max |drift|':>13}{'mean |drift|':>14}")
    for form, run in forms.items():
        errors, dices, drifts, means = [], [], [], []
        for name, (image, label) in pairs.items():
            probability = run(image)
            error, dice = scores(probability, label)
            errors.append(error)
            dices.append(dice)
            drifts.append(float(np.abs(probability - reference[name]).max()))
            means.append(float(np.abs(probability - reference[name]).mean()))
        table[form] = {
            "pixel_error": round(float(np.mean(errors)), 4),
            "membrane_dice": round(float(np.mean(dices)), 4),
            "max_abs_drift_vs_keras": float(f"{max(drifts):.3g}"),
            "mean_abs_drift_vs_keras": float(f"{np.mean(means):.3g}"),
        }
        row = table[form]
        print(
            f"{form:<16}{row['pixel_error']:>12.4f}{row['membrane_dice']:>15.4f}"
            f"{row['max_abs_drift_vs_keras']:>13.3g}{row['mean_abs_drift_vs_keras']:>14.3g}"
        )
    card = json.loads((folder / kfcn.export.MODEL_CARD_NAME).read_text())
    card_out = {
        "command": COMMAND,
        "input_contract": card["input"],
        "output": card["output"],
        "held_out_slices": HELD_OUT,
        "metrics_mean_over_held_out_slices": table,
        "files": {
            "saved_model": str(folder),
            **{
                f"tflite_{name}": {"path": r["path"], "bytes": r["bytes"], "ops": r["ops"]}
                for name, r in reports.items()
            },
        },
    }
    (output / "unet_isbi_deployment.json").write_text(json.dumps(card_out, indent=2) + "\n")
    print(f"wrote {output}/unet_isbi_deployment.json")


if __name__ == "__main__":
    main()
