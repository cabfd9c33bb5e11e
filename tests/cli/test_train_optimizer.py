"""`kfcn train --momentum`: SGD's momentum, refused where it means nothing; the SegNet-Basic recipe builds."""

import json

import keras
import numpy as np
import pytest
from PIL import Image

from kfcn.cli import main
from kfcn.models import build
from kfcn.recipes import recipe


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("momentum_data")
    rng = np.random.default_rng(0)
    for folder in ("images", "labels"):
        (root / folder).mkdir()
    for index in range(2):
        Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8)).save(root / "images" / f"{index}.png")
        Image.fromarray((rng.random((16, 16)) > 0.5).astype(np.uint8)).save(root / "labels" / f"{index}.png")
    return root


def command(data, output, *options):
    return [
        "train", "--images", str(data / "images"), "--labels", str(data / "labels"), "--output", str(output),
        "--filters", "2", "--depth", "1", "--crop", "16", "--batch", "1", "--epochs", "1", "--steps", "1",
        "--augment", "none", "--no-jit-compile", *options,
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--momentum", "0.9"], "--momentum is for --optimizer sgd; adam keeps its own moment estimates"),
        (["--optimizer", "sgd", "--momentum", "1.0"], "--momentum must lie in [0, 1), e.g. 0.9; got 1.0"),
        (["--optimizer", "sgd", "--momentum", "-0.1"], "--momentum must lie in [0, 1), e.g. 0.9; got -0.1"),
    ],
)
def test_momentum_is_refused_where_it_means_nothing(data, tmp_path, capsys, options, message):
    assert main(command(data, tmp_path / "run", *options)) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_sgd_trains_with_the_momentum_given_and_records_it(data, tmp_path, monkeypatch):
    made = []
    original = keras.optimizers.SGD.__init__

    def recording(self, *args, **kwargs):
        made.append(kwargs.get("momentum", 0.0))
        original(self, *args, **kwargs)

    monkeypatch.setattr(keras.optimizers.SGD, "__init__", recording)
    assert main(command(data, tmp_path / "run", "--optimizer", "sgd", "--momentum", "0.9")) == 0
    assert made == [0.9]
    assert json.loads((tmp_path / "run" / "config.json").read_text())["momentum"] == 0.9


def test_the_segnet_basic_recipe_builds_segnet_basic():
    options = recipe("camvid-segnet")
    assert (options["optimizer"], options["momentum"], options["learning_rate"]) == ("sgd", 0.9, 0.1)
    model = build(
        "segnet", (None, None, 3), options["num_classes"], filters=options["filters"], depth=options["depth"],
        **options["model_options"],
    )  # fmt: skip
    kernels = [tuple(layer.kernel.shape) for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert kernels[:8] == [(7, 7, 3, 64)] + [(7, 7, 64, 64)] * 7  # one 7x7 conv of 64 per level, mirrored
