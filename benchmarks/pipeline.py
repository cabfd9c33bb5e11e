"""Is the input pipeline fast enough? Crops/s of kfcn's crop pipeline vs the model's training step.

The pipeline (ISBI slices, random 256x256 crops, elastic + geometric augmentation, the
U-Net weight map) must deliver crops faster than the training step consumes them.

    KERAS_BACKEND=tensorflow python benchmarks/pipeline.py
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import argparse  # noqa: E402
import time  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402

import kfcn  # noqa: E402
from kfcn.data import folder_dataset, isbi2012_dir, random_crop_pipeline  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--filters", type=int, default=16)
    args = parser.parse_args()
    root = isbi2012_dir()
    pairs = folder_dataset(root / "images", root / "labels", verbose=False)
    rows = []
    for augment, weights in ((None, None), ("geometric", None), ("elastic", "unet")):
        batches = random_crop_pipeline(pairs, args.crop, args.batch, augment=augment, weight_map=weights, seed=0)
        iterator = iter(batches)
        for _ in range(3):  # fills the cache (and computes the weight maps) and the shuffle buffer
            next(iterator)
        started = time.perf_counter()
        for _ in range(args.batches):
            next(iterator)
        seconds = time.perf_counter() - started
        rows.append((f"pipeline, augment={augment}, weight_map={weights}", args.batches * args.batch / seconds))

    model = kfcn.models.unet((None, None, 1), num_classes=1, filters=args.filters, depth=4, batch_norm=True)
    model.compile(keras.optimizers.Adam(1e-3), keras.losses.BinaryCrossentropy())
    x = np.random.rand(args.batch, args.crop, args.crop, 1).astype("float32")
    y = (x > 0.5).astype("float32")
    for _ in range(3):
        model.train_on_batch(x, y)
    steps = 10
    started = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    rows.append((f"U-Net training step (filters {args.filters})", steps * args.batch / (time.perf_counter() - started)))

    print(
        f"\n{args.crop}x{args.crop} crops, batch {args.batch}, backend {keras.backend.backend()}, "
        f"{os.cpu_count()} CPU cores"
    )
    print(f"{'stage':<52}{'crops/s':>10}")
    for name, rate in rows:
        print(f"{name:<52}{rate:>10.1f}")


if __name__ == "__main__":
    main()
