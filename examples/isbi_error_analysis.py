"""Where the ISBI U-Net's pixel error comes from: edges drawn off, or membranes missed and invented.

    KERAS_BACKEND=tensorflow python examples/isbi_error_analysis.py \
        --log saved_models/unet_isbi_training.csv   # writes saved_models/unet_isbi_error_analysis.json
    KERAS_BACKEND=tensorflow python examples/isbi_error_analysis.py --model RUN/model.keras \
        --log RUN/training.csv --output RUN/error_analysis.json --figure RUN/errors.png

The model predicts every slice of `kfcn/assets/isbi2012`: the held-out slices 20-24 and the
training slices 00-19 (whole slices, without augmentation). For each set, as means over the
slices, `kfcn.evaluation.pixel_errors_by_edge_distance` splits the pixel error (threshold 0.5)
into membrane drawn where the label has cell interior and the converse, and into what edges
drawn within 1 or 2 px of the annotated ones explain and what they do not (membrane invented
inside a cell, or missed); with the lowest pixel error over thresholds 0.05-0.95, and the
adapted Rand error (best threshold; thin, singletons, and singletons with the membrane drawn
within 2 px beside an annotated one given to the cells: what the membrane's width costs).
With `--log` (a run's `training.csv`), the learning curve in steps of 30 epochs: the CPU
hours spent and the mean training and validation pixel error of those epochs.

The report (JSON) names the model by its SHA-256 and holds a Markdown section of these
tables, which `kfcn card RUN --analysis REPORT` adds to the run's card. The figure shows one
held-out slice's errors coloured by kind.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from figures import save_panels
from PIL import Image

from kfcn.atomic import atomic_path
from kfcn.cli.common import file_sha256, shown_path
from kfcn.evaluation import best_rand_error, errors_near_edges, pixel_errors_by_edge_distance
from kfcn.inference import predict
from kfcn.samples import isbi2012_dir, shipped_model_path
from kfcn.saving import load_model

SETS = {"held_out": range(20, 25), "training": range(0, 20)}
THRESHOLDS = tuple(float(t) for t in np.round(np.arange(0.05, 0.96, 0.05), 2))
TOLERANCES = (1, 2)
OUTPUT = Path("saved_models/unet_isbi_error_analysis.json")
FIGURE = Path("docs/images/isbi_errors.png")
# The figure's colours (RGB 0-255): membrane drawn a pixel or two off, and membrane missed or invented.
EDGE_OFF, INVENTED, MISSED = (255, 200, 0), (230, 30, 30), (40, 120, 255)


def slice_pair(index):
    """(image, 0/1 label: 1 = cell interior) of slice `index`."""
    folder = isbi2012_dir()
    image = np.asarray(Image.open(folder / "images" / f"slice_{index:02d}.png"))
    label = (np.asarray(Image.open(folder / "labels" / f"slice_{index:02d}.png")) > 0).astype("int32")
    return image, label


def set_scores(model, indices):
    """Means over the slices of the edge-distance split, the threshold sweep, and the first slice's maps."""
    rows, sweeps, first = [], [], None
    for index in indices:
        image, label = slice_pair(index)
        probability = predict(model, image)
        if probability.shape[-1] not in (1, 2):
            raise SystemExit(f"The model gives {probability.shape[-1]} channels; this analysis takes a membrane model.")
        probability = probability[..., -1]  # the sigmoid channel, or a two-class softmax's foreground
        row = pixel_errors_by_edge_distance(probability, label, tolerances=TOLERANCES)
        # The Rand error as scored, and with the membrane drawn beside an annotated one (within 2 px: thicker or a
        # pixel aside) given back to the cells; no gap is closed, so only what the membrane's width costs goes.
        widened = errors_near_edges(probability > 0.5, label, 2) & (label == 1)
        row["rand_error_thin"] = best_rand_error(probability, label, border="thin")["adapted_rand_error"]
        row["rand_error_singletons"] = best_rand_error(probability, label)["adapted_rand_error"]
        row["rand_error_singletons_width_as_annotated"] = best_rand_error(np.where(widened, 1.0, probability), label)[
            "adapted_rand_error"
        ]
        rows.append(row)
        sweeps.append([np.mean((probability > threshold) != label.astype(bool)) for threshold in THRESHOLDS])
        first = first or (index, image, label, probability)
    mean = {key: float(np.mean([row[key] for row in rows])) for key in rows[0]}
    sweep = np.mean(sweeps, axis=0)
    best = int(np.argmin(sweep))
    mean |= {"best_threshold": THRESHOLDS[best], "pixel_error_best_threshold": float(sweep[best])}
    return {"slices": [f"slice_{index:02d}" for index in indices], "mean": mean}, first


