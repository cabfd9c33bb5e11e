"""The pixel-value and channel rules through the command line (issue 25 §2): a model's input range comes
from its training files' bit depth, and grayscale <-> RGB conversions are said once per run."""

import numpy as np
import pytest
import tifffile
from PIL import Image

import kfcn.data
from kfcn.cli import main
from kfcn.inference import input_range
from kfcn.models import unet
from kfcn.saving import load_model, save_model

pytestmark = [
    pytest.mark.tensorflow_only(reason="tf.data pipelines"),
    pytest.mark.slow,  # trains
]


def _train_argv(images, labels, output, *options):
    return [
        "train",
        *("--images", str(images), "--labels", str(labels), "--output", str(output)),
        *("--filters", "2", "--depth", "2", "--crop", "16", "--batch", "1", "--epochs", "1", "--steps", "1"),
        *("--val-fraction", "0", *options),
    ]


def _folders(tmp_path, write_image, count=2):
    rng = np.random.default_rng(0)
    for folder in ("images", "labels"):
        (tmp_path / folder).mkdir()
    for index in range(count):
        write_image(tmp_path / "images", f"s{index}", rng)
        label = (255 * (rng.random((24, 20)) > 0.5)).astype(np.uint8)
        Image.fromarray(label).save(tmp_path / "labels" / f"s{index}.png")
    return tmp_path / "images", tmp_path / "labels"


def _spy_on_the_crop_pipeline(monkeypatch):
    seen = {}
    real = kfcn.data.random_crop_pipeline

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(kfcn.data, "random_crop_pipeline", spy)
    return seen


def test_sixteen_bit_files_train_a_sixteen_bit_model_that_predicts_them(tmp_path, monkeypatch, capsys):
    def sixteen_bit(folder, stem, rng):
        tifffile.imwrite(folder / f"{stem}.tif", rng.integers(0, 65536, (24, 20), dtype=np.uint16))

    images, labels = _folders(tmp_path, sixteen_bit)
    seen = _spy_on_the_crop_pipeline(monkeypatch)
    assert main(_train_argv(images, labels, tmp_path / "run", "--augment", "intensity")) == 0
    assert input_range(load_model(tmp_path / "run" / "model.keras")) == (0.0, 65535.0)
    assert tuple(seen["value_range"]) == (0.0, 65535.0)  # intensity augmentation scales with the range
    capsys.readouterr()
    argv = ["predict", str(images), "--model", str(tmp_path / "run" / "model.keras"), "--output", str(tmp_path / "p")]
    assert main(argv) == 0, capsys.readouterr().err  # the training images themselves
    assert len(list((tmp_path / "p").glob("s?.png"))) == 2


def test_float_files_train_with_an_explicit_range(tmp_path, monkeypatch):
    def scaled(folder, stem, rng):
        tifffile.imwrite(folder / f"{stem}.tif", rng.random((24, 20), dtype=np.float32))

    images, labels = _folders(tmp_path, scaled)
    seen = _spy_on_the_crop_pipeline(monkeypatch)
    assert main(_train_argv(images, labels, tmp_path / "run", "--input-range", "0,1", "--augment", "full")) == 0
    assert input_range(load_model(tmp_path / "run" / "model.keras")) == (0.0, 1.0)
    assert tuple(seen["value_range"]) == (0.0, 1.0)


def test_rgb_into_a_gray_model_is_converted_and_said_once(tmp_path, capsys):
    def rgb(folder, stem, rng):
        Image.fromarray(rng.integers(0, 256, (24, 20, 3), dtype=np.uint8)).save(folder / f"{stem}.png")

    images, labels = _folders(tmp_path, rgb, count=3)
    model = tmp_path / "gray.keras"
    save_model(unet((None, None, 1), num_classes=1, filters=2, depth=2), model)
    capsys.readouterr()
    assert main(["predict", str(images), "--model", str(model), "--output", str(tmp_path / "p")]) == 0
    predicted = capsys.readouterr()
    assert "wrote 3 image(s)" in predicted.out
    note = "note: converted 3 image(s) from RGB to grayscale (luma: 0.299 R + 0.587 G + 0.114 B), e.g. s0.png"
    assert predicted.err.strip().splitlines() == [f"kfcn predict: {note}"]
    assert main(["evaluate", str(images), str(labels), "--model", str(model)]) == 0
    assert capsys.readouterr().err.strip().splitlines() == [f"kfcn evaluate: {note}"]
