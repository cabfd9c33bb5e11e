"""Trains the U-Net that kfcn ships (kfcn/assets/models/unet_isbi.keras) on the ISBI 2012 slices.

Slices 00-19 train (random 256x256 crops, elastic + geometric augmentation, the U-Net
border weight map as per-pixel weights), slices 20-24 are held out for validation.
The weights kept are those of the epoch with the lowest held-out pixel error, taken from
an exponential moving average of the training weights (`SwapEMAWeights`). Rerunning the
same command after an interruption resumes at the epoch it stopped (`BackupAndRestore`).

    KERAS_BACKEND=tensorflow python examples/train_isbi.py --epochs 60 --steps 60
    # continue from a model already trained (the shipped one was made in two stages):
    KERAS_BACKEND=tensorflow python examples/train_isbi.py --initial kfcn/assets/models/unet_isbi.keras
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

import kfcn
import kfcn.saving
from kfcn.data import ResumeCropStream, folder_dataset, isbi2012_dir, random_crop_pipeline

HELD_OUT = 5


def split_isbi():
    root = isbi2012_dir()
    full = folder_dataset(root / "images", root / "labels", label_mode="binary")
    count = sum(1 for _ in full)
    return full.take(count - HELD_OUT), full.skip(count - HELD_OUT)


def build_model(args):
    if args.initial:
        return kfcn.saving.load_model(args.initial)
    return kfcn.models.unet(
        (None, None, 1), num_classes=1, filters=args.filters, depth=4, batch_norm=True, name="unet_isbi"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--steps", type=int, default=60, help="steps per epoch")
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--filters", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="peak of the cosine schedule")
    parser.add_argument("--initial", help=".keras model to continue training from")
    parser.add_argument("--output", default="kfcn/assets/models/unet_isbi.keras")
    parser.add_argument("--work-dir", default="runs/train_isbi", help="checkpoints and backups")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    keras.utils.set_random_seed(args.seed)

    train, held_out = split_isbi()
    train_batches = random_crop_pipeline(
        train, args.crop, batch_size=args.batch, augment="elastic", weight_map="unet", seed=args.seed
    )
    validation = (
        held_out.map(lambda image, label: (image, tf.cast(label, tf.float32)))
        .batch(1)
        .cache()
        .apply(tf.data.experimental.assert_cardinality(HELD_OUT))  # a known length: no "ran out of data" warning
    )

    model = build_model(args)
    total_steps = args.epochs * args.steps
    schedule = keras.optimizers.schedules.CosineDecay(
        args.learning_rate / 10, total_steps, warmup_target=args.learning_rate, warmup_steps=total_steps // 20
    )
    model.compile(
        optimizer=keras.optimizers.Adam(schedule, use_ema=True, ema_momentum=0.99),
        loss=kfcn.losses.CompoundLoss([keras.losses.BinaryCrossentropy(), kfcn.losses.JaccardJ2Loss()]),
        metrics=[kfcn.metrics.PixelError(2), kfcn.metrics.DiceScore(2, class_ids=[0], name="membrane_dice")],
        jit_compile=True,
    )
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    best = work / "best.keras"
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    started = time.time()
    model.fit(
        train_batches,
        epochs=args.epochs,
        steps_per_epoch=args.steps,
        shuffle=False,  # the crop pipeline shuffles, reproducibly
        validation_data=validation,
        callbacks=[
            ResumeCropStream(train_batches),
            keras.callbacks.SwapEMAWeights(swap_on_epoch=True),
            keras.callbacks.ModelCheckpoint(str(best), monitor="val_pixel_error", mode="min", save_best_only=True),
            keras.callbacks.BackupAndRestore(str(work / "backup")),
            keras.callbacks.CSVLogger(str(work / "training.csv"), append=True),
        ],
    )
    minutes = round((time.time() - started) / 60, 1)
    final = kfcn.saving.load_model(best)
    kfcn.saving.save_model(final, output)  # atomic, without optimizer state
    log = np.genfromtxt(work / "training.csv", delimiter=",", names=True)
    chosen = int(np.argmin(log["val_pixel_error"]))
    summary = {
        "command": "KERAS_BACKEND=tensorflow python examples/train_isbi.py "
        + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None),
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
        "minutes": minutes,
        "best_epoch": {name: float(log[name][chosen]) for name in log.dtype.names},
        "parameters": int(final.count_params()),
    }
    (work / "training.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
