"""kfcn: fully convolutional image-to-image networks for Keras 3 (TensorFlow, JAX, PyTorch).

`import kfcn` loads only Keras-level code: `layers`, `models`, `losses`, `metrics`,
`inference`, `analysis` and `samples` run on every backend without TensorFlow. The
TensorFlow-based `data` (tf.data pipelines) and `export` load on first use
(`kfcn.data`, `from kfcn import data`, `import kfcn.data`).
"""

import importlib

__version__ = "0.1.0"

from kfcn import analysis, inference, layers, losses, metrics, models, samples  # noqa: E402

_LAZY_SUBPACKAGES = ("data", "export")


def __getattr__(name):
    # PEP 562: kfcn.data and kfcn.export import TensorFlow, so they load only when first used.
    if name in _LAZY_SUBPACKAGES:
        return importlib.import_module(f"kfcn.{name}")
    raise AttributeError(f"module 'kfcn' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY_SUBPACKAGES))


# `data` and `export` stay out of __all__ so that `from kfcn import *` does not import TensorFlow.
__all__ = [
    "analysis",
    "inference",
    "layers",
    "losses",
    "metrics",
    "models",
    "samples",
    "__version__",
]
