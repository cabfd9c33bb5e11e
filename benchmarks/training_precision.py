"""Training step speed in float32 and mixed bfloat16: Keras (TensorFlow, XLA) beside plain PyTorch.

On a CPU with native BF16 (`avx512_bf16` or `amx_bf16` in /proc/cpuinfo) mixed precision can
pay for training too (issue 20 measured 1.89x for prediction). The benchmark's U-Net
(filters 32, depth 4, "same", transposed-convolution upsampling), 256^2 crops, batch 4,
BCE + j2, Adam, data in memory; seconds per `train_on_batch` step, best of 3 after a warm-up.
Keras with and without XLA (`jit_compile`; without it TensorFlow runs oneDNN kernels). Peer: the
same network in PyTorch, float32 and `torch.autocast("cpu", torch.bfloat16)`.

    KERAS_BACKEND=tensorflow python benchmarks/training_precision.py           # about 5 minutes, 2 cores
    KERAS_BACKEND=tensorflow python benchmarks/training_precision.py --quick   # checks that it runs
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import argparse  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import torch  # noqa: E402
from prediction_paths import cpu_facts, torch_unet  # noqa: E402
from timing import best_of  # noqa: E402

import kfcn  # noqa: E402

REPEATS = 3


def keras_step(x, y, policy, filters, depth, jit_compile=True):
    """Seconds of one training step (XLA-compiled or TensorFlow's graph with oneDNN) under the dtype policy,
    and the step's loss."""
    keras.utils.set_random_seed(0)
    model = kfcn.models.unet((None, None, 1), num_classes=1, filters=filters, depth=depth, upsampling="transpose")
    model = kfcn.models.with_policy(model, policy) if policy != "float32" else model
    model.compile(optimizer="adam", loss=kfcn.training.segmentation_loss("ce+j2", 1), jit_compile=jit_compile)
    x, y = tf.constant(x), tf.constant(y)
    seconds, loss = best_of(lambda: model.train_on_batch(x, y), REPEATS)
    return seconds, float(loss)


def torch_step(x, y, bfloat16, filters, depth):
    torch.manual_seed(0)
    network = torch_unet(filters, depth).to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.Adam(network.parameters())
    inputs = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).contiguous(memory_format=torch.channels_last) / 255
    targets = torch.from_numpy(y.transpose(0, 3, 1, 2).copy())

    def step():
        optimizer.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bfloat16):
            p = network(inputs).float()
        intersection = (p * targets).sum((1, 2, 3))
        union = (p * p).sum((1, 2, 3)) + (targets * targets).sum((1, 2, 3)) - intersection
        loss = torch.nn.functional.binary_cross_entropy(p, targets) + (1 - intersection / (union + 1e-7)).mean()
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    return best_of(step, REPEATS)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes: checks that the script runs")
    args = parser.parse_args()
    filters, depth, crop, batch = (4, 2, 64, 2) if args.quick else (32, 4, 256, 4)
    model_name, flags = cpu_facts()
    native = sorted(flags & {"avx512_bf16", "amx_bf16"})
    print(f"{model_name}; {os.cpu_count()} cores; native BF16: {', '.join(native) or 'no (emulated)'}")
    threads = torch.get_num_threads()
    print(f"Keras {keras.__version__}, TensorFlow {tf.__version__}, torch {torch.__version__} ({threads} threads)")
    print(f"U-Net filters {filters}, depth {depth}; {crop}^2 crops, batch {batch}; best of {REPEATS} after a warm-up\n")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (batch, crop, crop, 1)).astype("float32")
    y = rng.integers(0, 2, (batch, crop, crop, 1)).astype("float32")
    rows = []
    for precision in ("float32", "mixed_bfloat16"):
        xla, _ = keras_step(x, y, precision, filters, depth, jit_compile=True)
        graph, _ = keras_step(x, y, precision, filters, depth, jit_compile=False)
        torch_seconds, _ = torch_step(x, y, precision != "float32", filters, depth)
        rows.append((precision, xla, graph, torch_seconds))
    print(f"{'precision':<16} {'Keras+XLA s/step':>17} {'Keras, no XLA':>14} {'PyTorch s/step':>15}")
    for precision, xla, graph, torch_seconds in rows:
        print(f"{precision:<16} {xla:>17.3f} {graph:>14.3f} {torch_seconds:>15.3f}")
    (_, xla32, graph32, torch32), (_, xla16, graph16, torch16) = rows
    print(
        f"\nbfloat16 speed-up over float32: Keras+XLA {xla32 / xla16:.2f}x, Keras without XLA "
        f"{graph32 / graph16:.2f}x, PyTorch {torch32 / torch16:.2f}x; fastest kfcn step "
        f"{min(xla32, xla16, graph32, graph16):.3f} s, PyTorch's {min(torch32, torch16):.3f} s"
    )


if __name__ == "__main__":
    main()
