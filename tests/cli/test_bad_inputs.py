"""The bad-input catalogue of the command line (issue 9): every mistake ends in one line on stderr.

Each row is a short id, the arguments of `kfcn ...` (built from the shared input files and the
test's own output folder), and a regex the error line must match. `kfcn.cli.main` runs in-process;
every row must return a non-zero status, print exactly one line without a traceback, and leave
no output (nor a `.partial` temporary) behind.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from types import SimpleNamespace

import keras
import numpy as np
import pytest
from PIL import Image

from kfcn.cli import main
from kfcn.models import unet
from kfcn.saving import save_model

pytestmark = pytest.mark.tensorflow_only(reason="the CLI table runs on TensorFlow")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Models and images shared by every row: built once, never written to by the rows."""
    folder = tmp_path_factory.mktemp("cli_inputs")
    rng = np.random.default_rng(0)
    f = SimpleNamespace(folder=folder)
    f.model = folder / "model.keras"
    save_model(unet((None, None, 1), num_classes=1, filters=2, depth=2), f.model)
    f.static_model = folder / "static.keras"
    save_model(unet((32, 32, 1), num_classes=1, filters=2, depth=2), f.static_model)
    f.two_channel_model = folder / "two_channels.keras"
    save_model(unet((None, None, 2), num_classes=1, filters=2, depth=2), f.two_channel_model)
    f.lambda_model = folder / "lambda.keras"
    keras.Sequential([keras.Input((None, None, 1)), keras.layers.Lambda(lambda x: 2.0 * x)]).save(f.lambda_model)
    f.truncated_model = folder / "truncated.keras"
    content = f.model.read_bytes()
    f.truncated_model.write_bytes(content[: len(content) // 2])
    f.garbage_model = folder / "garbage.keras"
    f.garbage_model.write_bytes(b"not a zip archive")
    f.image = folder / "gray.png"
    Image.fromarray(rng.integers(0, 256, (24, 20), dtype=np.uint8)).save(f.image)
    f.image16 = folder / "gray16.tif"
    import tifffile

    tifffile.imwrite(f.image16, rng.integers(1000, 65536, (24, 20), dtype=np.uint16))
    f.truncated_image = folder / "truncated.png"
    Image.fromarray(rng.integers(0, 256, (64, 64), dtype=np.uint8)).save(f.truncated_image)
    content = f.truncated_image.read_bytes()
    f.truncated_image.write_bytes(content[: len(content) // 2])
    for name, values in (("images", rng.integers(0, 256, (24, 20))), ("labels", 255 * (rng.random((24, 20)) > 0.5))):
        (folder / name).mkdir()
        Image.fromarray(values.astype(np.uint8)).save(folder / name / "a.png")
    (folder / "other_labels").mkdir()
    Image.fromarray(np.zeros((24, 20), np.uint8)).save(folder / "other_labels" / "b.png")
    f.images, f.labels, f.other_labels = folder / "images", folder / "labels", folder / "other_labels"
    f.blocker = folder / "a_file"
    f.blocker.write_text("a file where a folder is expected")
    f.empty = folder / "empty"
    f.empty.mkdir()
    (folder / "other_images").mkdir()
    Image.fromarray(rng.integers(0, 256, (24, 20), dtype=np.uint8)).save(folder / "other_images" / "a.png")
    f.other_images = folder / "other_images"
    (folder / "gray_labels").mkdir()
    Image.fromarray(rng.integers(0, 256, (24, 20), dtype=np.uint8)).save(folder / "gray_labels" / "a.png")
    f.gray_labels = folder / "gray_labels"
    f.regression_model = folder / "regression.keras"
    save_model(unet((None, None, 1), num_classes=1, filters=2, depth=2, head="regression"), f.regression_model)
    f.config_unknown = folder / "unknown.yaml"
    f.config_unknown.write_text("learning_rat: 0.1\n")
    f.serving = folder / "serving"
    (f.serving / "1").mkdir(parents=True)
    _pixel_rule_files(f, folder, rng)
    return f


def _pixel_rule_files(f, folder, rng):
    """Files of the pixel-value and channel rules (issue 25 §2): bit depths, pages, alpha, 16-bit colour PNG."""
    import tifffile

    f.model16 = folder / "model16.keras"
    save_model(unet((None, None, 1), num_classes=1, filters=2, depth=2, input_range=(0, 65535)), f.model16)
    f.model100 = folder / "model100.keras"  # 8-bit files, but pixels only up to 100: values decide, not the dtype
    save_model(unet((None, None, 1), num_classes=1, filters=2, depth=2, input_range=(0, 100)), f.model100)
    f.dim16 = folder / "dim16.tif"  # 16-bit, but every value fits 8 bits: only the dtype tells
    tifffile.imwrite(f.dim16, rng.integers(0, 200, (24, 20), dtype=np.uint16))
    f.pages = folder / "pages.tif"
    for value in (1, 2, 3):
        tifffile.imwrite(f.pages, np.full((24, 20), value, np.uint8), append=True)
    f.see_through = folder / "see_through.png"
    rgba = np.dstack([rng.integers(0, 256, (24, 20, 3), dtype=np.uint8), np.full((24, 20), 255, np.uint8)])
    rgba[:6, :, 3] = 0
    Image.fromarray(rgba).save(f.see_through)
    f.colour16 = folder / "colour16.png"  # PIL cannot write it: IHDR bit depth 16, colour type 2
    import struct
    import zlib

    raw = b"".join(b"\x00" + np.full((20, 3), 40000, ">u2").tobytes() for _ in range(24))
    chunks = [(b"IHDR", struct.pack(">IIBBBBB", 20, 24, 16, 2, 0, 0, 0)), (b"IDAT", zlib.compress(raw)), (b"IEND", b"")]
    f.colour16.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + b"".join(struct.pack(">I", len(d)) + k + d + struct.pack(">I", zlib.crc32(k + d)) for k, d in chunks)
    )
    f.mixed_images, f.mixed_labels = folder / "mixed_images", folder / "mixed_labels"
    f.float_images = folder / "float_images"
    for name in ("mixed_images", "mixed_labels", "float_images"):
        (folder / name).mkdir()
    Image.fromarray(rng.integers(0, 256, (24, 20), dtype=np.uint8)).save(f.mixed_images / "a.png")
    tifffile.imwrite(f.mixed_images / "b.tif", rng.integers(0, 65536, (24, 20), dtype=np.uint16))
    tifffile.imwrite(f.float_images / "a.tif", rng.random((24, 20), dtype=np.float32))
    for stem in ("a", "b"):
        Image.fromarray((255 * (rng.random((24, 20)) > 0.5)).astype(np.uint8)).save(f.mixed_labels / f"{stem}.png")
    f.config_bad_range = folder / "bad_range.yaml"
    f.config_bad_range.write_text("input_range: [255, 0]\n")


@dataclass(frozen=True)
class CliCase:
    id: str
    argv: object  # (files, output folder) -> list of arguments
    match: str


def predict(model, image, *options):
    return lambda f, out: [
        "predict",
        str(getattr(f, image, out / image)),
        "--output",
        str(out / "predictions"),
        "--model",
        str(getattr(f, model, out / model)),
        *options,
    ]


def evaluate(labels="labels", *options):
    return lambda f, out: [
        "evaluate",
        str(f.images),
        str(getattr(f, labels, out / labels)),
        "--model",
        str(f.model),
        *options,
    ]


def train(*options, images="images", labels="labels"):
    return lambda f, out: [
        "train",
        "--images",
        str(getattr(f, images, out / images)),
        "--labels",
        str(getattr(f, labels, out / labels)),
        "--output",
        str(out / "run"),
        "--filters",
        "2",
        "--depth",
        "2",
        "--crop",
        "16",
        "--epochs",
        "1",
        "--steps",
        "1",
        "--val-fraction",
        "0",
        *options,
    ]


def export(model, fmt, output, *options):
    def argv(f, out):
        target = getattr(f, output) if hasattr(f, output) else out / output
        return ["export", str(getattr(f, model)), "--format", fmt, "--output", str(target), *options]

    return argv


CASES = [
    CliCase("predict-missing-image", predict("model", "missing.png"), r"missing\.png does not exist"),
    CliCase("predict-empty-folder", predict("model", "empty"), r"has no image files"),
    CliCase("predict-glob-matches-nothing", predict("model", "nothing_*.png"), r"No image file matches"),
    CliCase("predict-not-an-image-file", predict("model", "blocker"), r"is not an image file"),
    CliCase("predict-truncated-image", predict("model", "truncated_image"), r"Cannot read image file"),
    CliCase("predict-missing-model", predict("none.keras", "image"), r"none\.keras does not exist"),
    CliCase(
        "predict-model-given-as-an-image",
        lambda f, out: ["predict", str(f.model), str(f.image), "--output", str(out / "p")],
        r"is a model, not an image; give it with --model",
    ),
    CliCase(
        "predict-two-images-one-output-name",
        lambda f, out: ["predict", str(f.images), str(f.other_images), "--output", str(out / "p")],
        r"would both write a\.png",
    ),
    CliCase("predict-truncated-keras", predict("truncated_model", "image"), r"not a valid \.keras file"),
    CliCase("predict-non-zip-keras", predict("garbage_model", "image"), r"not a valid \.keras file"),
    CliCase("predict-unsafe-lambda-model", predict("lambda_model", "image"), r"--unsafe"),
    CliCase("predict-wrong-channel-count", predict("two_channel_model", "image"), r"channel"),
    CliCase("predict-16-bit-image-to-8-bit-model", predict("model", "image16"), r"outside the raw pixel range"),
    CliCase(
        "predict-dim-16-bit-image-to-8-bit-model",
        predict("model", "dim16"),
        r"dim16\.tif is a 16-bit image \(uint16\), outside the raw pixel range \[0, 255\]",
    ),
    CliCase(
        "predict-8-bit-image-to-16-bit-model",
        predict("model16", "image"),
        r"gray\.png is an 8-bit image \(uint8, 0-255\), but the model takes raw pixel values in \[0, 65535\]",
    ),
    CliCase(
        "predict-multi-page-tiff",
        predict("model", "pages"),
        r"pages\.tif holds 3 page\(s\).*Save each page as its own file",
    ),
    CliCase(
        "predict-transparent-png",
        predict("model", "see_through"),
        r"see_through\.png has 4 channels, colour and an alpha \(transparency\) channel that is not fully opaque "
        r"\(25\.0%.*Flatten",
    ),
    CliCase("predict-16-bit-colour-png", predict("model", "colour16"), r"colour16\.png is a 16-bit colour PNG"),
    CliCase(
        "predict-output-folder-is-a-file",
        lambda f, out: ["predict", str(f.image), "--output", str(f.blocker), "--model", str(f.model)],
        r"is a file, not a folder",
    ),
    CliCase("predict-tile-does-not-fit", predict("model", "image", "--tile", "14"), r"tile_size=16"),
    CliCase("predict-batch-0", predict("model", "image", "--batch", "0"), r"--batch"),
    CliCase("predict-negative-overlap", predict("model", "image", "--overlap", "-2"), r"--overlap"),
    CliCase("predict-threshold-1", predict("model", "image", "--threshold", "1"), r"--threshold"),
    CliCase("predict-labels-of-a-regression-model", predict("regression_model", "image", "--labels"), r"--labels"),
    CliCase("train-missing-image-folder", train(images="no_images"), r"no_images does not exist"),
    CliCase("train-empty-image-folder", train(images="empty"), r"has no image files"),
    CliCase("train-image-without-label", train(labels="other_labels"), r"no label"),
    CliCase("train-unknown-label-values", train(labels="gray_labels"), r"label"),
    CliCase("train-output-is-a-file", lambda f, out: [*train()(f, out), "--output", str(f.blocker)], r"is a file"),
    CliCase("train-corrupt-keras", train("--model", "GARBAGE"), r"not a valid \.keras file"),
    CliCase("train-unknown-zoo-model", train("--model", "resnet"), r"--model must be one of"),
    CliCase("train-wrong-channel-count", train("--model", "TWO_CHANNELS"), r"takes 2 channel"),
    CliCase("train-crop-the-strides-cannot-take", train("--crop", "18"), r"--crop 18 does not suit.*16 or 20"),
    CliCase("train-index-without-num-classes", train("--label-mode", "index"), r"--num-classes"),
    CliCase("train-config-missing", train("--config", "absent.yaml"), r"absent\.yaml does not exist"),
    CliCase("train-config-unknown-option", train("--config", "CONFIG_UNKNOWN"), r"unknown option 'learning_rat'"),
    CliCase("train-no-data", lambda f, out: ["train", "--output", str(out / "run")], r"--images DIR --labels DIR"),
    CliCase(
        "train-bad-model-option",
        train("--model-options", '{"widht": 3}'),
        r"--model-options: unet has no option 'widht'; it takes filters",
    ),
    CliCase(
        "train-mixed-bit-depths",
        train(images="mixed_images", labels="mixed_labels"),
        r"mix bit depths: .*a\.png is 8-bit \(uint8\) but .*b\.tif is 16-bit \(uint16\)",
    ),
    CliCase(
        "train-float-images-without-input-range",
        train(images="float_images"),
        r"a\.tif holds float32 pixels.*--input-range LOW,HIGH",
    ),
    CliCase("train-reversed-input-range", train("--config", "CONFIG_BAD_RANGE"), r"--input-range takes LOW,HIGH"),
    CliCase(
        "train-input-range-twice",
        train("--input-range", "0,1", "--model-options", '{"input_range": [0, 1]}'),
        r"pixel range once",
    ),
    CliCase("train-fine-tune-16-bit-model-on-8-bit-images", train("--model", "MODEL16"), r"a\.png is an 8-bit image"),
    CliCase(
        "receptive-field-missing-model", lambda f, out: ["receptive-field", str(out / "none.keras")], r"does not exist"
    ),
    CliCase("evaluate-missing-label-folder", evaluate("no_labels"), r"does not exist"),
    CliCase("evaluate-image-without-label", evaluate("other_labels"), r"no label"),
    CliCase("evaluate-index-without-num-classes", evaluate("labels", "--label-mode", "index"), r"--num-classes"),
    CliCase("evaluate-threshold-above-1", evaluate("labels", "--threshold", "1.5"), r"--threshold"),
    CliCase(
        "evaluate-8-bit-images-16-bit-model",
        evaluate("labels", "--model", "MODEL16"),
        r"a\.png is an 8-bit image \(uint8, 0-255\).*\[0, 65535\]",
    ),
    CliCase(
        "evaluate-values-outside-the-models-range-name-the-image",
        evaluate("labels", "--model", "MODEL100"),
        r"image \S*a\.png.* \[0, 100\]",
    ),
    CliCase(
        "evaluate-json-folder-is-a-file",
        lambda f, out: [*evaluate()(f, out), "--json", str(f.blocker / "scores.json")],
        r"is a file, not a folder",
    ),
    CliCase("inspect-missing-model", lambda f, out: ["inspect", str(out / "none.keras")], r"does not exist"),
    CliCase("inspect-erf-not-png", lambda f, out: ["inspect", str(f.model), "--erf", str(out / "erf.jpg")], r"\.png"),
    CliCase(
        "export-missing-model",
        lambda f, out: ["export", str(out / "none.keras"), "--format", "tflite", "--output", str(out / "m.tflite")],
        r"does not exist",
    ),
    CliCase("export-corrupt-keras", export("garbage_model", "tflite", "m.tflite"), r"not a valid \.keras file"),
    CliCase(
        "export-int8-without-representative",
        export("model", "tflite", "m.tflite", "--quantize", "int8"),
        r"representative",
    ),
    CliCase("export-tflite-wrong-suffix", export("model", "tflite", "m.bin"), r"\.tflite"),
    CliCase(
        "export-input-size-model-cannot-take",
        export("static_model", "tflite", "m.tflite", "--input-size", "48", "48"),
        r"built for input height 32",
    ),
    CliCase("export-existing-version", export("model", "saved_model", "serving", "--version", "1"), r"--overwrite"),
    CliCase("export-output-folder-is-a-file", export("model", "saved_model", "blocker"), r"is a file, not a folder"),
    CliCase("export-bad-metadata", export("model", "saved_model", "serving2", "--metadata", "{not json"), r"metadata"),
    CliCase(
        "export-quantize-for-saved-model",
        export("model", "saved_model", "serving3", "--quantize", "int8"),
        r"--quantize does not apply to --format saved_model \(only to tflite and web\)",
    ),
    CliCase(
        "export-tflite-options-for-onnx",
        export("model", "onnx", "m.onnx", "--input-size", "32", "32", "--input-dtype", "uint8"),
        r"--input-dtype, --input-size do not apply to --format onnx \(only to saved_model, tflite and web\)",
    ),
    CliCase(
        "export-version-for-tflite",
        export("model", "tflite", "m.tflite", "--version", "2"),
        r"--version does not apply to --format tflite \(only to saved_model\)",
    ),
]


def _folder_named_png(out):
    folder = out / "already_a_folder.png"
    folder.mkdir()
    return folder


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_cli_bad_input(case, files, tmp_path, capsys):
    out = tmp_path / "outputs"
    out.mkdir()
    placeholders = {
        "GARBAGE": files.garbage_model,
        "TWO_CHANNELS": files.two_channel_model,
        "CONFIG_UNKNOWN": files.config_unknown,
        "CONFIG_BAD_RANGE": files.config_bad_range,
        "MODEL16": files.model16,
        "MODEL100": files.model100,
    }
    argv = [str(placeholders.get(argument, argument)) for argument in case.argv(files, out)]
    capsys.readouterr()
    code = main(argv)
    error = capsys.readouterr().err
    assert code != 0, f"kfcn {' '.join(argv)} succeeded"
    assert "Traceback" not in error
    lines = error.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{error}"
    assert re.search(case.match, lines[0]), lines[0]
    assert not list(out.rglob("*.partial*")), "a temporary file was left behind"
    assert not [p for p in out.rglob("*") if p.is_file()], "a file was written"
