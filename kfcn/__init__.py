"""kfcn: fully convolutional image-to-image networks for Keras 3 (TensorFlow, JAX, PyTorch).

Every subpackage loads on first use (`kfcn.models`, `from kfcn import losses`,
`import kfcn.data`), so `import kfcn` itself is instant and imports neither Keras nor
TensorFlow; the command line relies on this to keep TensorFlow's start-up log quiet.
`layers`, `models`, `losses`, `metrics`, `inference`, `analysis` and `samples` run on
every backend without TensorFlow, and so do `data`'s NumPy helpers (weight and density
maps, synthetic images); `data`'s tf.data pipelines and `export` need it.
Once Keras is imported too (before or after kfcn), kfcn's layers, losses and metrics
are registered with it, so plain `keras.saving.load_model` loads kfcn models.

Example:
>>> import kfcn
>>> model = kfcn.models.unet((64, 64, 1), num_classes=1, filters=4, depth=2)
>>> tuple(model.output.shape)
(None, 64, 64, 1)
"""

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

__version__ = "0.1.0"

# The modules that register kfcn's serialisable classes with Keras. Each imports only Keras and
# leaf modules, so that whichever kfcn module first imports Keras (and so triggers the registration
# mid-import) is never needed whole by another: kfcn.models, which imports kfcn.layers, is not here.
_SERIALIZABLE = ("kfcn.layers", "kfcn.losses", "kfcn.metrics", "kfcn.initializers")

_BACKEND_NEUTRAL = ("analysis", "inference", "layers", "losses", "metrics", "models", "samples")
_NEEDS_TENSORFLOW = ("data", "export")
_SUBPACKAGES = (
    *_BACKEND_NEUTRAL,
    *_NEEDS_TENSORFLOW,
    "arguments",
    "atomic",
    "batch_norm",
    "evaluation",
    "image_io",
    "initializers",
    "instances",
    "saving",
    "targets",
    "training",
)


def __getattr__(name):
    # PEP 562: a subpackage is imported when first used.
    if name in _SUBPACKAGES:
        return importlib.import_module(f"kfcn.{name}")
    raise AttributeError(f"module 'kfcn' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_SUBPACKAGES))


# `from kfcn import *` gives the backend-neutral subpackages (not the TensorFlow-based ones).
__all__ = [*_BACKEND_NEUTRAL, "__version__"]


def _register_with_keras():
    """Registers kfcn's layers, losses, metrics and initializers, so that plain
    `keras.saving.load_model` loads kfcn models once `kfcn` is imported."""
    try:
        for name in _SERIALIZABLE:
            importlib.import_module(name)
    except Exception as error:  # never break `import keras` for the user
        warnings.warn(f"kfcn could not register its layers with Keras: {error}", stacklevel=2)


class _AfterKerasImport(importlib.abc.MetaPathFinder):
    """Imports `keras` and `tensorflow`, when first imported after kfcn, without the backend's C++
    start-up log (`kfcn.startup`), and runs `_register_with_keras` right after `keras`. Neither is
    imported here: `import kfcn` stays instant, and `kfcn --help` never loads Keras."""

    _QUIETED = ("keras", "tensorflow")

    def __init__(self):
        self.pending = set(self._QUIETED)

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in self.pending:
            return None
        self.pending.discard(fullname)
        if "keras" not in self.pending and self in sys.meta_path:
            sys.meta_path.remove(self)  # done once keras is in (with the backend it imports)
        spec = _find_spec_without(self, fullname)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        execute = spec.loader.exec_module

        def execute_quietly(module):
            from kfcn.startup import quiet_startup

            with quiet_startup():
                execute(module)
            if fullname == "keras":
                _register_with_keras()

        spec.loader.exec_module = execute_quietly
        return spec


def _find_spec_without(finder, fullname):
    """The spec the other finders give (this finder may still be on `sys.meta_path`)."""
    for other in sys.meta_path:
        if other is finder or not hasattr(other, "find_spec"):
            continue
        spec = other.find_spec(fullname, None)
        if spec is not None:
            return spec
    return None


if "keras" in sys.modules:
    _register_with_keras()
elif not any(isinstance(finder, _AfterKerasImport) for finder in sys.meta_path):
    sys.meta_path.insert(0, _AfterKerasImport())
