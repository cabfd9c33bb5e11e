"""kfcn: fully convolutional image-to-image networks for Keras 3 (TensorFlow, JAX, PyTorch)."""

__version__ = "0.1.0"

from kfcn import analysis, data, inference, layers, losses, metrics, models  # noqa: E402

__all__ = ["analysis", "data", "inference", "layers", "losses", "metrics", "models", "__version__"]
