"""Import hygiene: kfcn's Keras-level packages work on JAX and PyTorch without TensorFlow installed.

Each check runs in a fresh interpreter where TensorFlow is unimportable, as on a machine that
carries only Keras and JAX or PyTorch: a `sys.meta_path` finder answers for it with a loader
that fails (`find_spec` finds no file, `import tensorflow` raises ModuleNotFoundError).
"""

import os
import subprocess
import sys
import textwrap

import pytest

LIGHT_PACKAGES = ", ".join(
    ["kfcn", "kfcn.layers", "kfcn.models", "kfcn.losses", "kfcn.metrics", "kfcn.inference", "kfcn.analysis"]
    + ["kfcn.samples", "kfcn.data"]
)

WITHOUT_TENSORFLOW = textwrap.dedent(
    f"""
    import importlib.abc, importlib.machinery, sys

    class NoTensorFlow(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("tensorflow", "tensorflow_datasets"):
                return importlib.machinery.ModuleSpec(name, self)  # no origin: torch's probes skip it
            return None

        def create_module(self, spec):
            raise ModuleNotFoundError(f"No module named {{spec.name!r}} (hidden by the test)", name=spec.name)

        def exec_module(self, module):
            pass

    sys.meta_path.insert(0, NoTensorFlow())

    import keras
    import numpy as np

    keras.ops.convert_to_numpy(keras.ops.ones((2, 2)) + 1)  # the backend fully loaded: the baseline
    baseline = set(sys.modules)
    import {LIGHT_PACKAGES}

    # What kfcn's imports add: neither TensorFlow nor the eager extras (scipy, tqdm) that
    # only some functions need. (Keras' backends bring some of them themselves: JAX loads
    # scipy, PyTorch tqdm, so the check is against what the backend already loaded.)
    added = sorted({{m.split(".")[0] for m in set(sys.modules) - baseline}} & {{"tensorflow", "scipy", "tqdm"}})
    assert not added, f"importing kfcn loaded {{added}}"
    assert "tensorflow" not in sys.modules

    model = kfcn.models.unet((None, None, 1), num_classes=2, filters=4, depth=2)
    image = np.random.default_rng(0).integers(0, 256, (20, 27)).astype("uint8")
    probabilities = kfcn.inference.predict(model, image)
    assert probabilities.shape == (20, 27, 2), probabilities.shape
    np.testing.assert_allclose(probabilities.sum(-1), 1.0, atol=1e-5)
    tiled = kfcn.inference.predict_tiled(model, image, tile_size=16, overlap=4, progress=False)
    assert tiled.shape == (20, 27, 2), tiled.shape
    assert kfcn.analysis.receptive_field(model).required_multiple == 4
    assert kfcn.samples.shipped_model_path().is_file() and kfcn.samples.isbi2012_dir().is_dir()

    # kfcn.data's NumPy helpers work without TensorFlow; its tf.data pipelines say what they miss.
    from kfcn.data import unet_weight_map
    from kfcn.data.density import density_map
    from kfcn.data import degrade, perturb_contours, touching_ellipses, bulge_disk_galaxy
    weights = unet_weight_map(np.pad(np.ones((4, 4), "uint8"), 2))
    assert weights.shape == (8, 8) and weights.max() > 1
    assert abs(density_map(np.array([[2.0, 3.0]]), (6, 6), sigma=1.0).sum() - 1.0) < 1e-6
    for pipeline in ("folder_dataset", "random_crop_pipeline", "PairedAugmenter", "tfds_datasets"):
        try:
            getattr(kfcn.data, pipeline)
        except ModuleNotFoundError as error:
            assert "pip install tensorflow" in str(error) and pipeline in str(error), error
        else:
            raise AssertionError(f"kfcn.data.{{pipeline}} loaded without TensorFlow")
    assert "tensorflow" not in sys.modules
    print("ok")
    """
)


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_keras_level_packages_work_without_tensorflow(backend, tmp_path):
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    # Run outside the repository so that only the installed kfcn is found.
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_TENSORFLOW], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")


def test_tensorflow_packages_load_lazily_as_attributes():
    import kfcn

    assert "data" in dir(kfcn) and "export" in dir(kfcn)
    assert callable(kfcn.data.folder_dataset)
    from kfcn import data

    assert data is kfcn.data
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        kfcn.nonexistent  # noqa: B018


@pytest.mark.parametrize("first", ["kfcn", "keras"])
@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
def test_plain_keras_loads_a_kfcn_model_once_kfcn_is_imported(backend, first, tmp_path):
    """`keras.saving.load_model` finds kfcn's layers, losses and metrics without kfcn's own loader,
    whichever is imported first, and `import kfcn` alone still loads no Keras."""
    code = textwrap.dedent(
        f"""
        import sys
        import {first}
        assert "{first}" == "keras" or "keras" not in sys.modules, "import kfcn loaded Keras"
        import keras, kfcn, kfcn.samples
        model = keras.saving.load_model(kfcn.samples.shipped_model_path(), compile=True)
        print(model.name)
        """
    )
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split()[-1] == "unet_isbi"


# The modules that a script may import first (so that they, mid-import, import Keras and with it
# trigger kfcn's registration of its serialisable classes): none may leave that registration half done.
FIRST_IMPORTS = ["kfcn.targets", "kfcn.losses", "kfcn.metrics", "kfcn.layers", "kfcn.models", "kfcn.saving"]


def test_whichever_kfcn_module_imports_keras_first_every_class_is_registered(tmp_path):
    code = textwrap.dedent(
        """
        import importlib, sys, warnings
        warnings.simplefilter("error")  # kfcn warns when it could not register its classes
        importlib.import_module(sys.argv[1])
        import keras
        names = ("kfcn>InputSizeCheck", "kfcn>JaccardJ2Loss", "kfcn>PixelError")
        missing = [name for name in names if keras.saving.get_registered_object(name) is None]
        print(missing)
        """
    )
    env = {**os.environ, "KERAS_BACKEND": "tensorflow"}
    for module in FIRST_IMPORTS:
        result = subprocess.run(
            [sys.executable, "-c", code, module], env=env, cwd=tmp_path, capture_output=True, text=True
        )
        assert result.returncode == 0, (module, result.stderr[-3000:])
        assert result.stdout.split("\n")[-2] == "[]", (module, result.stdout)
