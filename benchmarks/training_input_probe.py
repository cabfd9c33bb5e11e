"""Where `model.fit` on the crop pipeline loses time against the same step on ready batches (issue 13, target 4).

Times the same compiled (XLA) training step of the benchmark's U-Net (filters 32, depth 4,
256^2 crops, batch 4) fed three ways, twice each in turn: the crop pipeline
(`kfcn.data.random_crop_pipeline`), the same batches cached in memory as a `tf.data.Dataset`,
and the same batches as NumPy arrays. Prints crops/s; a profile aid, not a comparison with a
peer (`prediction_paths.py` has the PyTorch loop).

    KERAS_BACKEND=tensorflow python benchmarks/training_input_probe.py   # about 4 minutes on 2 cores
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import time  # noqa: E402

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import kfcn  # noqa: E402

CROP, BATCH, STEPS = 256, 4, 6


def main():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (8, 2 * CROP, 2 * CROP, 1)).astype("float32")
    labels = rng.integers(0, 2, (8, 2 * CROP, 2 * CROP, 1)).astype("int32")
    batches = kfcn.data.random_crop_pipeline(
        tf.data.Dataset.from_tensor_slices((images, labels)), CROP, batch_size=BATCH, seed=0
    )
    cached = batches.take(STEPS).cache()
    x, y = (np.concatenate(parts) for parts in zip(*[(a.numpy(), b.numpy()) for a, b in cached]))
    model = kfcn.models.unet((None, None, 1), num_classes=1, filters=32, depth=4, upsampling="transpose")
    model.compile(optimizer="adam", loss=kfcn.training.segmentation_loss("ce+j2", 1), jit_compile=True)
    model.fit(batches, epochs=1, steps_per_epoch=2, verbose=0)
    feeds = {
        "crop pipeline": lambda: model.fit(batches, epochs=1, steps_per_epoch=STEPS, verbose=0),
        "cached batches (tf.data)": lambda: model.fit(cached.repeat(), epochs=1, steps_per_epoch=STEPS, verbose=0),
        "NumPy arrays": lambda: model.fit(x, y.astype("float32"), batch_size=BATCH, epochs=1, verbose=0, shuffle=False),
    }
    for round_ in (1, 2):
        for name, fit in feeds.items():
            started = time.perf_counter()
            fit()
            print(f"round {round_}, {name:<26} {STEPS * BATCH / (time.perf_counter() - started):.2f} crops/s")


if __name__ == "__main__":
    main()
