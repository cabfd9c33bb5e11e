"""Loading and saving `.keras` files: safe mode, clear errors, atomic writes."""

from __future__ import annotations

import zipfile
from pathlib import Path

import keras

from kfcn.atomic import atomic_path


def load_model(path, safe_mode=True, compile=False):
    """Loads a `.keras` file with Keras' safe mode, with errors that say what is wrong.

    kfcn's own layers are registered on import, so kfcn models load without
    `custom_objects`. Safe mode refuses to deserialise code (a `Lambda` layer holds
    Python bytecode that runs on load): pass `safe_mode=False` only for files you trust.

    Args:
        path: a `.keras` file.
        safe_mode: refuse `Lambda` layers and other arbitrary code (Keras' default).
        compile: also restore the optimizer, loss and metrics.

    Raises:
        ValueError: a missing, truncated or non-`.keras` file, or one that needs
            `safe_mode=False`, named with the fix.

    Example:
    >>> import tempfile, os
    >>> from kfcn.models import plain_cnn
    >>> path = os.path.join(tempfile.mkdtemp(), "m.keras")
    >>> save_model(plain_cnn((None, None, 1), num_layers=2, filters=2), path)
    >>> load_model(path).name
    'plain_cnn'
    """
    import kfcn.layers  # noqa: F401  registers kfcn's layers for deserialisation

    path = Path(path)
    if not path.exists():
        raise ValueError(f"Model file {path} does not exist.")
    if path.is_dir():
        raise ValueError(
            f"{path} is a folder; kfcn loads `.keras` files. (A SavedModel folder is for TF Serving: load it "
            "with tf.saved_model.load.)"
        )
    if path.suffix != ".keras":
        raise ValueError(f"{path} is not a `.keras` file; kfcn models are saved as `.keras` (Keras 3 format).")
    if not zipfile.is_zipfile(path):
        raise ValueError(
            f"{path} is not a valid .keras file (it is not a complete zip archive: truncated or corrupt). "
            "Copy or save it again."
        )
    try:
        return keras.saving.load_model(path, safe_mode=safe_mode, compile=compile)
    except ValueError as error:
        if "safe_mode" in str(error) or "Lambda" in str(error):
            raise ValueError(
                f"{path} contains code (a Lambda layer) that Keras' safe mode will not run on load. If you trust "
                "the file, load it with safe_mode=False (`kfcn ... --unsafe` on the command line)."
            ) from None
        raise ValueError(f"Cannot load {path}: {error}") from error
    except (zipfile.BadZipFile, KeyError, OSError) as error:
        raise ValueError(f"{path} is not a valid .keras file ({error}). Copy or save it again.") from error


def save_model(model, path, include_optimizer=False, overwrite=True):
    """Saves a model as `.keras`, atomically, by default without optimizer state.

    Without the optimizer a file is about a third of the size and holds what
    inference and export need; keep `include_optimizer=True` to resume training.

    Args:
        model: a Keras model.
        path: a `.keras` path.
        include_optimizer: keep the compiled optimizer state.
        overwrite: replace an existing file.

    Example:
    >>> import tempfile, os
    >>> from kfcn.models import plain_cnn
    >>> path = os.path.join(tempfile.mkdtemp(), "m.keras")
    >>> save_model(plain_cnn((None, None, 1), num_layers=2, filters=2), path)
    >>> os.path.getsize(path) > 0
    True
    """
    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"Keras 3 saves models as `.keras` files; got {path}.")
    if not include_optimizer and getattr(model, "optimizer", None) is not None:
        inference_model = model.__class__.from_config(model.get_config())
        inference_model.set_weights(model.get_weights())
        model = inference_model
    with atomic_path(path, overwrite=overwrite) as temporary:
        model.save(temporary)
