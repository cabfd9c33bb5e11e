"""kfcn: fully convolutional image-to-image networks for Keras 3 (TensorFlow, JAX, PyTorch)."""

__version__ = "0.1.0"

from kfcn import layers, losses, metrics  # noqa: E402

__all__ = ["layers", "losses", "metrics", "__version__"]
