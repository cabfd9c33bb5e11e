"""kfcn's prediction and training paths beside the bare model and the PyTorch peers (issue 13), on CPU.

One run prints every figure next to its peer:

1. `kfcn.inference.predict` (512x512) and `predict_tiled` (2048x2048, tiles of 512, no
   overlap: the same pixels) against a compiled call of the same Keras model (TensorFlow).
2. Tiled prediction at MONAI's usual settings (roi 512, overlap 0.25, Gaussian, batch 4):
   kfcn on TensorFlow against `monai.inferers.sliding_window_inference` driving a plain
   PyTorch channels-last U-Net of the same architecture; then kfcn with `engine="litert"`
   (XNNPACK), the exact and `overlap="erf"` overlaps and the automatic tile size, with their
   agreement with whole-image prediction.
3. Mixed precision: which BF16 instructions the CPU has, and bf16 against float32.
4. Training: `model.fit` on the crop pipeline against a plain PyTorch loop, crops/s.

    KERAS_BACKEND=tensorflow python benchmarks/prediction_paths.py            # about 10 minutes on 2 cores
    KERAS_BACKEND=tensorflow python benchmarks/prediction_paths.py --quick    # small sizes, a smoke test

Needs the `bench` extra (`pip install -e ".[bench,torch]"`) for MONAI.
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import argparse  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
from timing import best_of  # noqa: E402

import kfcn  # noqa: E402
from kfcn.inference import predict, predict_tiled  # noqa: E402


def cpu_facts():
    flags, model = set(), platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as file:
            for line in file:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return model, flags


def torch_unet(filters, depth):
    """The same network as `kfcn.models.unet(filters=f, depth=d, upsampling="transpose")`, in plain PyTorch."""
    import torch
    from torch import nn

    def block(cin, cout):
        return nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1),
            nn.ReLU(True),
        )

    class UNet(nn.Module):
        def __init__(self):
            super().__init__()
            widths = [filters * 2**level for level in range(depth + 1)]
            self.down = nn.ModuleList([block(1, widths[0])] + [block(widths[i], widths[i + 1]) for i in range(depth)])
            self.up = nn.ModuleList(
                [nn.ConvTranspose2d(widths[i + 1], widths[i], 2, 2) for i in reversed(range(depth))]
            )
            self.merge = nn.ModuleList([block(2 * widths[i], widths[i]) for i in reversed(range(depth))])
            self.head = nn.Conv2d(widths[0], 1, 1)

        def forward(self, x):
            x = x / 255.0
            skips = []
            for level, down in enumerate(self.down):
                x = down(x)
                if level < depth:
                    skips.append(x)
                    x = torch.nn.functional.max_pool2d(x, 2)
            for up, merge in zip(self.up, self.merge):
                x = merge(torch.cat([skips.pop(), up(x)], dim=1))
            return torch.sigmoid(self.head(x))

    return UNet().eval().to(memory_format=torch.channels_last)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes: checks that the script runs")
    parser.add_argument("--filters", type=int, default=32)
    args = parser.parse_args()
    whole_side, big_side, tile, repeats = (128, 768, 384, 1) if args.quick else (512, 2048, 512, 3)
    filters = 8 if args.quick else args.filters
    import tensorflow as tf
    import torch

    cpu, flags = cpu_facts()
    native_bf16 = bool(flags & {"avx512_bf16", "amx_bf16"})
    print(
        f"{time.strftime('%Y-%m-%d')}, {cpu}, {os.cpu_count()} cores; keras {keras.__version__} "
        f"({keras.backend.backend()}), tensorflow {tf.__version__}, torch {torch.__version__}, "
        f"torch threads {torch.get_num_threads()}"
    )
    keras.utils.set_random_seed(0)
    model = kfcn.models.unet((None, None, 1), num_classes=1, filters=filters, depth=4, upsampling="transpose")
    rng = np.random.default_rng(0)
    whole = rng.integers(0, 256, (whole_side, whole_side, 1)).astype("float32")
    big = rng.integers(0, 256, (big_side, big_side, 1)).astype("float32")
    compiled = tf.function(lambda x: model(x, training=False), autograph=False)
    rows = []

    def row(name, seconds, peer_name, peer_seconds, pixels):
        rows.append((name, seconds, peer_name, peer_seconds, pixels))
        print(
            f"  {name:<44}{seconds * 1e3:>9.0f} ms  | {peer_name:<44}{peer_seconds * 1e3:>9.0f} ms"
            f"  | kfcn/peer throughput {peer_seconds / seconds:>5.2f}x  ({pixels / seconds / 1e6:.2f} Mpx/s)"
        )

    print(f"\n1. Prediction path against the bare compiled model (U-Net filters {filters}, depth 4)")
    bare, _ = best_of(lambda: compiled(whole[None]).numpy(), repeats)
    ours, _ = best_of(lambda: predict(model, whole), repeats)
    row(f"predict, {whole_side}^2", ours, "tf.function(model), same image", bare, whole_side**2)
    predict(model, whole, engine="litert")  # converts once for this shape
    ours, _ = best_of(lambda: predict(model, whole, engine="litert"), repeats)
    row(f'predict, {whole_side}^2, engine="litert"', ours, "tf.function(model), same image", bare, whole_side**2)
    tiles = (
        big.reshape(big_side // tile, tile, big_side // tile, tile, 1)
        .transpose(0, 2, 1, 3, 4)
        .reshape(-1, tile, tile, 1)
    )
    bare, _ = best_of(lambda: [compiled(tiles[i : i + 4]).numpy() for i in range(0, len(tiles), 4)], repeats)
    ours, _ = best_of(lambda: predict_tiled(model, big, tile, overlap=0, batch_size=4, progress=False), repeats)
    row(
        f"predict_tiled {big_side}^2, tile {tile}, overlap 0",
        ours,
        "tf.function(model), same tiles by 4",
        bare,
        big_side**2,
    )

    print(f"\n2. Tiled prediction, {big_side}^2, MONAI's settings (roi {tile}, overlap 0.25, gaussian, batch 4)")
    from monai.inferers import sliding_window_inference

    network = torch_unet(filters, 4)
    torch_input = torch.from_numpy(big.transpose(2, 0, 1)[None].copy()).contiguous(memory_format=torch.channels_last)

    def monai():
        with torch.inference_mode():
            return sliding_window_inference(torch_input, (tile, tile), 4, network, overlap=0.25, mode="gaussian")

    peer, _ = best_of(monai, repeats)
    overlap = tile // 4
    ours, _ = best_of(
        lambda: predict_tiled(model, big, tile, overlap=overlap, blend="gaussian", batch_size=4, progress=False),
        repeats,
    )
    row("kfcn predict_tiled (TensorFlow), same settings", ours, "MONAI + plain PyTorch U-Net", peer, big_side**2)
    reference = predict(model, big)  # the whole image in one call
    for name, options in (
        (
            'kfcn, engine="litert" (XNNPACK), same settings',
            {"overlap": overlap, "blend": "gaussian", "engine": "litert"},
        ),
        ("kfcn, exact overlap (receptive field)", {"overlap": None}),
        ('kfcn, overlap="erf"', {"overlap": "erf"}),
        ('kfcn, tile_size="auto" (4 GiB), overlap="erf"', {"overlap": "erf", "tile": "auto"}),
        ('kfcn, same, engine="litert"', {"overlap": "erf", "tile": "auto", "engine": "litert"}),
    ):
        options = dict(options)
        size = options.pop("tile", tile)
        started = time.perf_counter()
        predict_tiled(model, big, size, batch_size=4, progress=False, **options)  # compiles or converts
        first = time.perf_counter() - started
        seconds, result = best_of(
            lambda o=options, t=size: predict_tiled(model, big, t, batch_size=4, progress=False, **o), repeats
        )
        difference = np.abs(result - reference)
        row(name, seconds, "MONAI + plain PyTorch U-Net", peer, big_side**2)
        largest, mean = difference.max(), difference.mean()
        print(f"      vs whole image: max |diff| {largest:.2e}, mean {mean:.2e}; first call {first:.1f} s")
    exact = 2 * kfcn.inference.model_geometry(model).context
    print(f"      erf overlap chosen: {kfcn.inference.erf_overlap(model)} px (exact: {exact:g} px)")

    print("\n3. Mixed precision on this CPU")
    print(
        f"  native BF16 instructions (avx512_bf16 / amx_bf16): {'yes' if native_bf16 else 'no: bfloat16 is emulated'}"
    )
    full, _ = best_of(lambda: predict(model, whole), repeats)
    half, result = best_of(lambda: predict(model, whole, policy="mixed_bfloat16"), repeats)
    drift = np.abs(result - predict(model, whole)).max()
    print(
        f"  predict {whole_side}^2: float32 {full * 1e3:.0f} ms, mixed_bfloat16 {half * 1e3:.0f} ms "
        f"({full / half:.2f}x{'' if native_bf16 else '; the 1.5x target applies only to BF16 CPUs'}), "
        f"max |diff| {drift:.3f}"
    )

    if not args.quick:
        shipped_dice_drift()

    print("\n4. Training, 256^2 crops, batch 4, crops/s")
    crop, steps = (64, 3) if args.quick else (256, 8)
    pairs = tf.data.Dataset.from_tensor_slices(
        (
            rng.integers(0, 256, (8, 2 * crop, 2 * crop, 1)).astype("float32"),
            rng.integers(0, 2, (8, 2 * crop, 2 * crop, 1)).astype("int32"),
        )
    )
    batches = kfcn.data.random_crop_pipeline(pairs, crop, batch_size=4, seed=0)
    model.compile(optimizer="adam", loss=kfcn.training.segmentation_loss("ce+j2", 1), jit_compile=True)
    model.fit(batches, epochs=1, steps_per_epoch=2, verbose=0, shuffle=False)
    started = time.perf_counter()
    model.fit(batches, epochs=1, steps_per_epoch=steps, verbose=0, shuffle=False)
    keras_seconds = (time.perf_counter() - started) / steps
    # Where the gap comes from: the same model and step on tensors already in memory (no tf.data).
    x_memory = rng.integers(0, 256, (4 * steps, crop, crop, 1)).astype("float32")
    y_memory = rng.integers(0, 2, (4 * steps, crop, crop, 1)).astype("float32")
    model.fit(x_memory[:8], y_memory[:8], batch_size=4, epochs=1, verbose=0)
    started = time.perf_counter()
    model.fit(x_memory, y_memory, batch_size=4, epochs=1, verbose=0, shuffle=False)
    memory_seconds = (time.perf_counter() - started) / steps
    # The peer in its faster memory layout on this CPU (channels-last or the default).
    layouts = {}
    for layout in (torch.channels_last, torch.contiguous_format):
        network = torch_unet(filters, 4).to(memory_format=layout).train()
        optimizer = torch.optim.Adam(network.parameters())
        x = torch.from_numpy(rng.integers(0, 256, (4, 1, crop, crop)).astype("float32")).contiguous(
            memory_format=layout
        )
        y = torch.from_numpy(rng.integers(0, 2, (4, 1, crop, crop)).astype("float32"))
        layouts[str(layout).replace("torch.", "")] = torch_training_seconds(network, optimizer, x, y, steps)
    torch_seconds = min(layouts.values())
    print("  plain PyTorch s/step by layout: " + ", ".join(f"{k} {v:.2f}" for k, v in layouts.items()))
    print(
        f"  kfcn model.fit (TensorFlow, XLA) on the crop pipeline: {4 / keras_seconds:.2f} crops/s | plain PyTorch "
        f"loop, tensors ready: {4 / torch_seconds:.2f} crops/s | kfcn/peer {torch_seconds / keras_seconds:.2f}x"
    )
    print(
        f"  the same Keras step on tensors in memory (no crop pipeline): {4 / memory_seconds:.2f} crops/s "
        f"({torch_seconds / memory_seconds:.2f}x the peer)"
    )


def shipped_dice_drift():
    """Membrane Dice of the shipped ISBI U-Net on held-out slices 20-24, float32 against mixed_bfloat16."""
    from PIL import Image

    from kfcn.evaluation import segmentation_scores

    shipped = kfcn.saving.load_model(kfcn.samples.shipped_model_path())
    dice = {"float32": [], "mixed_bfloat16": []}
    for index in range(20, 25):
        image = np.asarray(Image.open(kfcn.samples.isbi2012_dir() / "images" / f"slice_{index:02d}.png"))
        label = np.asarray(Image.open(kfcn.samples.isbi2012_dir() / "labels" / f"slice_{index:02d}.png")) > 0
        for policy in dice:
            probability = predict(shipped, image, policy=None if policy == "float32" else policy)
            dice[policy].append(segmentation_scores(probability, label.astype("int32"))["dice"])
    full, half = (float(np.mean(values)) for values in dice.values())
    print(
        f"  shipped ISBI U-Net, slices 20-24, mean Dice: float32 {full:.4f}, mixed_bfloat16 {half:.4f} "
        f"(drift {half - full:+.4f})"
    )


def torch_training_seconds(network, optimizer, x, y, steps):
    """Seconds per step of a plain PyTorch loop: BCE + j2, Adam, data already in memory."""
    import torch

    def torch_step():
        optimizer.zero_grad()
        p = network(x)
        intersection = (p * y).sum((1, 2, 3))
        j2 = 1 - intersection / ((p * p).sum((1, 2, 3)) + (y * y).sum((1, 2, 3)) - intersection + 1e-7)
        loss = torch.nn.functional.binary_cross_entropy(p, y) + j2.mean()
        loss.backward()
        optimizer.step()

    torch_step()
    started = time.perf_counter()
    for _ in range(steps):
        torch_step()
    return (time.perf_counter() - started) / steps


if __name__ == "__main__":
    main()
