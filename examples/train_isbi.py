"""Trains the U-Net that kfcn ships (kfcn/assets/models/unet_isbi.keras) on the ISBI 2012 slices.

Slices 00-19 train (random 256x256 crops, elastic + geometric augmentation, optionally
the U-Net border weight map as per-pixel weights), slices 20-24 are held out: their
scores are printed each epoch but steer nothing when `--schedule cosine` (the learning
rate follows a fixed cosine decay); `--schedule plateau` halves it when the held-out
loss stalls, as the first shipped model was trained. `--init` fine-tunes a `.keras` file.

    KERAS_BACKEND=tensorflow python examples/train_isbi.py --epochs 30 --steps 50
    KERAS_BACKEND=tensorflow python examples/train_isbi.py --init kfcn/assets/models/unet_isbi.keras \
        --weight-map none --schedule cosine --learning-rate 3e-4 --epochs 12 --steps 50 --jit
"""

from __future__ import annotations

import kfcn  # noqa: F401  (first: Keras and TensorFlow then start without their C++ log)

# isort: split
import argparse
import json
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

import kfcn.saving
from kfcn.atomic import atomic_path
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


def compile_isbi(model, learning_rate=1e-3, jit_compile="auto"):
    """Binary cross-entropy + j2 (a weight map, if any, comes with the batches), pixel error and membrane Dice.

    `learning_rate` is a float or a `keras.optimizers.schedules.LearningRateSchedule`.
    """
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        jit_compile=jit_compile,
        loss=kfcn.losses.CompoundLoss([keras.losses.BinaryCrossentropy(), kfcn.losses.JaccardJ2Loss()]),
        metrics=[kfcn.metrics.PixelError(2), kfcn.metrics.DiceScore(2, class_ids=[0], name="membrane_dice")],
    )
    return model


def isbi_batches(pairs, crop, batch, seed, weight_map="unet"):
    """Random crops of `(image, label)` pairs, elastic + geometric augmentation, by default the U-Net weight map."""
    return random_crop_pipeline(pairs, crop, batch_size=batch, augment="elastic", weight_map=weight_map, seed=seed)


def command_line(args):
    """The flags that reproduce this run (store_true flags only when set, unset options left out)."""
    words = []
    for key, value in vars(args).items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            words.append(flag)
        elif value not in (None, False):
            words.append(f"{flag} {value}")
    return " ".join(words)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--steps", type=int, default=50, help="steps per epoch")
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--filters", type=int, help="base filters of a fresh U-Net (default 16)")
    parser.add_argument("--init", help="a .keras file to fine-tune instead of a fresh U-Net (its own filters)")
    parser.add_argument("--weight-map", choices=["unet", "none"], default="unet", help="per-pixel loss weights")
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument(
        "--schedule",
        choices=["plateau", "cosine"],
        default="plateau",
        help="plateau: halve the rate when the held-out loss stalls; cosine: a fixed decay to 1%% over all steps",
    )
    parser.add_argument("--jit", action="store_true", help="XLA-compile the training step (about 2x faster on CPU)")
    parser.add_argument("--output", default="kfcn/assets/models/unet_isbi.keras")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.init and args.filters is not None:
        parser.error("--filters sets a fresh U-Net's width; --init fine-tunes a model that has its own: give one.")
    keras.utils.set_random_seed(args.seed)

    train, held_out = split_isbi()
    weight_map = None if args.weight_map == "none" else args.weight_map
    train_batches = isbi_batches(train, args.crop, args.batch, args.seed, weight_map=weight_map)
    validation = (
        held_out.map(lambda image, label: (image, tf.cast(label, tf.float32)))
        .batch(1)
        .apply(tf.data.experimental.assert_cardinality(HELD_OUT))  # a known length: no "ran out of data" warning
    )

    model = kfcn.saving.load_model(args.init) if args.init else isbi_model(args.filters or 16)
    if args.schedule == "cosine":
        learning_rate = keras.optimizers.schedules.CosineDecay(args.learning_rate, args.epochs * args.steps, alpha=0.01)
        schedule_callbacks = []
    else:
        learning_rate = args.learning_rate
        schedule_callbacks = [keras.callbacks.ReduceLROnPlateau("val_loss", factor=0.5, patience=4)]
    compile_isbi(model, learning_rate, jit_compile=True if args.jit else "auto")
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
        callbacks=[keras.callbacks.CSVLogger(str(log_path)), *schedule_callbacks],
    )
    kfcn.saving.save_model(model, output)  # atomic, without optimizer state
    final = {key: float(values[-1]) for key, values in history.history.items()}
    summary = {
        "command": "KERAS_BACKEND=tensorflow python examples/train_isbi.py " + command_line(args),
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
        "minutes": round((time.time() - started) / 60, 1),
        "final_epoch": final,
        "parameters": int(model.count_params()),
    }
    with atomic_path(output.with_name(output.stem + "_training.json")) as temporary:
        temporary.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
