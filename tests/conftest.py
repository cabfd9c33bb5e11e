"""Test configuration: the backend comes from KERAS_BACKEND (the Makefile runs each one)."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

BACKEND = keras.backend.backend()
only_tensorflow = pytest.mark.skipif(BACKEND != "tensorflow", reason="needs the TensorFlow backend")


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(0)
    yield
    keras.backend.clear_session()


def write_isbi_crops(folder, count, side):
    """`folder/images` and `folder/labels` with the top-left side x side crops of the first `count`
    shipped ISBI slices and their 0/255 masks, named s0.png, s1.png, ...; returns `folder`."""
    from PIL import Image

    from kfcn.samples import isbi2012_dir

    for kind in ("images", "labels"):
        (folder / kind).mkdir(parents=True, exist_ok=True)
        for index in range(count):
            array = np.asarray(Image.open(isbi2012_dir() / kind / f"slice_{index:02d}.png"))[:side, :side]
            Image.fromarray(array).save(folder / kind / f"s{index}.png")
    return folder
