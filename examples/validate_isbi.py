"""The shipped ISBI U-Net's validation table on the held-out slices 20-24 (never trained on).

    KERAS_BACKEND=tensorflow python examples/validate_isbi.py   # writes saved_models/unet_isbi_validation.json
    KERAS_BACKEND=tensorflow python examples/validate_isbi.py --model runs/new.keras --output runs/new_validation.json

Per slice and on average: pixel error (threshold 0.5), membrane-interior Dice, and the
adapted Rand error at the best threshold (as the ISBI 2012 challenge ranked entries) in
both border conventions of `kfcn.evaluation` ("singletons": every predicted membrane pixel
its own segment; "thin": membrane pixels given to the nearest cell, close to the
challenge's thinned boundaries), plus the variation of information; without and with
test-time augmentation (d4). `tests/test_shipped_model.py` recomputes the table from the
shipped model and checks it against the file.

"isbi2012_original" holds the five slices' pixel and Rand errors as the challenge ranked
entries until 2015, and as the U-Net paper reports them (0.0611 and 0.0382 on the test
stack): 1 - the best F-score over thresholds, counts summed over the slices
(`kfcn.evaluation.isbi2012_original_scores`). Neither is the fraction of wrong pixels.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

from kfcn.atomic import atomic_path
from kfcn.cli.common import shown_path
from kfcn.evaluation import best_rand_error, isbi2012_original_scores, segmentation_scores
from kfcn.inference import predict
from kfcn.samples import isbi2012_dir, shipped_model_path
from kfcn.saving import load_model

HELD_OUT = [f"slice_{index:02d}" for index in range(20, 25)]
OUTPUT = Path("saved_models/unet_isbi_validation.json")


def validation_table(model, tta=None):
    """{slice: scores} and their mean for the held-out slices."""
    rows, probabilities, labels = {}, [], []
    for name in HELD_OUT:
        image = np.asarray(Image.open(isbi2012_dir() / "images" / f"{name}.png"))
        label = (np.asarray(Image.open(isbi2012_dir() / "labels" / f"{name}.png")) > 0).astype("int32")
        probability = predict(model, image, tta=tta)
        probabilities.append(probability)
        labels.append(label)
        scores = segmentation_scores(probability, label)
        thin = best_rand_error(probability, label, border="thin")
        rows[name] = {
            "pixel_error": scores["pixel_error"],
            "dice": scores["dice"],
            "rand_error_best_singletons": scores["rand_error_best"],
            "rand_error_best_thin": thin["adapted_rand_error"],
            "vi_split": scores["vi_split"],
            "vi_merge": scores["vi_merge"],
        }
    mean = {key: float(np.mean([row[key] for row in rows.values()])) for key in next(iter(rows.values()))}
    return {"per_slice": rows, "mean": mean, "isbi2012_original": isbi2012_original_scores(probabilities, labels)}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a .keras file (default: the shipped U-Net)")
    parser.add_argument("--output", default=str(OUTPUT), help="the JSON report to write")
    args = parser.parse_args()
    model = load_model(args.model or shipped_model_path())
    report = {
        "model": shown_path(args.model) if args.model else "kfcn/assets/models/unet_isbi.keras",
        "held_out": HELD_OUT,
        "plain": validation_table(model),
        "tta_d4": validation_table(model, tta="d4"),
    }
    output = Path(args.output)
    with atomic_path(output) as temporary:
        temporary.write_text(json.dumps(report, indent=2) + "\n")
    for name in ("plain", "tta_d4"):
        print(name, {key: round(value, 4) for key, value in report[name]["mean"].items()})
        print(f"{name}, as ISBI 2012 first ranked (1 - best F-score):", report[name]["isbi2012_original"])
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
