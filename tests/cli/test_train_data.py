"""`kfcn train`'s data sources: folders of class-index labels with an ignored class, and TFDS datasets."""

import json

import numpy as np
import pytest
from PIL import Image

from kfcn.cli import main
from kfcn.saving import load_model

pytestmark = pytest.mark.tensorflow_only(reason="tf.data pipelines")


def test_class_index_labels_with_an_ignored_class(tmp_path, rng):
    for kind in ("images", "labels"):
        (tmp_path / kind).mkdir()
    for index in range(3):
        Image.fromarray(rng.integers(0, 256, (32, 32), dtype=np.uint8)).save(tmp_path / "images" / f"{index}.png")
        Image.fromarray(rng.integers(0, 4, (32, 32), dtype=np.uint8)).save(tmp_path / "labels" / f"{index}.png")
    run = tmp_path / "run"
    argv = ["train", "--images", str(tmp_path / "images"), "--labels", str(tmp_path / "labels"), "--output", str(run)]
    argv += ["--label-mode", "index", "--num-classes", "3", "--ignore-class", "3", "--model", "segnet"]
    argv += ["--filters", "2", "--depth", "2", "--crop", "16", "--epochs", "1", "--steps", "1", "--loss", "ce+dice"]
    assert main(argv) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["monitor"] == "val_mean_iou" and 0 <= summary["best"]["val_mean_iou"] <= 1
    assert load_model(run / "model.keras").output.shape[-1] == 3


def test_a_tfds_dataset_trains_like_a_folder(tmp_path):
    run = tmp_path / "run"
    argv = ["train", "--tfds", "isbi2012_membranes", "--tfds-dir", str(tmp_path / "tfds"), "--output", str(run)]
    argv += ["--filters", "2", "--depth", "2", "--crop", "32", "--epochs", "1", "--steps", "1", "--augment", "none"]
    assert main(argv) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["monitor"] == "val_pixel_error" and 0 <= summary["best"]["val_pixel_error"] <= 1
    # 25 shipped slices, the last 20 % (5) held out for validation.
