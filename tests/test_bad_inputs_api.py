"""The bad-input catalogue of the public API (issue 9): one table row per input a user may get wrong.

Each row is a short id, a callable that feeds the input, and what must happen: the exception type
and a fragment of its message (which names the problem and the fix), or a check of the correct
result (a NaN loss where values are only known inside a compiled graph, the right value for an
input that must be accepted). A callable that takes an argument gets the test's `tmp_path`.

`BACKEND_CASES` (layers, losses, metrics, models, inference, analysis, saving, and the argument
checks of the exporters, which a JAX or PyTorch model reaches before its TensorFlow child) run on
every backend; `TENSORFLOW_CASES` (tf.data pipelines, file loading, real exports) on TensorFlow only.
The command line has its own table in `test_bad_inputs_cli.py`.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass

import keras
import numpy as np
import pytest

from kfcn import analysis, inference, layers, losses, metrics, models
from kfcn.atomic import atomic_path, check_writable
from kfcn.saving import load_model, save_model
from tests.conftest import BACKEND


@dataclass(frozen=True)
class Case:
    id: str
    run: Callable
    error: type | None = None
    match: str | None = None
    check: Callable | None = None


def refuses(case_id, run, error, match):
    """A row whose input must raise `error` with a message matching the regex `match`."""
    return Case(case_id, run, error=error, match=match)


def gives(case_id, run, check):
    """A row whose input must give a result for which `check(result)` is true."""
    return Case(case_id, run, check=check)


def run_case(case, tmp_path):
    run = (lambda: case.run(tmp_path)) if inspect.signature(case.run).parameters else case.run
    if case.error is not None:
        with pytest.raises(case.error, match=case.match):
            run()
    else:
        result = run()
        assert case.check(result), f"{case.id}: wrong result {result!r}"


# --- small inputs and models -------------------------------------------------------------------------

RNG = np.random.default_rng(0)
MASK = (RNG.random((2, 8, 8, 1)) > 0.5).astype("float32")
PROBABILITIES = RNG.uniform(0.2, 0.8, (2, 8, 8, 1)).astype("float32")
IMAGE_U8 = RNG.integers(0, 256, (16, 16), dtype=np.uint8)


def with_value(array, value, index=(0, 0, 0, 0)):
    array = np.array(array, copy=True)
    array[index] = value
    return array


def tiny_unet(input_shape=(None, None, 1), **kwargs):
    kwargs = {"num_classes": 1, "filters": 2, "depth": 2, **kwargs}
    return models.unet(input_shape, **kwargs)


def sequential(pooling=False):
    """Conv-(pool-upsample)-conv, "same" padding, no input scaling: a model whose result is easy to compute."""
    middle = [keras.layers.MaxPooling2D(2), keras.layers.UpSampling2D(2)] if pooling else []
    return keras.Sequential(
        [
            keras.Input((None, None, 1)),
            keras.layers.Conv2D(2, 3, padding="same"),
            *middle,
            keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid"),
        ]
    )


class Subclassed(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv = keras.layers.Conv2D(1, 3, padding="same")

    def call(self, inputs):
        return self.conv(inputs)


def subclassed():
    model = Subclassed()
    model(np.zeros((1, 8, 8, 1), "float32"))
    return model


def vector_model():
    inputs = keras.Input((4,))
    return keras.Model(inputs, keras.layers.Dense(2)(inputs))


def classifier(head="flatten", input_shape=(16, 16, 1)):
    """A convolution, then a classifier head named `head`: "flatten" (Flatten + Dense), "gap" (global average
    pooling + Dense) or "gap_keepdims" (a 1x1 map per image)."""
    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(2, 3, padding="same")(inputs)
    if head == "gap_keepdims":
        return keras.Model(inputs, keras.layers.GlobalAveragePooling2D(keepdims=True, name=head)(x))
    pooled = (
        keras.layers.Flatten(name=head)(x) if head == "flatten" else keras.layers.GlobalAveragePooling2D(name=head)(x)
    )
    return keras.Model(inputs, keras.layers.Dense(3, name="dense")(pooled))


class SubclassedClassifier(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv = keras.layers.Conv2D(2, 3, padding="same")
        self.pool = keras.layers.GlobalAveragePooling2D()

    def call(self, inputs):
        return self.pool(self.conv(inputs))


def squeeze_excitation():
    """A map reweighted by a global-pooling branch (squeeze-and-excitation): still a map of the image."""
    inputs = keras.Input((None, None, 1))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    weights = keras.layers.Dense(4, activation="sigmoid")(keras.layers.GlobalAveragePooling2D(keepdims=True)(x))
    return keras.Model(inputs, keras.layers.Conv2D(1, 1)(keras.layers.Multiply()([x, weights])))


def fixed_size_model(size=(64, 64)):
    """One "same" convolution, built for `size` only: `keras.Input((*size, 1))`."""
    return keras.Sequential([keras.Input((*size, 1)), keras.layers.Conv2D(1, 3, padding="same", name="conv")])


def any_size_copy(model):
    """The fix the fixed-size messages give: the same layers and weights on a (None, None, C) input."""
    copy = keras.models.clone_model(model, input_tensors=keras.Input((None, None, model.inputs[0].shape[-1])))
    copy.set_weights(model.get_weights())
    return copy


def tiled_fixed_size_model():
    """A 100x100 image through a 64x64 model, tile by tile: equal to the any-size copy's whole-image prediction."""
    model = fixed_size_model()
    image = np.random.default_rng(1).random((100, 100, 1)).astype("float32")
    return inference.predict_tiled(model, image, 64, progress=False), inference.predict(any_size_copy(model), image)


IMAGE_100 = np.random.default_rng(2).integers(0, 256, (100, 100), dtype=np.uint8)


def is_nan(value):
    return bool(np.isnan(float(value)))


def channels_first(build):
    """Runs `build` under a global channels_first setting, restoring the setting afterwards."""

    def run():
        previous = keras.config.image_data_format()
        keras.config.set_image_data_format("channels_first")
        try:
            return build()
        finally:
            keras.config.set_image_data_format(previous)

    return run


def in_compiled_graph(fit_or_evaluate):
    """Runs a `fit`/`evaluate` call; on PyTorch (eager: the values are concrete) a refusal is the answer."""
    try:
        return fit_or_evaluate()
    except ValueError as error:
        if BACKEND != "torch":
            raise
        return str(error)


def nan_or_refusal(fragment):
    """NaN from a compiled graph (TensorFlow, JAX), or the eager refusal naming `fragment` (PyTorch)."""
    return lambda result: (fragment in result) if isinstance(result, str) else is_nan(result)


def sigmoid_model():
    return keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(1, 1, activation="sigmoid")])


def evaluate_loss(x, y, loss=None, metric=None):
    model = sigmoid_model()
    model.compile("sgd", loss or "mse", metrics=[metric] if metric else None)
    result = model.evaluate(x, y, verbose=0, return_dict=True)
    return result[metric.name] if metric else result["loss"]


def fit_with_terminate_on_nan():
    model = sigmoid_model()
    model.compile("sgd", losses.JaccardJ2Loss())
    x = with_value(np.ones((4, 8, 8, 1), "float32"), np.nan)
    history = model.fit(
        x, np.ones((4, 8, 8, 1)), batch_size=2, epochs=3, verbose=0, callbacks=[keras.callbacks.TerminateOnNaN()]
    )
    return history.history["loss"]


