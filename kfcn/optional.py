"""Optional dependencies, imported only where used, with the install command in the error."""

from __future__ import annotations

KERAS_HUB_INSTALL = 'pip install "kfcn[hub]" (or pip install keras-hub)'


def import_keras_hub():
    """keras_hub, or an ImportError naming the install command (keras-hub is the `hub` extra).

    Example:
    >>> import_keras_hub().__name__  # doctest: +SKIP
    'keras_hub'
    """
    try:
        import keras_hub
    except ImportError as error:
        raise ImportError(f"keras-hub encoders need the keras-hub package: {KERAS_HUB_INSTALL}.") from error
    return keras_hub
