"""Where a training step's time goes, Keras (TensorFlow) beside plain PyTorch (issue 13, target 4).

The benchmark's U-Net (filters 32, depth 4, "same", transposed-convolution upsampling),
256^2 crops, batch 4, BCE + j2, Adam, data in memory. Each part of a step is timed on its
own in both frameworks (best of 3 after a warm-up):

1. forward pass in training mode;
2. forward + backward (the loss's gradients with respect to every weight);
3. the whole step with the Adam update (Keras: `train_on_batch` of the compiled model, with
   and without XLA; PyTorch: `zero_grad`, forward, `backward`, `step`);
4. `model.fit` on kfcn's crop pipeline, 24 steps after a warm-up `fit`, and how much of it
   cProfile finds in Python rather than in TensorFlow's execution.

    KERAS_BACKEND=tensorflow python benchmarks/training_profile.py   # about 6 minutes on 2 cores
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import argparse  # noqa: E402
import cProfile  # noqa: E402
import pstats  # noqa: E402
import time  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import torch  # noqa: E402
from prediction_paths import best_of, cpu_facts, torch_unet  # noqa: E402

import kfcn  # noqa: E402

FILTERS, DEPTH, CROP, BATCH, REPEATS, FIT_STEPS = 32, 4, 256, 4, 3, 24
LAYOUTS = (torch.channels_last, torch.contiguous_format)


def keras_parts(x, y, jit):
    """Seconds of forward, forward + backward and the whole step of the Keras model (with XLA if `jit`)."""
    keras.utils.set_random_seed(0)
    model = kfcn.models.unet((None, None, 1), num_classes=1, filters=FILTERS, depth=DEPTH, upsampling="transpose")
    loss = kfcn.training.segmentation_loss("ce+j2", 1)
    model.compile(optimizer="adam", loss=loss, jit_compile=jit)
    x, y = tf.constant(x), tf.constant(y)

    @tf.function(jit_compile=jit)
    def forward(x):
        return model(x, training=True)

    @tf.function(jit_compile=jit)
    def gradients(x, y):
        with tf.GradientTape() as tape:
            value = loss(y, model(x, training=True))
        return tape.gradient(value, model.trainable_weights)

    return {
        "forward": best_of(lambda: forward(x).numpy(), REPEATS)[0],
        "forward + backward": best_of(lambda: [g.numpy() for g in gradients(x, y)][-1], REPEATS)[0],
        "whole step (Adam)": best_of(lambda: model.train_on_batch(x, y), REPEATS)[0],
    }


def torch_layout_parts(layout, x, y):
    """Seconds of forward, forward + backward and the whole step of a plain PyTorch loop in one memory layout."""
    torch.manual_seed(0)
    network = torch_unet(FILTERS, DEPTH).to(memory_format=layout).train()
    optimizer = torch.optim.Adam(network.parameters())
    inputs = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).contiguous(memory_format=layout)
    targets = torch.from_numpy(y.transpose(0, 3, 1, 2).copy())

    def loss():
        p = network(inputs)
        intersection = (p * targets).sum((1, 2, 3))
        union = (p * p).sum((1, 2, 3)) + (targets * targets).sum((1, 2, 3)) - intersection
        return torch.nn.functional.binary_cross_entropy(p, targets) + (1 - intersection / (union + 1e-7)).mean()

    def forward():
        with torch.no_grad():  # a forward without recording, in training mode, as Keras' forward here
            return network(inputs)

    def backward():
        optimizer.zero_grad()
        loss().backward()

    def step():
        backward()
        optimizer.step()

    return {
        "forward": best_of(forward, REPEATS)[0],
        "forward + backward": best_of(backward, REPEATS)[0],
        "whole step (Adam)": best_of(step, REPEATS)[0],
    }


def torch_parts(x, y):
    """The parts in the faster of PyTorch's two memory layouts on this CPU: (seconds, layout name)."""
    timed = {str(layout).replace("torch.", ""): torch_layout_parts(layout, x, y) for layout in LAYOUTS}
    layout = min(timed, key=lambda name: timed[name]["whole step (Adam)"])
    return timed[layout], layout