def numpy_bce_plus_j2(y, p):
    bce = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    i = np.sum(y * p, axis=(1, 2, 3))
    j2 = 1 - i / (np.sum(y**2, axis=(1, 2, 3)) + np.sum(p**2, axis=(1, 2, 3)) - i + 1e-7)
    return bce + np.mean(j2)


def metric_result(metric, y_true, y_pred):
    metric.update_state(y_true, y_pred)
    return float(metric.result())


def unpool(pooled_from, reference_size):
    """Pools a `pooled_from`-sized map by 2 and unpools it to a `reference_size` reference."""
    x = np.random.default_rng(1).normal(size=(1, pooled_from, pooled_from, 1)).astype("float32")
    pooled, indices = layers.MaxPoolingWithArgmax2D(2)(x)
    reference = np.zeros((1, reference_size, reference_size, 1), "float32")
    return keras.ops.convert_to_numpy(layers.MaxUnpooling2D(2)([pooled, indices, reference]))


def numpy_unpool_of_pool(size):
    """Each 2x2 window's maximum kept in place, zeros elsewhere (the odd last row and column too)."""
    x = np.random.default_rng(1).normal(size=(1, size, size, 1)).astype("float32")
    pooled, indices = layers.MaxPoolingWithArgmax2D(2)(x)
    unpooled = keras.ops.convert_to_numpy(layers.MaxUnpooling2D(2)([pooled, indices, x]))
    expected = np.zeros_like(x)
    for top in range(0, size - 1, 2):
        for left in range(0, size - 1, 2):
            window = x[0, top : top + 2, left : left + 2, 0]
            row, col = np.unravel_index(np.argmax(window), window.shape)
            expected[0, top + row, left + col, 0] = window[row, col]
    return unpooled, expected


def predict_sequential_odd_size():
    """`inference.predict` on a Sequential model and a 13x13 image: mirror to 14, predict, crop."""
    model = sequential(pooling=True)
    image = np.random.default_rng(1).random((13, 13, 1)).astype("float32")
    padded = np.pad(image, ((0, 1), (0, 1), (0, 0)), mode="reflect")
    expected = keras.ops.convert_to_numpy(model(padded[None]))[0, :13, :13]
    return inference.predict(model, image), expected


def predict_uint8_equals_model_call():
    model = tiny_unet()
    image = np.random.default_rng(1).integers(0, 256, (16, 20, 1), dtype=np.uint8)
    expected = keras.ops.convert_to_numpy(model(image[None].astype("float32")))[0]
    return inference.predict(model, image), expected


def close(pair):
    actual, expected = pair
    return actual.shape == expected.shape and np.allclose(actual, expected, atol=1e-5)


def lambda_keras_file(tmp_path):
    model = keras.Sequential([keras.Input((None, None, 1)), keras.layers.Lambda(lambda x: 2.0 * x)])
    path = tmp_path / "lambda.keras"
    model.save(path)
    return path


def named_lambda_keras_file(tmp_path):
    model = keras.Sequential([keras.Input((None, None, 1)), keras.layers.Lambda(lambda x: 2.0 * x, name="double")])
    path = tmp_path / "lambda.keras"
    model.save(path)
    return path


def edited_keras_file(tmp_path, edit_config=None, member_sizes=None):
    """A small `.keras` file whose config.json went through `edit_config(config)`, and whose zip directory
    declares `member_sizes` ({name: bytes}) instead of the true sizes (a crafted file)."""
    import json
    import struct
    import zipfile

    source = tmp_path / "source.keras"
    save_model(sequential(), source)
    path = tmp_path / "edited.keras"
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(path, "w") as edited:
        for item in original.infolist():
            data = original.read(item.filename)
            if item.filename == "config.json" and edit_config is not None:
                config = json.loads(data)
                edit_config(config)
                data = json.dumps(config).encode()
            edited.writestr(item, data)
    source.unlink()
    data = path.read_bytes()
    for name, size in (member_sizes or {}).items():  # the central directory entry's uncompressed size
        end_record = data.rindex(b"PK\x05\x06")
        entry = struct.unpack("<I", data[end_record + 16 : end_record + 20])[0]  # where the directory starts
        while data[entry + 46 : entry + 46 + struct.unpack("<H", data[entry + 28 : entry + 30])[0]] != name.encode():
            entry = data.index(b"PK\x01\x02", entry + 4)
        data = data[: entry + 24] + struct.pack("<I", size) + data[entry + 28 :]
    path.write_bytes(data)
    return path


def zip_without_config(tmp_path):
    import zipfile

    path = tmp_path / "m.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("metadata.json", "{}")
    return path


def activation_of_first_conv(value):
    def edit(config):
        layer = next(layer for layer in config["config"]["layers"] if layer["class_name"] == "Conv2D")
        layer["config"]["activation"] = value

    return edit


def predict_into_read_only_memmap(tmp_path):
    """`predict_tiled(out=np.memmap(..., mode="r"))`: refused before a tile is predicted, the file as it was."""
    path = tmp_path / "out.f32"
    np.memmap(path, "float32", mode="w+", shape=(16, 16, 1))[:] = 7.0
    before = path.read_bytes()
    try:
        out = np.memmap(path, "float32", mode="r", shape=(16, 16, 1))
        return inference.predict_tiled(tiny_unet(), IMAGE_U8, 16, out=out, progress=False)
    finally:
        assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["out.f32"]


def inspect_model(tmp_path, model):
    import argparse

    from kfcn.cli.inspect import run

    path = tmp_path / "model.keras"
    save_model(model, path)
    return run(argparse.Namespace(model=str(path), unsafe=False, erf=None))


