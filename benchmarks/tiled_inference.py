"""Tiled prediction throughput and memory: kfcn vs a naive per-tile loop vs MONAI.

All three run the same Keras U-Net under the PyTorch backend (a Keras model is a
torch module there, which is what lets MONAI drive it), with the same tile, overlap
and Gaussian blending, on the same image. A second part predicts an 8192x8192 image
from a memory-mapped file into a memory-mapped output and reports peak memory.

    python benchmarks/tiled_inference.py                 # 2048^2 comparison + 8192^2 memory
    python benchmarks/tiled_inference.py --size 1024 --big 0   # quick
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import psutil  # noqa: E402
from timing import best_of  # noqa: E402

from kfcn.inference import predict_tiled  # noqa: E402
from kfcn.models import unet  # noqa: E402


def peak_rss_mb():
    info = psutil.Process().memory_info()
    return info.rss / 2**20


def naive_loop(model, image, tile, overlap):
    """model.predict on one tile at a time, Gaussian-blended, the way a first attempt looks."""
    height, width = image.shape[:2]
    step = tile - overlap
    out = np.zeros((height, width, model.output_shape[-1]), "float32")
    weight = np.zeros((height, width, 1), "float32")
    position = np.arange(tile) - (tile - 1) / 2
    window = np.exp(-(position**2) / (2 * (0.125 * tile) ** 2))
    window2d = np.outer(window, window)[..., None].astype("float32")
    padded = np.pad(image, ((0, tile), (0, tile), (0, 0)), mode="reflect")
    for top in range(0, height, step):
        for left in range(0, width, step):
            prediction = model.predict(padded[None, top : top + tile, left : left + tile], verbose=0)[0]
            bottom, right = min(top + tile, height), min(left + tile, width)
            out[top:bottom, left:right] += (prediction * window2d)[: bottom - top, : right - left]
            weight[top:bottom, left:right] += window2d[: bottom - top, : right - left]
    return out / weight


def monai_sliding_window(model, image, tile, overlap, batch):
    import torch
    from monai.inferers import sliding_window_inference

    def predictor(x):  # MONAI is channels-first, the Keras model channels-last
        return model(x.permute(0, 2, 3, 1), training=False).permute(0, 3, 1, 2)

    with torch.no_grad():
        inputs = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)[None]))
        result = sliding_window_inference(
            inputs, (tile, tile), batch, predictor, overlap=overlap / tile, mode="gaussian", padding_mode="reflect"
        )
    return result[0].permute(1, 2, 0).numpy()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=2048, help="side of the comparison image")
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--overlap", type=int, default=64)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--filters", type=int, default=16)
    parser.add_argument("--big", type=int, default=8192, help="side of the memory test image (0: skip)")
    args = parser.parse_args()
    keras.utils.set_random_seed(0)
    model = unet((None, None, 1), num_classes=1, filters=args.filters, depth=4)
    image = np.random.default_rng(0).random((args.size, args.size, 1)).astype("float32")
    megapixels = args.size**2 / 1e6

    # The reference: the whole image in one call (feasible at this size, not at 8192^2).
    reference = np.asarray(keras.ops.convert_to_numpy(model(image[None], training=False)))[0]
    interior = slice(128, -128)  # beyond the 200-px receptive field's reach from the image border

    def error(result):
        difference = np.abs(result - reference)[interior, interior]
        return float(difference.mean()), float(difference.max())

    rows = []
    seconds, ours = best_of(
        lambda: predict_tiled(
            model, image, args.tile, overlap=args.overlap, blend="gaussian", batch_size=args.batch, progress=False
        )
    )
    rows.append(("kfcn.inference.predict_tiled", seconds, error(ours)))
    seconds, monai = best_of(lambda: monai_sliding_window(model, image, args.tile, args.overlap, args.batch))
    rows.append(("monai sliding_window_inference", seconds, error(monai)))
    seconds, naive = best_of(lambda: naive_loop(model, image, args.tile, args.overlap), repeats=1)
    rows.append(("naive loop of model.predict", seconds, error(naive)))
    # kfcn's default: overlap from the receptive field (200 px here), which makes tiles exact.
    seconds, exact = best_of(
        lambda: predict_tiled(model, image, 2 * args.tile, batch_size=max(1, args.batch // 4), progress=False)
    )
    rows.append((f"kfcn, tile {2 * args.tile}, overlap=None", seconds, error(exact)))

    print(
        f"\nU-Net filters={args.filters} depth=4, {model.count_params():,} parameters, backend "
        f"{keras.backend.backend()}, image {args.size}x{args.size}, tile {args.tile}, overlap {args.overlap}, "
        f"gaussian blending, batch {args.batch}, {os.cpu_count()} CPU cores, best of 3 runs"
    )
    print("error = |tiled - whole-image prediction|, more than 128 px from the image border")
    print(f"{'method':<34}{'seconds':>10}{'Mpx/s':>10}{'mean error':>14}{'max error':>14}")
    for name, seconds, (mean, largest) in rows:
        print(f"{name:<34}{seconds:>10.2f}{megapixels / seconds:>10.2f}{mean:>14.2e}{largest:>14.2e}")

    if args.big:
        with tempfile.TemporaryDirectory() as folder:
            source = np.lib.format.open_memmap(
                os.path.join(folder, "in.npy"), mode="w+", dtype="float32", shape=(args.big, args.big, 1)
            )
            for top in range(0, args.big, 1024):
                source[top : top + 1024] = np.random.default_rng(top).random((min(1024, args.big - top), args.big, 1))
            source.flush()
            target = np.lib.format.open_memmap(
                os.path.join(folder, "out.npy"), mode="w+", dtype="float32", shape=(args.big, args.big, 1)
            )
            rss_before = peak_rss_mb()
            tracemalloc.start()
            started = time.perf_counter()
            predict_tiled(
                model,
                source,
                args.tile,
                overlap=args.overlap,
                blend="gaussian",
                batch_size=args.batch,
                out=target,
                progress=False,
            )
            seconds = time.perf_counter() - started
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            image_mb = args.big**2 * 4 / 2**20
            tile_batch_mb = args.batch * args.tile**2 * 4 * args.filters * 2 / 2**20
            print(
                f"\n{args.big}x{args.big} image from a memory-mapped .npy into a memory-mapped output: "
                f"{seconds:.1f} s ({args.big**2 / 1e6 / seconds:.2f} Mpx/s)"
            )
            print(
                f"peak NumPy/Python allocations (tracemalloc): {peak / 2**20:.1f} MiB; "
                f"one image-sized float32 array would be {image_mb:.0f} MiB"
            )
            print(
                f"process RSS before/after: {rss_before:.0f} / {peak_rss_mb():.0f} MiB "
                f"(includes mapped file pages the kernel may drop; first-layer activations of one tile batch "
                f"~{tile_batch_mb:.0f} MiB)"
            )


if __name__ == "__main__":
    main()