def learning_curve(log_path, step=30):
    """Blocks of `step` epochs of a training.csv: last epoch, CPU hours so far, mean pixel errors of the block."""
    from kfcn.training import read_log

    log = read_log(log_path)
    cpu_hours = np.cumsum(np.nan_to_num(log["cpu_seconds"])) / 3600
    blocks = []
    for start in range(0, len(log["epoch"]), step):
        block = slice(start, min(start + step, len(log["epoch"])))
        blocks.append(
            {
                "epochs": [int(log["epoch"][block][0]), int(log["epoch"][block][-1])],
                "cpu_hours": float(cpu_hours[block][-1]),
                "pixel_error": float(np.nanmean(log["pixel_error"][block])),
                "val_pixel_error": float(np.nanmean(log["val_pixel_error"][block])),
            }
        )
    return blocks


def markdown(report):
    """The report's tables and what they measure, as a card section."""
    rows = []
    for name in ("held_out", "training"):
        m, numbers = report[name]["mean"], [slice_name.removeprefix("slice_") for slice_name in report[name]["slices"]]
        span = "-".join(sorted({numbers[0], numbers[-1]}))
        title = f"held-out slices {span}" if name == "held_out" else f"training slices {span}, whole"
        rows.append(
            f"| {title} | {m['pixel_error']:.4f} | {m['pixel_error_best_threshold']:.4f} ({m['best_threshold']:g}) | "
            f"{m['false_background']:.4f} / {m['false_foreground']:.4f} | "
            f"{1 - m['predicted_foreground']:.3f} / {1 - m['true_foreground']:.3f} | "
            f"{m['pixel_error_beyond_1px']:.4f} | {m['pixel_error_beyond_2px']:.4f} | "
            f"{m['false_background_beyond_2px']:.4f} / {m['false_foreground_beyond_2px']:.4f} | "
            f"{m['rand_error_thin']:.4f} | {m['rand_error_singletons']:.4f} | "
            f"{m['rand_error_singletons_width_as_annotated']:.4f} |"
        )
    held, trained = report["held_out"]["mean"], report["training"]["mean"]

    def near(m):
        return m["pixel_error"] - m["pixel_error_beyond_2px"]

    lines = [
        "## Where the errors come from (`examples/isbi_error_analysis.py`)",
        "",
        'Means over slices; pixel errors are fractions of all pixels, at threshold 0.5 unless said. "Drawn": '
        'membrane predicted where the label has cell interior / interior where it has membrane. "Not explained '
        'within k px": the wrong pixels left once every one that an edge drawn within k px of the annotated '
        "edge explains is forgiven (`kfcn.evaluation.errors_near_edges`: its predicted class lies within k px in "
        "the label and its true class within k px in the prediction); the rest is membrane invented inside a "
        "cell or missed (a gap of more than about 4 px). Rand errors are `kfcn evaluate`'s (best threshold); "
        "the last column scores the prediction with its membrane pixels that lie within 2 px of an annotated "
        "membrane given to the cells, which removes what the membrane's width costs and closes no gap.",
        "",
        "| slices | pixel error | lowest over thresholds | membrane / interior drawn "
        "| membrane share predicted / label | not explained within 1 px | within 2 px "
        "| of which invented / missed | Rand error, thin | Rand error, singletons | singletons, width as annotated |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"{near(held) / held['pixel_error']:.0%} of the held-out pixel error is edges drawn within 2 px of the "
        f"annotated ones: {near(held):.4f} of the pixels, against {near(trained):.4f} on the slices the model trained "
        f"on; what no such edge explains is {held['pixel_error_beyond_2px']:.4f} held out and "
        f"{trained['pixel_error_beyond_2px']:.4f} on the training slices. Given the membrane's width as annotated, "
        f"the held-out Rand error (singletons) would be {held['rand_error_singletons_width_as_annotated']:.4f} "
        f"instead of {held['rand_error_singletons']:.4f} (thin: {held['rand_error_thin']:.4f}).",
    ]
    curve = report.get("learning_curve")
    if curve:
        lines += [
            "",
            "Learning curve (the run's log; validation with Keras' moving batch-norm statistics, before the "
            "final recomputation):",
            "",
            "| epochs | CPU hours at the end | training pixel error (augmented crops) | validation pixel error |",
            "|---|---|---|---|",
            *[
                f"| {b['epochs'][0]}-{b['epochs'][1]} | {b['cpu_hours']:.2f} | {b['pixel_error']:.4f} | "
                f"{b['val_pixel_error']:.4f} |"
                for b in curve
            ],
        ]
    return "\n".join(lines) + "\n"


