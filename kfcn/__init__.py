"""kfcn: fully convolutional image-to-image networks for Keras 3 (TensorFlow, JAX, PyTorch).

Every subpackage loads on first use (`kfcn.models`, `from kfcn import losses`,
`import kfcn.data`), so `import kfcn` itself is instant and imports neither Keras nor
TensorFlow; the command line relies on this to keep TensorFlow's start-up log quiet.
`layers`, `models`, `losses`, `metrics`, `inference`, `analysis` and `samples` run on
every backend without TensorFlow; `data` (tf.data pipelines) and `export` need it.

Example:
>>> import kfcn
>>> model = kfcn.models.unet((64, 64, 1), num_classes=1, filters=4, depth=2)
>>> tuple(model.output.shape)
(None, 64, 64, 1)
"""

import importlib

__version__ = "0.1.0"

_BACKEND_NEUTRAL = ("analysis", "inference", "layers", "losses", "metrics", "models", "samples")
_NEEDS_TENSORFLOW = ("data", "export")
_SUBPACKAGES = (
    *_BACKEND_NEUTRAL,
    *_NEEDS_TENSORFLOW,
    "atomic",
    "evaluation",
    "image_io",
    "instances",
    "saving",
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