def truncated_keras_file(tmp_path):
    path = tmp_path / "model.keras"
    save_model(tiny_unet(), path)
    content = path.read_bytes()
    path.write_bytes(content[: len(content) // 2])
    return path


def garbage_file(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"this is not what the name says")
    return path


def existing_version(tmp_path):
    from kfcn.export import saved_model

    (tmp_path / "serving" / "1").mkdir(parents=True)
    return saved_model(tiny_unet(), tmp_path / "serving", version=1)


def tflite_export(model, tmp_path, **kwargs):
    from kfcn.export import tflite

    return tflite(model, tmp_path / "model.tflite", **kwargs)


def existing_tflite(tmp_path):
    garbage_file(tmp_path, "model.tflite")
    return tflite_export(tiny_unet(), tmp_path, overwrite=False)


def saved_model_export(model, tmp_path, **kwargs):
    from kfcn.export import saved_model

    return saved_model(model, tmp_path / "serving", **kwargs)


BACKEND_CASES = [
    # Losses: NaN/Inf never look perfect; raw masks and unknown labels are refused with the fix.
    gives("loss-nan-prediction", lambda: losses.JaccardLoss()(MASK, with_value(PROBABILITIES, np.nan)), is_nan),
    gives("loss-inf-prediction", lambda: losses.DiceLoss()(MASK, with_value(PROBABILITIES, np.inf)), is_nan),
    gives("loss-nan-target", lambda: losses.JaccardJ2Loss()(with_value(MASK, np.nan), PROBABILITIES), is_nan),
    gives(
        "loss-nan-prediction-empty-target",
        lambda: losses.JaccardLoss()(np.zeros_like(MASK), np.full_like(PROBABILITIES, np.nan)),
        is_nan,
    ),
    gives(
        "loss-nan-images-in-compiled-graph",
        lambda: evaluate_loss(with_value(np.ones((2, 8, 8, 1), "float32"), np.nan), MASK, losses.DiceLoss()),
        is_nan,
    ),
    gives(
        "terminate-on-nan-fires", fit_with_terminate_on_nan, lambda history: len(history) == 1 and is_nan(history[0])
    ),
    refuses("loss-raw-255-mask", lambda: losses.JaccardLoss()(255 * MASK, PROBABILITIES), ValueError, r"labels // 255"),
    gives(
        "loss-raw-255-mask-in-compiled-graph",
        lambda: in_compiled_graph(lambda: evaluate_loss(np.ones((2, 8, 8, 1)), 255 * MASK, losses.JaccardLoss())),
        nan_or_refusal("labels // 255"),
    ),
    refuses(
        "loss-unknown-class-index",
        lambda: losses.DiceLoss()(np.full((1, 4, 4), 5), np.full((1, 4, 4, 3), 1 / 3, "float32")),
        ValueError,
        r"whole numbers in \[0, 3\)",
    ),
    refuses(
        "loss-logits-without-from-logits",
        lambda: losses.DiceLoss()(MASK, 10 * PROBABILITIES - 5),
        ValueError,
        r"from_logits=True",
    ),
    refuses(
        "loss-mask-and-prediction-sizes-differ",
        lambda: losses.JaccardLoss()(MASK[:, :4, :4], PROBABILITIES),
        ValueError,
        r"does not match prediction shape",
    ),
    refuses(
        "loss-sample-weight-wrong-batch",
        lambda: losses.DiceLoss()(MASK, PROBABILITIES, sample_weight=np.ones(3)),
        ValueError,
        r"sample_weight",
    ),
    refuses("loss-ignore-class-float", lambda: losses.JaccardLoss(ignore_class=1.5), ValueError, r"ignore_class"),
    gives(
        "loss-empty-target-empty-prediction-is-perfect",
        lambda: losses.JaccardLoss()(np.zeros_like(MASK), np.zeros_like(PROBABILITIES)),
        lambda loss: float(loss) == 0.0,
    ),
    gives(
        "compound-loss-keras-name",
        lambda: (
            float(losses.CompoundLoss(["binary_crossentropy", losses.JaccardJ2Loss()])(MASK, PROBABILITIES)),
            numpy_bce_plus_j2(MASK, PROBABILITIES),
        ),
        lambda pair: math.isclose(*pair, rel_tol=1e-5),
    ),
    refuses(
        "compound-loss-unknown-name", lambda: losses.CompoundLoss(["no_such_loss"]), ValueError, r"Keras loss name"
    ),
    refuses(
        "compound-loss-negative-weight",
        lambda: losses.CompoundLoss(["mse", "mae"], [1.0, -1.0]),
        ValueError,
        r"finite and >= 0",
    ),
    refuses(
        "compound-loss-weight-count",
        lambda: losses.CompoundLoss(["mse", "mae"], [1.0]),
        ValueError,
        r"one weight per loss",
    ),
    refuses(
        "compound-loss-not-a-list", lambda: losses.CompoundLoss(losses.DiceLoss()), TypeError, r"wrap a single loss"
    ),
    # Metrics.
    gives(
        "dice-empty-target-empty-prediction",
        lambda: metric_result(metrics.DiceScore(2, class_ids=[1]), np.zeros((1, 4, 4)), np.zeros((1, 4, 4, 1))),
        lambda score: score == 1.0,
    ),
    gives(
        "jaccard-empty-target-empty-prediction",
        lambda: metric_result(metrics.JaccardScore(2, class_ids=[1]), np.zeros((1, 4, 4)), np.zeros((1, 4, 4, 1))),
        lambda score: score == 1.0,
    ),
    refuses("dice-class-id-out-of-range", lambda: metrics.DiceScore(2, class_ids=[2]), ValueError, r"range\(2\)"),
    refuses("jaccard-negative-class-id", lambda: metrics.JaccardScore(3, class_ids=[-1]), ValueError, r"range\(3\)"),
    refuses("metric-num-classes-1", lambda: metrics.DiceScore(1), ValueError, r"num_classes=2"),
    refuses("metric-threshold-above-1", lambda: metrics.DiceScore(2, threshold=1.5), ValueError, r"threshold"),
    refuses(
        "metric-class-scored-and-ignored",
        lambda: metrics.JaccardScore(3, class_ids=[1, 2], ignore_class=2),
        ValueError,
        r"both scored",
    ),
    refuses(
        "pixel-error-raw-255-mask",
        lambda: metric_result(metrics.PixelError(2), 255 * MASK[..., 0], PROBABILITIES),
        ValueError,
        r"labels // 255",
    ),
    gives(
        "dice-raw-255-mask-in-compiled-graph",
        lambda: in_compiled_graph(
            lambda: evaluate_loss(np.ones((2, 8, 8, 1)), 255 * MASK, metric=metrics.DiceScore(2, class_ids=[1]))
        ),
        nan_or_refusal("labels // 255"),
    ),
    gives(
        "dice-nan-prediction",
        lambda: metric_result(metrics.DiceScore(2), MASK[..., 0], with_value(PROBABILITIES, np.nan)),
        is_nan,
    ),
    refuses(
        "metric-channels-disagree-with-num-classes",
        lambda: metric_result(metrics.DiceScore(3), np.zeros((1, 4, 4)), np.full((1, 4, 4, 2), 0.5)),
        ValueError,
        r"num_classes=3",
    ),
    gives(
        "pixel-error-inf-prediction",
        lambda: metric_result(metrics.PixelError(2), MASK[..., 0], with_value(PROBABILITIES, np.inf)),
        is_nan,
    ),
    refuses(
        "metric-target-and-prediction-sizes-differ",
        lambda: metric_result(metrics.DiceScore(2), np.zeros((1, 4, 4)), np.zeros((1, 8, 8, 1))),
        ValueError,
        r"shape",
    ),
    refuses(
        "metric-sample-weight-wrong-batch",
        lambda: metrics.DiceScore(2).update_state(
            np.zeros((1, 4, 4)), np.zeros((1, 4, 4, 1)), sample_weight=np.ones(3)
        ),
        ValueError,
        r"sample_weight",
    ),
    gives(
        "pixel-error-skips-ignore-class",
        # Pixels: truth 1 1 0 11, prediction 1 0 0 1: one wrong of three counted.
        lambda: metric_result(
            metrics.PixelError(2, ignore_class=11),
            np.array([[[1, 1, 0, 11]]]),
            np.array([[[[0.9], [0.1], [0.2], [0.8]]]]),
        ),
        lambda error: math.isclose(error, 1 / 3, rel_tol=1e-6),
    ),
    # Layers.
    refuses("unpool-reference-too-large", lambda: unpool(4, 9), ValueError, r"reference"),
    refuses("unpool-reference-too-small", lambda: unpool(8, 2), ValueError, r"reference"),
    gives("unpool-odd-size-restored", lambda: numpy_unpool_of_pool(5), close),
    refuses(
        "unpool-float-indices",
        lambda: layers.MaxUnpooling2D(2)([keras.ops.ones((1, 2, 2, 1)), keras.ops.ones((1, 2, 2, 1))]),
        TypeError,
        r"integer dtype",
    ),
    refuses(
        "unpool-indices-shape-mismatch",
        lambda: layers.MaxUnpooling2D(2)([keras.ops.ones((1, 2, 2, 1)), keras.ops.ones((1, 3, 3, 1), "int32")]),
        ValueError,
        r"do not match the pooled input",
    ),
    refuses(
        "unpool-single-input",
        lambda: layers.MaxUnpooling2D(2)([keras.ops.ones((1, 2, 2, 1))]),
        ValueError,
        r"\[pooled, indices\]",
    ),
    refuses(
        "argmax-pool-rank-3-input",
        lambda: layers.MaxPoolingWithArgmax2D(2)(keras.ops.ones((4, 4, 1))),
        ValueError,
        r"x\[None\]",
    ),
    refuses("pool-size-zero", lambda: layers.MaxPoolingWithArgmax2D(0), ValueError, r"positive int"),
    refuses(
        "crop-to-larger-reference",
        lambda: layers.CropToMatch()([keras.ops.ones((1, 4, 4, 1)), keras.ops.ones((1, 6, 6, 1))]),
        ValueError,
        r"larger reference",
    ),
    # Models.
    refuses(
        "unet-predict-30px-not-multiple-of-4",
        lambda: tiny_unet().predict(np.zeros((1, 30, 30, 1)), verbose=0),
        ValueError,
        r"not a multiple of 4",
    ),
    refuses("unet-static-30px", lambda: tiny_unet((30, 30, 1)), ValueError, r"height 30 is not a multiple of 4"),
    # 102 - 4 = 98 -> 49 - 4 = 45: the second pooling would see an odd map (100 fits: 96, 48, 44, 22, 18).
    refuses("unet-valid-static-size", lambda: tiny_unet((102, 102, 1), padding="valid"), ValueError, r"102"),
    refuses(
        "unet-valid-predict-size",
        lambda: tiny_unet(padding="valid").predict(np.zeros((1, 102, 102, 1)), verbose=0),
        ValueError,
        r"input height 102",
    ),
    refuses(
        "unet-predict-wrong-channel-count",
        lambda: tiny_unet().predict(np.zeros((1, 16, 16, 3)), verbose=0),
        ValueError,
        r"axis -1|channel",
    ),
    refuses("unet-negative-depth", lambda: tiny_unet(depth=-1), ValueError, r"`depth` must be an int >= 1"),
    refuses("unet-depth-zero", lambda: tiny_unet(depth=0), ValueError, r"`depth` must be an int >= 1"),
    refuses("unet-float-depth", lambda: tiny_unet(depth=2.0), ValueError, r"`depth` must be an int"),
    refuses("segnet-negative-depth", lambda: models.segnet(filters=2, depth=-2), ValueError, r"`depth`"),
    refuses("plain-cnn-no-layers", lambda: models.plain_cnn(num_layers=0, filters=2), ValueError, r"`num_layers`"),
    refuses("unet-2d-input-shape", lambda: tiny_unet((64, 64)), ValueError, r"\(height, width, channels\)"),
    refuses("unet-zero-channels", lambda: tiny_unet((None, None, 0)), ValueError, r"channel count"),
    refuses("unet-input-range-reversed", lambda: tiny_unet(input_range=(255, 0)), ValueError, r"low < high"),
    refuses("unet-input-range-string", lambda: tiny_unet(input_range="8bit"), ValueError, r"\(0, 65535\)"),
    refuses("unet-unknown-padding", lambda: tiny_unet(padding="full"), ValueError, r"`padding` must be one of"),
    refuses("unet-filters-list-length", lambda: tiny_unet(filters=[2, 4]), ValueError, r"depth \+ 1 = 3"),
    refuses("unet-zero-classes", lambda: tiny_unet(num_classes=0), ValueError, r"num_classes"),
    refuses("unet-channels-first", channels_first(lambda: tiny_unet()), ValueError, r"set_image_data_format"),
    refuses(
        "segnet-channels-first",
        channels_first(lambda: models.segnet(filters=2, depth=2)),
        ValueError,
        r"set_image_data_format",
    ),
    refuses("fcn-channels-first", channels_first(lambda: models.fcn(filters=2)), ValueError, r"set_image_data_format"),
    refuses(
        "plain-cnn-channels-first",
        channels_first(lambda: models.plain_cnn(num_layers=2, filters=2)),
        ValueError,
        r"set_image_data_format",
    ),
    gives("sequential-required-multiple", lambda: models.required_multiple(sequential(pooling=True)), lambda m: m == 2),
    refuses("subclassed-required-multiple", lambda: models.required_multiple(subclassed()), ValueError, r"subclassed"),
    # Inference.
    refuses(
        "predict-wrong-channel-count",
        lambda: inference.predict(tiny_unet(), np.zeros((16, 16, 3), np.uint8)),
        ValueError,
        r"expects 1 channel",
    ),
    refuses(
        "predict-float-0-1-image-to-0-255-model",
        lambda: inference.predict(tiny_unet(), np.random.default_rng(1).random((16, 16)).astype("float32")),
        ValueError,
        r"raw pixel values",
    ),
    refuses(
        "predict-uint16-image-to-8-bit-model",
        lambda: inference.predict(tiny_unet(), (IMAGE_U8.astype(np.uint16) * 257)),
        ValueError,
        r"outside the raw pixel range",
    ),
    refuses(
        "predict-nan-image",
        lambda: inference.predict(tiny_unet(), with_value(IMAGE_U8.astype("float32"), np.nan, (3, 3))),
        ValueError,
        r"NaN or infinite",
    ),
    refuses(
        "predict-tiled-inf-image",
        lambda: inference.predict_tiled(
            tiny_unet(), with_value(IMAGE_U8.astype("float32"), np.inf, (3, 3)), 16, progress=False
        ),
        ValueError,
        r"NaN or infinite",
    ),
    refuses(
        "predict-empty-image",
        lambda: inference.predict(tiny_unet(), np.zeros((0, 16), np.uint8)),
        ValueError,
        r"is empty",
    ),
    refuses(
        "predict-batch-axis",
        lambda: inference.predict(tiny_unet(), np.zeros((1, 16, 16, 1), np.uint8)),
        ValueError,
        r"no batch axis",
    ),
    refuses("predict-bool-image", lambda: inference.predict(tiny_unet(), IMAGE_U8 > 128), ValueError, r"real numbers"),
    refuses(
        "predict-tiled-negative-overlap",
        lambda: inference.predict_tiled(tiny_unet(), IMAGE_U8, 16, overlap=-4, progress=False),
        ValueError,
        r"`overlap`.*non-negative int",
    ),
    refuses(
        "predict-tiled-overlap-as-large-as-tile",
        lambda: inference.predict_tiled(tiny_unet(), IMAGE_U8, 16, overlap=16, progress=False),
        ValueError,
        r"smaller than a tile's output",
    ),
    refuses(
        "predict-tiled-batch-size-0",
        lambda: inference.predict_tiled(tiny_unet(), IMAGE_U8, 16, batch_size=0, progress=False),
        ValueError,
        r"`batch_size`",
    ),
    refuses(
        "predict-tiled-tile-not-multiple-of-stride",
        lambda: inference.predict_tiled(tiny_unet(), IMAGE_U8, 30, progress=False),
        ValueError,
        r"tile_size=32",
    ),
    refuses(
        "predict-tiled-tile-size-0",
        lambda: inference.predict_tiled(tiny_unet(), IMAGE_U8, 0, progress=False),
        ValueError,
        r"`tile_size`.*positive int",
    ),
    refuses(
        "predict-tiled-unknown-blend",
        lambda: inference.predict_tiled(tiny_unet(), IMAGE_U8, 16, blend="cubic", progress=False),
        ValueError,
        r"`blend` must be one of",
    ),
    refuses(
        "predict-tiled-unknown-tta",
        lambda: inference.predict_tiled(tiny_unet(), IMAGE_U8, 16, tta="rotations", progress=False),
        ValueError,
        r"`tta` must be",
    ),
    refuses(
        "predict-tiled-out-wrong-shape",
        lambda: inference.predict_tiled(tiny_unet(), IMAGE_U8, 16, out=np.zeros((8, 8, 1), "float32"), progress=False),
        ValueError,
        r"`out` has shape",
    ),
    refuses(
        "predict-tiled-out-integer",
        lambda: inference.predict_tiled(tiny_unet(), IMAGE_U8, 16, out=np.zeros((16, 16, 1), "uint8"), progress=False),
        ValueError,
        r"float array",
    ),
    refuses(
        "predict-extra-input-missing",
        lambda: inference.predict(tiny_unet(extra_inputs={"fov_mask": 1}), IMAGE_U8),
        ValueError,
        r"extra_inputs=\{'fov_mask'",
    ),
    refuses(
        "predict-extra-input-wrong-size",
        lambda: inference.predict(
            tiny_unet(extra_inputs={"fov_mask": 1}), IMAGE_U8, extra_inputs={"fov_mask": np.ones((5, 5, 1))}
        ),
        ValueError,
        r"extra_inputs\['fov_mask'\]",
    ),
    gives(
        "predict-resized-int-size",  # like tile_size and crop_size: an int is a square size
        lambda: inference.predict_resized(tiny_unet(), IMAGE_U8[:, :12], 8).shape,
        lambda shape: shape == (16, 12, 1),
    ),
    gives("predict-uint8-equals-model-call", predict_uint8_equals_model_call, close),
    gives("predict-sequential-odd-size", predict_sequential_odd_size, close),
    gives(
        "predict-float-image-without-input-range",
        lambda: (
            inference.predict(
                tiny_unet(input_range=None), np.random.default_rng(1).random((13, 11)).astype("float32")
            ).shape
        ),
        lambda shape: shape == (13, 11, 1),
    ),
    refuses("predict-subclassed-model", lambda: inference.predict(subclassed(), IMAGE_U8), ValueError, r"subclassed"),
    # Inference: models that are not fully convolutional, or built for one input size; `out` arrays.
    refuses(
        "predict-tiled-flatten-classifier",
        lambda: inference.predict_tiled(classifier("flatten"), IMAGE_U8, 16, progress=False),
        ValueError,
        r"not fully convolutional \(layer 'flatten' flattens the image; .*kfcn\.inference .*image-to-image",
    ),
    refuses(
        "predict-global-pooling-classifier",
        lambda: inference.predict(classifier("gap", (None, None, 1)), IMAGE_U8),
        ValueError,
        r"not fully convolutional \(layer 'gap' \(GlobalAveragePooling2D\) pools the whole image",
    ),
    refuses(
        "predict-global-pooling-keepdims",  # rank 4, but a 1x1 map whatever the image: no map of it
        lambda: inference.predict(classifier("gap_keepdims", (None, None, 1)), IMAGE_U8),
        ValueError,
        r"not fully convolutional \(layer 'gap_keepdims'.*shape \(None, 1, 1, 2\), is no map of the image",
    ),
    refuses(
        "predict-fixed-size-model-larger-image",
        lambda: inference.predict(fixed_size_model(), IMAGE_100),
        ValueError,
        r"takes only 64x64 inputs .*not 100x100\. Predict the image tile by tile \(predict_tiled\(model, image, "
        r"tile_size=\(64, 64\)\)\).*rebuild it for any size",
    ),
    refuses(
        "predict-tiled-fixed-size-model-other-tile",
        lambda: inference.predict_tiled(fixed_size_model(), IMAGE_100, 32, progress=False),
        ValueError,
        r"predict_tiled: the model takes only 64x64 inputs .*not 32x32\. Pass tile_size=\(64, 64\)",
    ),
    gives("predict-tiled-fixed-size-model-own-tile", tiled_fixed_size_model, close),
    gives(
        "predict-tiled-auto-fixed-size-model",
        lambda: inference.predict_tiled(fixed_size_model(), IMAGE_100, "auto", progress=False).shape,
        lambda shape: shape == (100, 100, 1),
    ),
    gives(
        "predict-fixed-size-model-smaller-image",  # mirrored up to the model's size, as for strides
        lambda: inference.predict(fixed_size_model((32, 48)), IMAGE_U8).shape,
        lambda shape: shape == (16, 16, 1),
    ),
    refuses(
        "predict-tiled-out-read-only-memmap",
        predict_into_read_only_memmap,
        ValueError,
        r"`out` is read-only \(a np\.memmap opened with mode 'r'\).*mode \"r\+\".*\"w\+\"",
    ),
    refuses(
        "predict-tiled-out-wrong-channels",
        lambda: inference.predict_tiled(
            tiny_unet(), IMAGE_U8, 16, out=np.zeros((16, 16, 3), "float32"), progress=False
        ),
        ValueError,
        r"`out` has shape \(16, 16, 3\); it must be .* = \(16, 16, 1\)",
    ),
    refuses(
        "predict-tiled-auto-out-wrong-shape",  # the whole image in one call: `out` is checked first all the same
        lambda: inference.predict_tiled(
            tiny_unet(), IMAGE_U8, "auto", out=np.zeros((8, 8, 1), "float32"), progress=False
        ),
        ValueError,
        r"`out` has shape \(8, 8, 1\)",
    ),
    # Analysis.
    gives(
        "receptive-field-sequential",
        lambda: (
            analysis.receptive_field(
                keras.Sequential(
                    [
                        keras.Input((None, None, 1)),
                        keras.layers.Conv2D(2, 3),
                        keras.layers.MaxPooling2D(2),
                        keras.layers.Conv2D(2, 3),
                    ]
                )
            ).size
        ),
        lambda size: tuple(size) == (8, 8),  # 3 + (2 - 1) + (3 - 1) * 2
    ),
    refuses(
        "receptive-field-subclassed", lambda: analysis.receptive_field(subclassed()), ValueError, r"subclassed model"
    ),
    refuses(
        "receptive-field-sequential-without-input",
        lambda: analysis.receptive_field(keras.Sequential([keras.layers.Conv2D(2, 3)])),
        ValueError,
        r"keras\.Input",
    ),
    refuses("receptive-field-no-image-input", lambda: analysis.receptive_field(vector_model()), ValueError, r"no 4-D"),
    refuses(
        "receptive-field-flatten-classifier",
        lambda: analysis.receptive_field(classifier("flatten")),
        ValueError,
        r"not fully convolutional \(layer 'flatten' flattens the image; its output, shape \(None, 3\)",
    ),
    refuses(
        "erf-global-pooling-classifier",
        lambda: analysis.effective_receptive_field(classifier("gap"), (16, 16, 1), samples=1),
        ValueError,
        r"not fully convolutional \(layer 'gap' \(GlobalAveragePooling2D\).*effective_receptive_field needs",
    ),
    refuses(
        "equivariance-flatten-classifier",
        lambda: analysis.translation_equivariance(classifier("flatten"), (16, 16, 1)),
        ValueError,
        r"not fully convolutional \(layer 'flatten' flattens the image",
    ),
    refuses(
        "equivariance-subclassed-classifier",  # no graph to read: the output's rank names the problem
        lambda: analysis.translation_equivariance(SubclassedClassifier(), (16, 16, 1)),
        ValueError,
        r"not fully convolutional \(its output has shape \(1, 2\)",
    ),
    gives(
        "receptive-field-squeeze-excitation-is-still-a-map",  # global pooling on a branch that merges back
        lambda: analysis.receptive_field(squeeze_excitation()).size,
        lambda size: math.isinf(size[0]),
    ),
    refuses(
        "receptive-field-fixed-size-model-other-size",
        lambda: analysis.receptive_field(fixed_size_model(), input_size=(100, 100)),
        ValueError,
        r"receptive_field: the model takes only 64x64 inputs .*not 100x100",
    ),
    refuses(
        "erf-fixed-size-model-other-size",
        lambda: analysis.effective_receptive_field(fixed_size_model(), (100, 100, 1), samples=1),
        ValueError,
        r"takes only 64x64 inputs .*Pass input_shape=\(64, 64, 1\), or rebuild it for any size",
    ),
    refuses(
        "equivariance-fixed-size-model-other-size",
        lambda: analysis.translation_equivariance(fixed_size_model(), (16, 16, 1)),
        ValueError,
        r"translation_equivariance: the model takes only 64x64 inputs .*input_shape=\(64, 64, 1\)",
    ),
    refuses(
        "erf-wrong-channel-count",
        lambda: analysis.effective_receptive_field(tiny_unet(), (32, 32, 3), samples=1),
        ValueError,
        r"expects 1 input channel\(s\), but `input_shape` \(32, 32, 3\) has 3\. Use input_shape=\(32, 32, 1\)",
    ),
    refuses(
        "equivariance-wrong-channel-count",
        lambda: analysis.translation_equivariance(sequential(), (16, 16, 3)),
        ValueError,
        r"expects 1 input channel\(s\), but `input_shape` \(16, 16, 3\) has 3",
    ),
    refuses(
        "inspect-flatten-classifier",
        lambda tmp: inspect_model(tmp, classifier("flatten")),
        ValueError,
        r"not fully convolutional \(layer 'flatten' flattens the image; .*kfcn inspect needs",
    ),
    refuses(
        "equivariance-nothing-to-compare",
        lambda: analysis.translation_equivariance(keras.layers.Conv2D(2, 9, padding="same"), (8, 8, 1), [(3, 3)]),
        ValueError,
        r"Nothing to compare",
    ),
    refuses(
        "equivariance-shifts-not-pairs",
        lambda: analysis.translation_equivariance(keras.layers.Conv2D(2, 3, padding="same"), (16, 16, 1), [(1, 2, 3)]),
        ValueError,
        r"`shifts`",
    ),
    refuses(
        "equivariance-2d-input-shape",
        lambda: analysis.translation_equivariance(keras.layers.Conv2D(2, 3, padding="same"), (16, 16)),
        ValueError,
        r"`input_shape`",
    ),
    refuses(
        "erf-size-model-cannot-take",
        lambda: analysis.effective_receptive_field(tiny_unet(), (30, 30, 1), samples=1),
        ValueError,
        r"not a multiple of 4",
    ),
    refuses(
        "erf-2d-input-shape",
        lambda: analysis.effective_receptive_field(tiny_unet(), (32, 32)),
        ValueError,
        r"`input_shape`",
    ),
    refuses(
        "erf-zero-samples",
        lambda: analysis.effective_receptive_field(tiny_unet(), (32, 32, 1), samples=0),
        ValueError,
        r"`samples`",
    ),
    # Saving.
    refuses(
        "load-truncated-keras", lambda tmp: load_model(truncated_keras_file(tmp)), ValueError, r"not a valid \.keras"
    ),
    refuses(
        "load-non-zip-keras",
        lambda tmp: load_model(garbage_file(tmp, "m.keras")),
        ValueError,
        r"not a valid \.keras file",
    ),
    refuses("load-missing-keras", lambda tmp: load_model(tmp / "none.keras"), ValueError, r"does not exist"),
    refuses("load-h5-suffix", lambda tmp: load_model(garbage_file(tmp, "m.h5")), ValueError, r"not a `\.keras` file"),
    refuses("load-folder", lambda tmp: load_model(tmp), ValueError, r"is a folder"),
    refuses("load-unsafe-lambda", lambda tmp: load_model(lambda_keras_file(tmp)), ValueError, r"safe_mode=False"),
    refuses(
        "load-unsafe-lambda-names-layer-and-flag",
        lambda tmp: load_model(named_lambda_keras_file(tmp)),
        ValueError,
        r"holds Python code \(the bytecode of a lambda in layer 'double' \(Lambda\)\).*may execute arbitrary "
        r"code.*safe_mode=False.*--unsafe",
    ),
    refuses(
        "load-config-naming-os-system",
        lambda tmp: load_model(
            edited_keras_file(
                tmp, activation_of_first_conv({"module": "os", "class_name": "function", "config": "system"})
            )
        ),
        ValueError,
        r"names the function os\.system in layer '\w+' \(Conv2D\), which is neither part of Keras nor registered",
    ),
    refuses(
        "load-config-naming-os-system-unsafe-mode",  # safe_mode=False does not make Keras import it
        lambda tmp: load_model(
            edited_keras_file(
                tmp, activation_of_first_conv({"module": "os", "class_name": "function", "config": "system"})
            ),
            safe_mode=False,
        ),
        ValueError,
        r"names the function os\.system .*with or without safe_mode",
    ),
    refuses(
        "load-config-naming-non-modeling-api",
        lambda tmp: load_model(
            edited_keras_file(
                tmp,
                activation_of_first_conv(
                    {"module": "keras.config", "class_name": "function", "config": "enable_unsafe_deserialization"}
                ),
            )
        ),
        ValueError,
        r"names keras\.config\.enable_unsafe_deserialization in layer .*not part of a model",
    ),
    refuses(
        "load-huge-config",  # 300 MiB declared in the zip's directory: refused before a byte is read
        lambda tmp: load_model(edited_keras_file(tmp, member_sizes={"config.json": 300 * 2**20})),
        ValueError,
        r"model description \(config\.json\) is 314,572,800 bytes \(300\.0 MiB\), over the limit of 33,554,432",
    ),
    refuses(
        "load-zip-without-config",
        lambda tmp: load_model(zip_without_config(tmp)),
        ValueError,
        r"holds no config\.json",
    ),
    gives(
        "load-trusted-lambda-with-safe-mode-off",
        lambda tmp: keras.ops.convert_to_numpy(
            load_model(lambda_keras_file(tmp), safe_mode=False)(np.ones((1, 2, 2, 1)))
        ),
        lambda out: np.allclose(out, 2.0),
    ),
    refuses("save-h5-suffix", lambda tmp: save_model(tiny_unet(), tmp / "m.h5"), ValueError, r"\.keras"),
    # Writing files.
    refuses(
        "check-writable-on-a-file",
        lambda tmp: check_writable(garbage_file(tmp, "file.txt")),
        ValueError,
        r"is a file, not a folder",
    ),
    refuses(
        "atomic-path-existing-without-overwrite",
        lambda tmp: atomic_path(garbage_file(tmp, "out.png"), overwrite=False).__enter__(),
        FileExistsError,
        r"overwrite=True",
    ),
    # Export arguments: checked in this process, before any TensorFlow tracing (or child process).
    refuses(
        "tflite-int8-without-representative-data",
        lambda tmp: tflite_export(tiny_unet(), tmp, quantize="int8"),
        ValueError,
        r"representative_data",
    ),
    refuses(
        "tflite-unknown-quantization",
        lambda tmp: tflite_export(tiny_unet(), tmp, quantize="int4"),
        ValueError,
        r"`quantize` must be one of",
    ),
    refuses(
        "tflite-input-shape-model-cannot-take",
        lambda tmp: tflite_export(tiny_unet((32, 32, 1)), tmp, input_shape=(48, 48)),
        ValueError,
        r"built for input height 32",
    ),
    refuses(
        "tflite-input-shape-zero",
        lambda tmp: tflite_export(tiny_unet(), tmp, input_shape=(0, 16)),
        ValueError,
        r"positive sizes",
    ),
    refuses(
        "tflite-representative-wrong-channels",
        lambda tmp: tflite_export(tiny_unet(), tmp, quantize="int8", representative_data=[np.zeros((16, 16, 3))]),
        ValueError,
        r"\(height, width, 1\) images",
    ),
    refuses(
        "export-model-without-image-input",
        lambda tmp: tflite_export(vector_model(), tmp),
        ValueError,
        r"no image input",
    ),
    refuses(
        "export-subclassed-model",
        lambda tmp: tflite_export(subclassed(), tmp),
        ValueError,
        r"subclassed",
    ),
    refuses(
        "tflite-existing-file-without-overwrite",
        existing_tflite,
        FileExistsError,
        r"overwrite=True",
    ),
    refuses(
        "saved-model-existing-version",
        existing_version,
        FileExistsError,
        r"overwrite=True",
    ),
    refuses(
        "saved-model-version-0",
        lambda tmp: saved_model_export(tiny_unet(), tmp, version=0),
        ValueError,
        r"positive int",
    ),
    refuses(
        "saved-model-extra-inputs",
        lambda tmp: saved_model_export(tiny_unet(extra_inputs={"fov_mask": 1}), tmp),
        ValueError,
        r"further map inputs",
    ),
]


@pytest.mark.backend
@pytest.mark.parametrize("case", BACKEND_CASES, ids=lambda case: case.id)
def test_bad_input_on_every_backend(case, tmp_path):
    run_case(case, tmp_path)


# --- TensorFlow only: files, tf.data pipelines, real exports -------------------------------------------


def write_png(path, array):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array)).save(path)
    return path