def error_picture(image, label, probability, threshold=0.5, tolerance=2):
    """The slice in grey with its wrong pixels coloured: an edge within `tolerance` px explains them, or membrane
    invented, or membrane missed."""
    predicted = probability > threshold
    wrong = predicted != label.astype(bool)
    near = errors_near_edges(predicted, label, tolerance)
    picture = np.repeat(image[..., None], 3, axis=-1).astype("float32") * 0.6
    picture[near] = EDGE_OFF
    picture[wrong & ~near & ~predicted] = INVENTED  # membrane predicted inside a cell
    picture[wrong & ~near & predicted] = MISSED  # interior predicted on a membrane
    return picture.astype("uint8")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a .keras file (default: the shipped U-Net)")
    parser.add_argument("--log", help="the run's training.csv, for the learning curve")
    parser.add_argument("--output", default=str(OUTPUT), help="the JSON report to write")
    parser.add_argument("--figure", default=str(FIGURE), help="the PNG of a held-out slice's errors")
    parser.add_argument("--quick", action="store_true", help="one slice of each set (a smoke test)")
    args = parser.parse_args()
    sets = {name: indices[:1] for name, indices in SETS.items()} if args.quick else SETS
    model_path = Path(args.model) if args.model else shipped_model_path()
    model = load_model(model_path)
    report = {
        "model": shown_path(args.model) if args.model else "kfcn/assets/models/unet_isbi.keras",
        "model_sha256": file_sha256(model_path),
    }
    report["threshold"] = 0.5
    report["held_out"], (index, image, label, probability) = set_scores(model, sets["held_out"])
    report["training"], _ = set_scores(model, sets["training"])
    if args.log:
        report["learning_curve"] = learning_curve(args.log)
    report["markdown"] = markdown(report)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(output) as temporary:
        temporary.write_text(json.dumps(report, indent=2) + "\n")
    print(report["markdown"])
    print(f"wrote {output}")
    crop = (slice(128, 384), slice(128, 384))
    picture = error_picture(image, label, probability)
    save_panels(
        args.figure,
        [
            [
                (image[crop], f"slice_{index:02d} (held out), centre 256 px", {"cmap": "gray"}),
                (label[crop], "label (white: cell interior)", {"cmap": "gray"}),
                (picture[crop], "the model's wrong pixels", None),
            ]
        ],
        panel_size=(3.2, 3.4),
        legend=[
            (EDGE_OFF, "an edge drawn within 2 px of the annotated one"),
            (INVENTED, "membrane invented inside a cell"),
            (MISSED, "membrane missed"),
        ],
        legend_columns=3,
    )


if __name__ == "__main__":
    main()
