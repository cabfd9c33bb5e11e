"""What a keras-hub encoder buys without pretrained weights: CamVid, the same CPU time for each network.

Two U-Nets of similar size, both from random weights, each trained by `kfcn train --recipe
camvid-unet` for the same wall-clock budget (stopped by SIGTERM, which `kfcn train` answers by
keeping its best epoch), then scored on CamVid's 101 val images, whole images, dataset-level
confusion (void ignored):

- kfcn's own U-Net (`--filters 40`, depth 4);
- a U-Net on a keras-hub ResNet-18 (basic blocks 64-128-256-512, 2 each), saved here as a local
  preset folder with ImageNet's mean and std as its image converter, under kfcn's decoder
  (`--model-options '{"backbone": FOLDER}' --filters 64`).

Both use the recipe's crops, flips and optimizer, with `--class-weights sqrt-median-frequency`,
selection on val mIoU, and `--precision` as given (mixed_bfloat16 pays on CPUs with AMX/AVX-512 BF16).
The schedule is the recipe's cosine over a nominal 1,000 epochs, so within the budget the rate is
practically constant for both. With internet, the pretrained start is `--model-options
'{"backbone": "resnet_18_imagenet", "encoder_freeze": true}'` (then `kfcn.models.set_encoder_freeze`
and a lower rate; README, "Encoders").

    KERAS_BACKEND=tensorflow python benchmarks/keras_hub_encoder.py --data ../shared/datasets/camvid \
        --minutes 10 --precision mixed_bfloat16 --output /tmp/kfcn-hub-encoder
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import argparse  # noqa: E402
import csv  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

CLASSES = 11
VOID = 11
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def resnet18_preset(folder):
    """A random-weight ResNet-18 (keras-hub) with ImageNet's converter, as a local preset folder."""
    import keras_hub

    backbone = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[7],
        stackwise_num_filters=[64, 128, 256, 512],
        stackwise_num_blocks=[2, 2, 2, 2],
        stackwise_num_strides=[1, 2, 2, 2],
        block_type="basic_block",
    )
    converter = keras_hub.layers.ResNetImageConverter(
        scale=[1 / (255 * s) for s in STD], offset=[-m / s for m, s in zip(MEAN, STD)]
    )
    backbone.save_to_preset(str(folder))
    converter.save_to_preset(str(folder))
    return str(folder)


def train(name, extra, args):
    """Runs `kfcn train` for the budget; returns (seconds, optimizer steps done)."""
    run = args.output / name
    data = Path(args.data)
    command = [
        *[sys.executable, "-m", "kfcn", "train", "--recipe", "camvid-unet"],
        *["--images", str(data / "train/images"), "--labels", str(data / "train/labels")],
        *["--val-images", str(data / "val/images"), "--val-labels", str(data / "val/labels")],
        *["--output", str(run), "--epochs", "1000", "--steps", str(args.steps)],
        *["--class-weights", "sqrt-median-frequency", "--monitor", "val_mean_iou"],
        *["--precision", args.precision, "--no-jit-compile", "--overwrite", *extra],
    ]
    start = time.perf_counter()
    with open(args.output / f"{name}.log", "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            process.wait(timeout=args.minutes * 60)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGTERM)  # kfcn train stops promptly, its best epoch kept
            process.wait()
    seconds = time.perf_counter() - start
    with open(run / "training.csv") as file:
        epochs = len(list(csv.DictReader(file)))
    return seconds, epochs * args.steps


def val_scores(model_path, data):
    """Global accuracy, class average accuracy, mIoU and per-class IoU over the whole val split."""
    from kfcn.evaluation import confusion_matrix, confusion_scores
    from kfcn.inference import predict
    from kfcn.saving import load_model

    model = load_model(model_path)
    confusion = np.zeros((CLASSES, CLASSES))
    for image_path in sorted((Path(data) / "val/images").glob("*.png")):
        image = np.asarray(Image.open(image_path))
        label = np.asarray(Image.open(Path(data) / "val/labels" / image_path.name))
        predicted = predict(model, image).argmax(-1)
        confusion += confusion_matrix(predicted, label, CLASSES, VOID)
    scores = confusion_scores(confusion)
    return {
        "global": scores["global_accuracy"],
        "class_average": scores["class_accuracy"],
        "mean_iou": scores["mean_iou"],
        "iou": [round(value, 4) for value in scores["iou_per_class"]],
        "parameters": model.count_params(),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/datasets/camvid", help="CamVid in SegNet's split")
    parser.add_argument("--minutes", type=float, default=10.0, help="training budget of each network")
    parser.add_argument("--steps", type=int, default=25, help="steps an epoch (one validation each)")
    parser.add_argument("--precision", default="float32", choices=("float32", "mixed_bfloat16"))
    parser.add_argument("--output", type=Path, default=Path("/tmp/kfcn-hub-encoder"))
    args = parser.parse_args()
    shutil.rmtree(args.output, ignore_errors=True)
    args.output.mkdir(parents=True)
    preset = resnet18_preset(args.output / "resnet18_random")
    contenders = {
        "kfcn_unet": ["--filters", "40"],
        "unet_on_keras_hub_resnet18": ["--filters", "64", "--model-options", json.dumps({"backbone": preset})],
    }
    rows = {}
    for name, extra in contenders.items():
        seconds, steps = train(name, extra, args)
        rows[name] = {
            "seconds": round(seconds),
            "steps": steps,
            **val_scores(args.output / name / "model.keras", args.data),
        }
        print(f"{name}: {rows[name]}", flush=True)
    print(f"\nCamVid val (101 images), {args.minutes:g} min of training each, {args.precision}, random weights")
    print(f"{'network':30} {'parameters':>11} {'steps':>6} {'s/step':>7} {'global':>7} {'class avg':>9} {'mIoU':>6}")
    for name, row in rows.items():
        per_step = row["seconds"] / max(row["steps"], 1)
        print(
            f"{name:30} {row['parameters']:>11,} {row['steps']:>6} {per_step:>7.2f} {row['global']:>7.3f} "
            f"{row['class_average']:>9.3f} {row['mean_iou']:>6.3f}"
        )
    (args.output / "results.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