def write_tiff(path, array):
    import tifffile

    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, np.asarray(array))
    return path


def label_png(tmp_path, values=(0, 255), size=(16, 16), name="label.png"):
    label = np.full(size, values[0], np.uint8)
    for k, value in enumerate(values[1:], start=1):
        label[k :: len(values)] = value
    return write_png(tmp_path / name, label)


def image_png(tmp_path, size=(16, 16), name="image.png"):
    return write_png(tmp_path / name, np.random.default_rng(1).integers(0, 256, size, dtype=np.uint8))


def truncated_png(tmp_path):
    path = image_png(tmp_path, size=(64, 64), name="truncated.png")
    content = path.read_bytes()
    path.write_bytes(content[: len(content) // 2])
    return path


def load_pair_of(tmp_path, image_path, label_path=None, **kwargs):
    from kfcn.data import load_pair

    return load_pair(image_path, label_path or label_png(tmp_path), **kwargs)


def folders(tmp_path, image_names, label_names):
    for name in image_names:
        write_png(tmp_path / "images" / name, np.zeros((8, 8), np.uint8))
    for name in label_names:
        write_png(tmp_path / "labels" / name, np.zeros((8, 8), np.uint8))
    (tmp_path / "images").mkdir(exist_ok=True)
    (tmp_path / "labels").mkdir(exist_ok=True)
    return tmp_path / "images", tmp_path / "labels"


def folder_dataset_of(tmp_path, image_names, label_names):
    from kfcn.data import folder_dataset

    return folder_dataset(*folders(tmp_path, image_names, label_names), verbose=False)


def pairs(image=None, label=None, size=64):
    import tensorflow as tf

    image = np.full((size, size, 1), 100.0, "float32") if image is None else image
    label = (np.arange(size * size).reshape(size, size, 1) % 2).astype("int32") if label is None else label
    return tf.data.Dataset.from_tensors((image, label))


def first_batch(crop_size=16, dataset=None, **kwargs):
    from kfcn.data import random_crop_pipeline

    kwargs = {"batch_size": 2, "seed": 0, **kwargs}
    x, y, *weights = next(iter(random_crop_pipeline(pairs() if dataset is None else dataset, crop_size, **kwargs)))
    return tuple(x.shape), tuple(y.shape)


def data_call(name, *args, **kwargs):
    import kfcn.data

    return getattr(kfcn.data, name)(*args, **kwargs)


RAW_MASK = 255 * (np.arange(64 * 64).reshape(64, 64, 1) % 2).astype("int32")


def tensorflow_cases():
    import tensorflow as tf

    stream_error = tf.errors.InvalidArgumentError
    return [
        # Files.
        refuses(
            "load-pair-sizes-differ",
            lambda tmp: load_pair_of(tmp, image_png(tmp, (16, 16)), label_png(tmp, size=(16, 12))),
            ValueError,
            r"must have the same size",
        ),
        refuses(
            "load-pair-truncated-png",
            lambda tmp: load_pair_of(tmp, truncated_png(tmp)),
            ValueError,
            r"Cannot read image file .*truncated\.png",
        ),
        refuses(
            "load-pair-not-an-image",
            lambda tmp: load_pair_of(tmp, garbage_file(tmp, "image.png")),
            ValueError,
            r"Cannot read image file",
        ),
        refuses(
            "load-pair-nan-tiff",
            lambda tmp: load_pair_of(
                tmp, write_tiff(tmp / "nan.tif", with_value(np.ones((16, 16), "float32"), np.nan, (2, 2)))
            ),
            ValueError,
            r"NaN or infinite",
        ),
        refuses(
            "load-pair-binary-with-three-values",
            lambda tmp: load_pair_of(tmp, image_png(tmp), label_png(tmp, (0, 128, 255))),
            ValueError,
            r"label_mode='index'",
        ),
        refuses(
            "load-pair-unknown-label-value",
            lambda tmp: load_pair_of(tmp, image_png(tmp), label_png(tmp, (0, 1, 7)), label_mode="index", num_classes=3),
            ValueError,
            r"values 7 outside the declared classes",
        ),
        refuses(
            "load-pair-index-without-num-classes",
            lambda tmp: load_pair_of(tmp, image_png(tmp), label_mode="index"),
            ValueError,
            r"needs num_classes",
        ),
        refuses(
            "load-pair-unknown-label-mode",
            lambda tmp: load_pair_of(tmp, image_png(tmp), label_mode="multi"),
            ValueError,
            r"`label_mode` must be one of",
        ),
        gives(
            "load-pair-255-mask-becomes-0-1",
            lambda tmp: load_pair_of(tmp, image_png(tmp))[1],
            lambda label: set(np.unique(label).tolist()) == {0, 1},
        ),
        refuses(
            "folder-same-stem-png-and-tif",
            lambda tmp: folder_dataset_of(tmp, ["s1.png", "s1.tif"], ["s1.png"]),
            ValueError,
            r"two files named 's1'",
        ),
        refuses(
            "folder-image-without-label",
            lambda tmp: folder_dataset_of(tmp, ["a.png", "b.png"], ["a.png"]),
            ValueError,
            r"have no label.*b\.png",
        ),
        refuses("folder-empty", lambda tmp: folder_dataset_of(tmp, [], []), ValueError, r"has no image files"),
        refuses(
            "folder-missing",
            lambda tmp: data_call("folder_dataset", tmp / "nope", tmp / "nope2", verbose=False),
            ValueError,
            r"does not exist",
        ),
        # Crop pipeline.
        gives("crop-size-numpy-int64", lambda: first_batch(np.int64(64)), lambda shapes: shapes[0] == (2, 64, 64, 1)),
        gives("crop-size-pair", lambda: first_batch((16, 24)), lambda shapes: shapes[1] == (2, 16, 24, 1)),
        refuses("crop-size-0", lambda: first_batch(0), ValueError, r"`crop_size` must be positive"),
        refuses("crop-size-negative-side", lambda: first_batch((16, -4)), ValueError, r"`crop_size` must be positive"),
        refuses("crop-size-float", lambda: first_batch(16.5), ValueError, r"`crop_size` must be an integer"),
        refuses("crop-size-three-sides", lambda: first_batch((16, 16, 1)), ValueError, r"\(height, width\) pair"),
        refuses("crop-batch-size-0", lambda: first_batch(batch_size=0), ValueError, r"`batch_size` must be positive"),
        refuses("crop-unknown-augment", lambda: first_batch(augment="rotate"), ValueError, r"`augment` must be"),
        refuses("crop-unknown-weight-map", lambda: first_batch(weight_map="border"), ValueError, r"`weight_map`"),
        refuses(
            "crop-numpy-array-instead-of-dataset",
            lambda: data_call("random_crop_pipeline", np.zeros((4, 16, 16, 1)), 8),
            ValueError,
            r"tf\.data\.Dataset",
        ),
        refuses(
            "crop-one-hot-raw-255-mask",
            lambda: first_batch(dataset=pairs(label=RAW_MASK), one_hot=2),
            stream_error,
            r"labels // 255",
        ),
        refuses(
            "crop-unet-weights-raw-255-mask",
            lambda: first_batch(dataset=pairs(label=RAW_MASK), weight_map="unet"),
            stream_error,
            r"labels // 255",
        ),
        refuses(
            "crop-nan-image",
            lambda: first_batch(dataset=pairs(image=with_value(np.ones((64, 64, 1), "float32"), np.nan, (5, 5, 0)))),
            stream_error,
            r"NaN or infinite",
        ),
        refuses(
            "crop-image-too-small",
            lambda: first_batch(48, dataset=pairs(size=16)),
            stream_error,
            r"too small for 48x48 crops",
        ),
        # Maps.
        refuses(
            "weight-map-raw-255-mask",
            lambda: data_call("unet_weight_map", RAW_MASK[..., 0]),
            ValueError,
            r"labels // 255",
        ),
        refuses(
            "weight-map-negative-labels",
            lambda: data_call("unet_weight_map", -np.eye(8, dtype=int)),
            ValueError,
            r">= 0",
        ),
        refuses(
            "weight-map-fractional-labels",
            lambda: data_call("unet_weight_map", 0.5 * np.eye(8)),
            ValueError,
            r"integer class or instance ids",
        ),
        refuses(
            "weight-map-instances-false-with-2",
            lambda: data_call("unet_weight_map", 2 * np.eye(8, dtype=int), instances=False),
            ValueError,
            r"expects a 0/1 mask",
        ),
        refuses(
            "weight-map-batch-of-labels",
            lambda: data_call("unet_weight_map", np.zeros((2, 8, 8), int)),
            ValueError,
            r"the label map must be \(H, W\) or \(H, W, 1\)",
        ),
        refuses(
            "weight-map-negative-w0",
            lambda: data_call("unet_weight_map", np.eye(8, dtype=int), w0=-10.0),
            ValueError,
            r"w0",
        ),
        refuses(
            "weight-map-sigma-0",
            lambda: data_call("unet_weight_map", np.eye(8, dtype=int), sigma=0),
            ValueError,
            r"sigma",
        ),
        refuses("density-sigma-0", lambda: data_call("density_map", [(2, 2)], (8, 8), sigma=0), ValueError, r"sigma"),
        refuses(
            "density-points-wrong-shape",
            lambda: data_call("density_map", [1.0, 2.0, 3.0], (8, 8)),
            ValueError,
            r"\(N, 2\) array",
        ),
        refuses(
            "density-point-outside", lambda: data_call("density_map", [(9, 2)], (8, 8)), ValueError, r"outside the 8x8"
        ),
        refuses(
            "density-nan-point", lambda: data_call("density_map", [(np.nan, 2)], (8, 8)), ValueError, r"NaN or infinite"
        ),
        gives(
            "density-no-points",
            lambda: data_call("density_map", np.zeros((0, 2)), (8, 8)),
            lambda density: density.shape == (8, 8) and density.sum() == 0,
        ),
        refuses(
            "degrade-nan-image",
            lambda: data_call("degrade", with_value(np.ones((8, 8)), np.nan, (1, 1))),
            ValueError,
            r"NaN or infinite",
        ),
        refuses(
            "degrade-downsample-0",
            lambda: data_call("degrade", np.ones((8, 8)), downsample=0),
            ValueError,
            r"downsample",
        ),
        refuses(
            "degrade-blur-range-reversed",
            lambda: data_call("degrade", np.ones((8, 8)), blur_sigma=(2.0, 0.5)),
            ValueError,
            r"blur_sigma",
        ),
        refuses("crop-seed-not-an-int", lambda: first_batch(seed="abc"), ValueError, r"`seed`"),
        # Exports that run TensorFlow (a JAX or PyTorch model would go through a child process).
        gives(
            "tflite-sequential-model-exports",
            lambda tmp: tflite_export(sequential(pooling=True), tmp, input_shape=(16, 16)),
            lambda report: (
                report["input"]["shape"] == [1, 16, 16, 1] and not any(op.startswith("Flex") for op in report["ops"])
            ),
        ),
    ]


TENSORFLOW_CASES = tensorflow_cases() if BACKEND == "tensorflow" else []


@pytest.mark.tensorflow_only(reason="tf.data and TensorFlow exports run on TensorFlow")
@pytest.mark.parametrize("case", TENSORFLOW_CASES, ids=lambda case: case.id)
def test_bad_input_on_tensorflow(case, tmp_path):
    run_case(case, tmp_path)


def test_the_catalogue_ids_are_unique():
    ids = [case.id for case in BACKEND_CASES + TENSORFLOW_CASES]
    assert len(ids) == len(set(ids))
