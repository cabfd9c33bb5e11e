"""Test configuration: the backend comes from KERAS_BACKEND (the Makefile runs each one)."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

BACKEND = keras.backend.backend()


# Modules whose tests start processes, train, convert or export: `make test-fast` leaves them out
# (`-m "not slow"`); `make test` and CI run everything.
SLOW_MODULES = {
    "tests/test_distribute.py",
    "tests/test_examples.py",
    "tests/test_checkpoints.py",
    "tests/test_shipped_model.py",
    "tests/test_imports.py",
    "tests/test_recipes.py",
    "tests/cli/test_main.py",
    "tests/cli/test_train.py",
    "tests/cli/test_card.py",
    "tests/cli/test_pixel_rules.py",
    "tests/export/test_export.py",
    "tests/export/test_hub_export.py",
    "tests/export/test_serving.py",
    "tests/export/test_web.py",
}


def pytest_collection_modifyitems(config, items):
    root = config.rootpath
    for item in items:
        path = item.path.relative_to(root).as_posix() if item.path.is_relative_to(root) else ""
        if path in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)
        # `@pytest.mark.tensorflow_only(reason=...)`: tf.data pipelines, TFLite conversion, processes that
        # start their own backend; skipped, with the reason, when the suite runs on JAX or PyTorch.
        tensorflow_only = item.get_closest_marker("tensorflow_only")
        if tensorflow_only and BACKEND != "tensorflow":
            reason = tensorflow_only.kwargs.get("reason", "")
            item.add_marker(pytest.mark.skip(reason=f"needs the TensorFlow backend ({reason})"))


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(0)
    yield
    # Without Python's full garbage collection (free_memory=True costs ~0.3 s a test): the
    # collector still runs on its own, and every test's models are small.
    keras.backend.clear_session(free_memory=False)


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
