"""What checking the weights for NaN at every training step costs, beside the step itself.

`kfcn.training.StopOnNonFiniteLoss` looks at every weight after each step, because on CPUs
whose vector max/min turn NaN into a number (oneDNN's AVX-512 kernels) a diverged model can
log a finite loss. The peer is Keras' own `keras.callbacks.TerminateOnNaN`, which reads the
logged loss only (and so misses that case). For the networks of two recipes (the ISBI U-Net of
filters 32, the CamVid SegNet-Basic) at their crop and batch sizes: seconds of one
`train_on_batch` step (float32, no XLA, best of 3 after a warm-up), of one pass of
`kfcn.finite_weights.non_finite_weights`, and the check's share of the step.

    KERAS_BACKEND=tensorflow python benchmarks/divergence_check.py   # about a minute, 2 cores
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from prediction_paths import cpu_facts  # noqa: E402
from timing import best_of  # noqa: E402

import kfcn  # noqa: E402
from kfcn.finite_weights import non_finite_weights  # noqa: E402

NETWORKS = {
    "U-Net (isbi2012: filters 32, depth 4), 4 crops of 256²": (
        lambda: kfcn.models.unet((None, None, 1), num_classes=1, filters=32, depth=4, batch_norm=True),
        (4, 256, 256, 1),
        1,
    ),
    "SegNet-Basic (camvid-segnet), 6 crops of 224²": (
        lambda: kfcn.models.segnet(
            (None, None, 3),
            num_classes=11,
            filters=64,
            depth=4,
            convs_per_level=[1, 1, 1, 1],
            kernel_size=7,
            filter_growth=1,
        ),
        (6, 224, 224, 3),
        11,
    ),
}


def measure(build, shape, classes, rng):
    """(seconds of a float32 training step, seconds of one weight check, parameters) of the built network."""
    keras.utils.set_random_seed(0)
    model = build()
    loss = "binary_crossentropy" if classes == 1 else "sparse_categorical_crossentropy"
    model.compile(optimizer="adam", loss=loss, jit_compile=False)
    x = rng.integers(0, 256, shape).astype("float32")
    y = rng.integers(0, max(classes, 2), (*shape[:3], 1)).astype("float32")
    step, _ = best_of(lambda: model.train_on_batch(x, y))
    check, found = best_of(lambda: non_finite_weights(model))
    assert found == [], found
    return step, check, model.count_params()


def main():
    rng = np.random.default_rng(0)
    model_name, flags = cpu_facts()
    native = sorted(flags & {"avx512f", "avx512_bf16", "amx_bf16"}) or ["AVX2 or older"]
    print(f"{model_name}, {os.cpu_count()} cores ({', '.join(native)})")
    terminate = keras.callbacks.TerminateOnNaN()
    peer, _ = best_of(lambda: terminate.on_batch_end(0, {"loss": np.float32(0.5)}), repeats=100)
    print("| network | parameters | training step (s) | kfcn check (s) | share of the step | TerminateOnNaN (s) |")
    print("|---|---|---|---|---|---|")
    for name, (build, shape, classes) in NETWORKS.items():
        step, check, parameters = measure(build, shape, classes, rng)
        print(f"| {name} | {parameters:,} | {step:.3f} | {check:.4f} | {100 * check / step:.2f} % | {peer:.1e} |")


if __name__ == "__main__":
    main()
