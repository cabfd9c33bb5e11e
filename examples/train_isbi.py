"""Trains the U-Net that kfcn ships (kfcn/assets/models/unet_isbi.keras) on the ISBI 2012 slices.

Slices 00-19 train (random 256x256 crops, elastic + geometric augmentation, the U-Net
border weight map as per-pixel weights), slices 20-24 are held out for validation.

    KERAS_BACKEND=tensorflow python examples/train_isbi.py --epochs 30 --steps 50
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
from kfcn.data import folder_dataset, isbi2012_dir, random_crop_pipeline

HELD_OUT = 5


def split_isbi():
    root = isbi2012_dir()
    full = folder_dataset(root / "images", root / "labels", label_mode="binary")
    count = sum(1 for _ in full)
    return full.take(count - HELD_OUT), full.skip(count - HELD_OUT)


def isbi_model(filters, name="unet_isbi"):
    """The shipped U-Net's architecture: depth 4, batch normalisation, raw 0-255 input, one sigmoid channel."""
    return kfcn.models.unet((None, None, 1), num_classes=1, filters=filters, depth=4, batch_norm=True, name=name)


def compile_isbi(model, learning_rate=1e-3):
    """Binary cross-entropy + j2 (the U-Net weight map comes with the batches), pixel error and membrane Dice."""
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=kfcn.losses.CompoundLoss([keras.losses.BinaryCrossentropy(), kfcn.losses.JaccardJ2Loss()]),
        metrics=[kfcn.metrics.PixelError(2), kfcn.metrics.DiceScore(2, class_ids=[0], name="membrane_dice")],
    )
    return model


def isbi_batches(pairs, crop, batch, seed):
    """Random crops of `(image, label)` pairs with elastic + geometric augmentation and the U-Net weight map."""
    return random_crop_pipeline(pairs, crop, batch_size=batch, augment="elastic", weight_map="unet", seed=seed)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--steps", type=int, default=50, help="steps per epoch")
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--filters", type=int, default=16)
    parser.add_argument("--output", default="kfcn/assets/models/unet_isbi.keras")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    keras.utils.set_random_seed(args.seed)

    train, held_out = split_isbi()
    train_batches = isbi_batches(train, args.crop, args.batch, args.seed)
    validation = (
        held_out.map(lambda image, label: (image, tf.cast(label, tf.float32)))
        .batch(1)
        .apply(tf.data.experimental.assert_cardinality(HELD_OUT))  # a known length: no "ran out of data" warning
    )

    model = compile_isbi(isbi_model(args.filters))
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    log_path = output.with_name(output.stem + "_training.csv")
    started = time.time()
    history = model.fit(
        train_batches,
        epochs=args.epochs,
        steps_per_epoch=args.steps,
        shuffle=False,  # the crop pipeline shuffles, reproducibly
        validation_data=validation,
        callbacks=[
            keras.callbacks.CSVLogger(str(log_path)),
            keras.callbacks.ReduceLROnPlateau("val_loss", factor=0.5, patience=4),
        ],
    )
    kfcn.saving.save_model(model, output)  # atomic, without optimizer state
    final = {key: float(values[-1]) for key, values in history.history.items()}
    summary = {
        "command": "KERAS_BACKEND=tensorflow python examples/train_isbi.py "
        + " ".join(f"--{k} {v}" for k, v in vars(args).items()),
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
        "minutes": round((time.time() - started) / 60, 1),
        "final_epoch": final,
        "parameters": int(model.count_params()),
    }
    output.with_name(output.stem + "_training.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
