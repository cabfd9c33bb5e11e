"""Prediction through LiteRT, TFLite's runtime, and its XNNPACK CPU kernels: `engine="litert"`.

On CPUs XNNPACK runs kfcn's U-Nets 1.25-1.8 times faster than TensorFlow does, and faster
than PyTorch (see benchmarks/README.md), so `predict` and `predict_tiled` can hand each tile to a float32
TFLite conversion of the model (`kfcn.export.tflite`, builtin ops only) instead of to Keras.
One conversion is made per model and tile shape, when that shape is first seen (seconds
for a U-Net), and kept in memory as long as the model lives. The converted graph computes
the same function in float32: outputs agree with Keras to about 1e-5.

Only "same"-padded models with a single image input take this path; valid-padding models
and models with coordinate or other map inputs are refused with a message.
"""

from __future__ import annotations

import os
import tempfile
import weakref
from pathlib import Path

import numpy as np

ENGINES = ("keras", "litert")


def check_engine(engine, geometry, policy):
    """Refuses an engine name, or a model or option that `engine="litert"` cannot take.

    Example:
    >>> from kfcn.inference import model_geometry
    >>> from kfcn.models import unet
    >>> check_engine("litert", model_geometry(unet((None, None, 1), filters=2, depth=1)), None)
    >>> check_engine("onnx", None, None)
    Traceback (most recent call last):
    ...
    ValueError: `engine` must be one of ('keras', 'litert'); got 'onnx'.
    """
    if engine not in ENGINES:
        raise ValueError(f"`engine` must be one of {ENGINES}; got {engine!r}.")
    if engine == "keras":
        return
    if policy not in (None, "float32"):
        raise ValueError(
            f"policy={policy!r} sets Keras' compute precision; engine='litert' always computes in float32. "
            "Use one or the other."
        )
    if geometry.margin:
        raise ValueError(
            "engine='litert' takes 'same'-padded models; this one uses valid padding (it consumes a "
            f"{geometry.margin}-px margin). Use engine='keras'."
        )
    if geometry.frame_input is not None or geometry.extra_inputs:
        raise ValueError(
            "engine='litert' takes models with one image input; this one also takes "
            f"{[name for name in (geometry.frame_input, *geometry.extra_inputs) if name]}. Use engine='keras'."
        )


class LiteRTCall:
    """Calls a TFLite conversion of `model` on (B, h, w, C) float32 tiles; one interpreter per tile shape.

    Example:
    >>> from kfcn.models import unet
    >>> model = unet((None, None, 1), num_classes=1, filters=2, depth=1)
    >>> call = litert_call(model)
    >>> call(np.zeros((2, 8, 8, 1), "float32")).shape
    (2, 8, 8, 1)
    """

    def __init__(self, model, threads=None):
        self._model = weakref.ref(model)
        if threads is None:
            threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        self.threads = threads
        self._runners = {}

    def __call__(self, tiles):
        tiles = np.asarray(tiles, dtype="float32")
        runner, input_name, output_name = self._runner(tiles.shape[1:3])
        outputs = [runner(**{input_name: tile[None]})[output_name][0] for tile in tiles]
        return np.stack(outputs).astype("float32", copy=False)

    def _runner(self, shape):
        shape = tuple(int(side) for side in shape)
        if shape not in self._runners:
            self._runners[shape] = self._convert(shape)
        return self._runners[shape]

    def _convert(self, shape):
        from kfcn.export.tflite import interpreter_class, tflite

        with tempfile.TemporaryDirectory(prefix="kfcn-litert-") as folder:
            path = Path(folder) / "tile.tflite"
            tflite(self._model(), path, input_shape=shape)
            content = path.read_bytes()
        interpreter = interpreter_class()(model_content=content, num_threads=self.threads)
        runner = interpreter.get_signature_runner("serving_default")
        (input_name,), (output_name,) = runner.get_input_details(), runner.get_output_details()
        return runner, input_name, output_name


def litert_call(model):
    """The `LiteRTCall` of `model`, made once per model (its conversions are cached with it)."""
    if model not in _calls:
        _calls[model] = LiteRTCall(model)
    return _calls[model]


_calls = weakref.WeakKeyDictionary()
