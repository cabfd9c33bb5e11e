"""What the command-line tests share: a folder of image/label pairs, and reading a refusal."""

import numpy as np
from PIL import Image

from kfcn.cli import main


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
