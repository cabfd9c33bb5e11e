"""Latency of one 512x512 image through each deployed form of the shipped ISBI U-Net, side by side.

Keras (`kfcn.inference.predict` and a bare compiled call), the SavedModel's serving
signature, and the TFLite files in the LiteRT interpreter (XNNPACK, 2 threads):
float32, float16 and int8. Run `python examples/export_isbi.py` first (it writes the
exported files into saved_models/).

    KERAS_BACKEND=tensorflow python benchmarks/export_latency.py [--repeats 10]
"""

from __future__ import annotations

import argparse
import os
import platform
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from ai_edge_litert.interpreter import Interpreter  # noqa: E402
from timing import timings  # noqa: E402

import kfcn  # noqa: E402
from kfcn.inference import predict  # noqa: E402
from kfcn.saving import load_model  # noqa: E402

SAVED = Path(__file__).resolve().parents[1] / "saved_models"
EXPORTED = ("unet_isbi_serving/1", "unet_isbi_float32.tflite", "unet_isbi_float16.tflite", "unet_isbi_int8.tflite")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    missing = [name for name in EXPORTED if not (SAVED / name).exists()]
    if missing:
        raise SystemExit(
            f"no {', '.join(missing)} in {SAVED}: only the int8 file is committed; run "
            "`python examples/export_isbi.py` first to write the others."
        )
    image = np.asarray(kfcn.data.read_image(kfcn.samples.isbi2012_dir() / "images" / "slice_20.png"), dtype="float32")
    model = load_model(kfcn.samples.shipped_model_path())
    bare = tf.function(lambda x: model(x, training=False), jit_compile=False)
    batch = tf.constant(image[None])
    serve = tf.saved_model.load(str(SAVED / "unet_isbi_serving" / "1")).signatures["serving_default"]
    forms = {
        "Keras, bare compiled call": lambda: bare(batch).numpy(),
        "Keras, kfcn.inference.predict": lambda: predict(model, image),
        "SavedModel serving_default": lambda: serve(pixels_0_255=batch)["probabilities"].numpy(),
    }
    for quantization in ("float32", "float16", "int8"):
        runner = Interpreter(
            model_path=str(SAVED / f"unet_isbi_{quantization}.tflite"), num_threads=2
        ).get_signature_runner("serving_default")
        forms[f"TFLite {quantization} (LiteRT, XNNPACK, 2 threads)"] = lambda r=runner: r(pixels_0_255=image[None])
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; keras {keras.__version__}, "
        f"tensorflow {tf.__version__}; one 512x512 grayscale image, best and median of {args.repeats}"
    )
    print(f"{'form':<46}{'best ms':>10}{'median ms':>11}{'vs bare':>9}")
    reference = None
    for name, function in forms.items():
        seconds, _ = timings(function, args.repeats)
        best, median = 1000 * min(seconds), 1000 * float(np.median(seconds))
        reference = reference or best
        print(f"{name:<46}{best:>10.1f}{median:>11.1f}{reference / best:>8.2f}x")


if __name__ == "__main__":
    main()