def fit_on_crop_pipeline(model, rng):
    """Seconds per step of `fit` on kfcn's crop pipeline, and the share cProfile puts outside TF's execution."""
    pairs = tf.data.Dataset.from_tensor_slices(
        (
            rng.integers(0, 256, (8, 2 * CROP, 2 * CROP, 1)).astype("float32"),
            rng.integers(0, 2, (8, 2 * CROP, 2 * CROP, 1)).astype("int32"),
        )
    )
    batches = kfcn.data.random_crop_pipeline(pairs, CROP, batch_size=BATCH, seed=0)
    model.fit(batches, epochs=1, steps_per_epoch=2, verbose=0, shuffle=False)
    profile = cProfile.Profile()
    started = time.perf_counter()
    profile.enable()
    model.fit(batches, epochs=1, steps_per_epoch=FIT_STEPS, verbose=0, shuffle=False)
    profile.disable()
    seconds = (time.perf_counter() - started) / FIT_STEPS
    stats = pstats.Stats(profile)
    total = max(row[3] for row in stats.stats.values())  # the outermost call's cumulative time
    in_tensorflow = sum(
        row[2]  # own time of TensorFlow's C++ entry points (execution, iterator reads)
        for (filename, _, name), row in stats.stats.items()
        if "pywrap" in name or "pywrap" in filename
    )
    return seconds, in_tensorflow / total


def main():
    global FILTERS, CROP, FIT_STEPS
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes: checks that the script runs")
    if parser.parse_args().quick:
        FILTERS, CROP, FIT_STEPS = 4, 64, 3
    cpu, _ = cpu_facts()
    versions = f"TensorFlow {tf.__version__}, Keras {keras.__version__}, torch {torch.__version__}"
    print(f"{cpu}; {os.cpu_count()} cores; {versions}")
    print(f"U-Net filters {FILTERS}, depth {DEPTH}, {CROP}^2 crops, batch {BATCH}; seconds, best of {REPEATS}\n")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (BATCH, CROP, CROP, 1)).astype("float32")
    y = rng.integers(0, 2, (BATCH, CROP, CROP, 1)).astype("float32")
    torch_seconds, layout = torch_parts(x, y)
    rows = {jit: keras_parts(x, y, jit) for jit in (True, False)}
    print(f"| part | Keras TF, XLA | Keras TF, no XLA | plain PyTorch ({layout}) | PyTorch / Keras XLA |")
    print("|---|---|---|---|---|")
    for part, peer in torch_seconds.items():
        xla, plain = rows[True][part], rows[False][part]
        print(f"| {part} | {xla:.3f} | {plain:.3f} | {peer:.3f} | {peer / xla:.2f}x |")
    backward = {
        name: r["forward + backward"] - r["forward"] for name, r in (("xla", rows[True]), ("torch", torch_seconds))
    }
    print(
        f"| backward alone (difference) | {backward['xla']:.3f} | | {backward['torch']:.3f} | "
        f"{backward['torch'] / backward['xla']:.2f}x |"
    )
    keras.utils.set_random_seed(0)
    model = kfcn.models.unet((None, None, 1), num_classes=1, filters=FILTERS, depth=DEPTH, upsampling="transpose")
    model.compile(optimizer="adam", loss=kfcn.training.segmentation_loss("ce+j2", 1), jit_compile=True)
    seconds, share = fit_on_crop_pipeline(model, rng)
    peer = torch_seconds["whole step (Adam)"]
    print(
        f"\nmodel.fit on the crop pipeline, {FIT_STEPS} steps (XLA): {seconds:.3f} s/step, "
        f"{BATCH / seconds:.2f} crops/s; "
        f"PyTorch step {BATCH / peer:.2f} crops/s; kfcn/peer {peer / seconds:.2f}x; "
        f"cProfile: {100 * share:.0f} % of fit's time inside TensorFlow's C++ calls"
    )


if __name__ == "__main__":
    main()
