"""Exports a shipped CamVid network for deployment and scores every form on the CamVid validation images.

For `--network unet` (the default; `segnet` for saved_models/camvid_segnet.keras) it writes, under
--output (build/camvid_unet by default: a command makes them, so they are not committed):
  camvid_unet_serving/1/        SavedModel for TF Serving (any image size, raw 0-255 RGB)
  camvid_unet_float32.tflite    TFLite, float32, 360x480 input (CamVid's size; the graph pads to the stride)
  camvid_unet_float16.tflite    TFLite, float16 weights
  camvid_unet_int8.tflite       TFLite, full-integer int8 (calibrated on 16 training images)
and the table saved_models/camvid_unet_deployment.json (--report): for each form the global accuracy,
class-average accuracy and mIoU (%) of one confusion matrix over the 101 validation images (void
excluded, as saved_models/camvid_unet_evaluation.json scores the Keras model), and the drift of its
class probabilities from the Keras model's.

    KERAS_BACKEND=tensorflow python examples/export_camvid.py [--network segnet]

`--limit N` scores the first N validation images and calibrates on N training images (a quick check).
"""

from __future__ import annotations

import kfcn  # noqa: F401  (first: Keras and TensorFlow then start without their C++ log)

# isort: split
import argparse
from pathlib import Path

from camvid_segmentation import CLASSES, DEFAULT_DATA, VOID, read_split, scores_from_confusion
from deployment_forms import export_and_score

from kfcn.evaluation import confusion_matrix
from kfcn.saving import load_model

COMMAND = "KERAS_BACKEND=tensorflow python examples/export_camvid.py"
RECIPES = {"unet": "camvid-unet", "segnet": "camvid-segnet"}  # --network: the recipe that trains it
CALIBRATION_IMAGES = 16
SCORES = ("global_accuracy", "class_accuracy", "mean_iou")


def camvid_scores(labels):
    """outputs (class probabilities) -> global accuracy, class-average accuracy and mIoU (%) of one confusion
    matrix over every labelled pixel of `labels`, void excluded.

    Example:
    >>> import numpy as np
    >>> label = np.array([[0, 1], [1, VOID]])
    >>> outputs = [np.eye(len(CLASSES))[[[0, 1], [0, 5]]]]  # one-hot: right, right, wrong, (void)
    >>> camvid_scores([label])(outputs)  # 2 of 3 pixels; class 0: 1/1, IoU 1/2; class 1: 1/2, IoU 1/2
    {'global_accuracy': 66.67, 'class_accuracy': 75.0, 'mean_iou': 50.0}
    """

    def score(outputs):
        confusion = sum(
            confusion_matrix(output.argmax(-1), label, len(CLASSES), ignore_class=VOID)
            for output, label in zip(outputs, labels)
        )
        scores = scores_from_confusion(confusion)
        return {key: round(float(scores[key]), 2) for key in SCORES}

    return score


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="CamVid folder (train/, val/)")
    parser.add_argument("--network", choices=sorted(RECIPES), default="unet", help="the shipped network")
    parser.add_argument("--model", type=Path, help="default: saved_models/camvid_NETWORK.keras")
    parser.add_argument("--output", type=Path, help="default: build/camvid_NETWORK")
    parser.add_argument("--report", type=Path, help="default: saved_models/camvid_NETWORK_deployment.json")
    parser.add_argument("--limit", type=int, default=None, help="only the first N validation images")
    args = parser.parse_args()
    stem = f"camvid_{args.network}"
    args.model = args.model or Path(f"saved_models/{stem}.keras")
    args.output = args.output or Path(f"build/{stem}")
    args.report = args.report or Path(f"saved_models/{stem}_deployment.json")
    if args.limit is not None and args.limit < 1:
        raise SystemExit(f"--limit {args.limit}: give at least 1 validation image, or leave --limit out for all.")
    if not (args.data / "val").is_dir():
        raise SystemExit(f"No CamVid validation split under {args.data}; pass --data.")
    images, labels = read_split(args.data, "val", args.limit)
    train_images, _ = read_split(args.data, "train")
    step = max(1, len(train_images) // (args.limit or CALIBRATION_IMAGES))
    calibration = list(train_images[::step][: args.limit or CALIBRATION_IMAGES])  # spread over the sequences
    model = load_model(args.model)
    command = COMMAND + (f" --network {args.network}" if args.network != "unet" else "")
    metadata = {"training": f"saved_models/{stem}.md (recipe {RECIPES[args.network]})", "export_command": command}
    export_and_score(
        model,
        args.model,
        args.output,
        stem,
        calibration=calibration,
        input_shape=images[0].shape[:2],
        metadata=metadata,
        images=list(images),
        score=camvid_scores(labels),
        report=args.report,
        command=command + (f" --limit {args.limit}" if args.limit else ""),
        table_key="metrics_over_validation_images",
        validation_images=len(images),
        calibration_images=len(calibration),
    )


if __name__ == "__main__":
    main()
