"""What the command-line tests share: folders of image/label pairs, the `kfcn train` command on them,
simulated crashes inside a run, and reading a refusal."""

import keras
import numpy as np
import pytest
from PIL import Image

from kfcn.cli import main
from kfcn.training import standard_callbacks
from tests.conftest import write_isbi_crops


def write_pairs(root, images, labels):
    """`root/images/I.png` and `root/labels/I.png` from two lists of uint8 arrays; returns `root`."""
    for kind, arrays in (("images", images), ("labels", labels)):
        (root / kind).mkdir(parents=True, exist_ok=True)
        for index, array in enumerate(arrays):
            Image.fromarray(np.asarray(array, np.uint8)).save(root / kind / f"{index}.png")
    return root


def error_of(argv, capsys):
    """stderr of `kfcn ARGV`, which must refuse (exit status 2)."""
    assert main(argv) == 2
    return capsys.readouterr().err


@pytest.fixture(scope="module")
def isbi_crops(tmp_path_factory):
    """Five 48x48 crops of ISBI slices with their 0/255 membrane masks."""
    return write_isbi_crops(tmp_path_factory.mktemp("isbi_crops"), count=5, side=48)


def train_command(data, output, *options):
    """`kfcn train` argv for a 2-filter, depth-2 U-Net on `data`'s pairs: 32-pixel crops, batches of 2,
    2 epochs of 2 steps; `options` come last, so they override these."""
    return [
        "train",
        "--images",
        str(data / "images"),
        "--labels",
        str(data / "labels"),
        "--output",
        str(output),
        "--filters",
        "2",
        "--depth",
        "2",
        "--crop",
        "32",
        "--batch",
        "2",
        "--epochs",
        "2",
        "--steps",
        "2",
        *options,
    ]


class CrashAfterEpoch(keras.callbacks.Callback):
    """Raises at the end of epoch `epoch` (counted from 1), as a killed or crashed run stops there."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epoch:
            raise RuntimeError(f"simulated crash after epoch {self.epoch}")


def add_training_callback(monkeypatch, callback):
    """Every run this test starts also runs `callback` (after the standard ones); None takes it away again."""
    import kfcn.training

    extra = [] if callback is None else [callback]
    monkeypatch.setattr(kfcn.training, "standard_callbacks", lambda *a, **k: [*standard_callbacks(*a, **k), *extra])
