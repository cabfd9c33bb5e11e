"""Loading and saving `.keras` files: safe mode, clear errors, atomic writes."""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

import keras

from kfcn.atomic import atomic_path
from kfcn.optional import import_keras_hub

_CONFIG = "config.json"
_VERBS_WITH_UNSAFE = "kfcn predict, evaluate, export, inspect, receptive-field and train"
MAX_CONFIG_BYTES = 32 * 2**20
"""The largest model description (`config.json` in a `.keras` zip) `load_model` reads: 32 MiB.

The largest keras.applications networks (EfficientNetV2L, NASNetLarge: about 1,000 layers)
describe themselves in about 1 MB; Python holds a parsed JSON file in roughly ten times its size.
"""


def load_model(path, safe_mode=True, compile=False, custom_objects=None, max_config_bytes=MAX_CONFIG_BYTES):
    """Loads a `.keras` file with Keras' safe mode, with errors that say what is wrong.

    kfcn's own layers are registered on import, so kfcn models load without
    `custom_objects`. Safe mode refuses to deserialise code (a `Lambda` layer holds
    Python bytecode that runs on load): pass `safe_mode=False` only for files you trust
    (`--unsafe` on the command line). Keras never imports a function or class that is
    neither its own nor registered (`keras.saving.register_keras_serializable`), safe
    mode or not: a file naming `os.system` is refused, naming it and the layer that uses it.

    The model description is read whole into memory, so its size is checked first, from
    the zip's directory: a `config.json` over `max_config_bytes` (32 MiB by default,
    `MAX_CONFIG_BYTES`, some 30 times the largest keras.applications model) is refused
    before a byte of it is read. Python's `zipfile` reads no more than that declared size.

    Args:
        path: a `.keras` file.
        safe_mode: refuse `Lambda` layers and other arbitrary code (Keras' default).
        compile: also restore the optimizer, loss and metrics.
        custom_objects: `{name: function or class}` that the file names and that are
            not registered with Keras (your own activation, say), as in
            `keras.saving.load_model`.
        max_config_bytes: the largest `config.json` read, in bytes.

    Raises:
        ValueError: a missing, truncated, oversized or non-`.keras` file, one that
            holds code (needs `safe_mode=False`) or names functions Keras will not
            import, named with the fix.

    Example:
    >>> import tempfile, os
    >>> from kfcn.models import plain_cnn
    >>> path = os.path.join(tempfile.mkdtemp(), "m.keras")
    >>> save_model(plain_cnn((None, None, 1), num_layers=2, filters=2), path)
    >>> load_model(path).name
    'plain_cnn'
    >>> load_model(path, max_config_bytes=100)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: ...m.keras: its model description (config.json) is ... bytes, over the limit of 100 bytes ...
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
    _check_config_size(path, max_config_bytes)
    _register_keras_hub_if_named(path)
    try:
        return keras.saving.load_model(path, custom_objects=custom_objects, compile=compile, safe_mode=safe_mode)
    except (ValueError, TypeError) as error:
        explained = _explain(path, error, safe_mode)
        if explained is not None:
            raise explained from None
        raise ValueError(f"Cannot load {path}: {_keras_reason(error)}") from error
    except (zipfile.BadZipFile, KeyError, OSError) as error:
        raise ValueError(f"{path} is not a valid .keras file ({error}). Copy or save it again.") from error


def _register_keras_hub_if_named(path):
    """Imports keras-hub when the file names its layers (a keras-hub encoder): they register on its import."""
    config = _read_config(path)
    if not any(str(node.get("registered_name", "")).startswith("keras_hub>") for node, _ in _walk(config)):
        return
    try:
        import_keras_hub()
    except ImportError as error:
        raise ValueError(f"{path} holds keras-hub layers (a keras-hub encoder): {error}") from None


def _check_config_size(path, limit):
    """Refuses a `.keras` zip without a config.json, or with one over `limit` bytes, from its directory alone."""
    try:
        with zipfile.ZipFile(path) as archive:
            size = archive.getinfo(_CONFIG).file_size
    except KeyError:
        raise ValueError(
            f"{path} is not a valid .keras file: the zip holds no {_CONFIG} (the model description). Copy or save "
            "it again."
        ) from None
    except (zipfile.BadZipFile, OSError) as error:
        raise ValueError(f"{path} is not a valid .keras file ({error}). Copy or save it again.") from error
    if size > limit:
        mebibytes = f" ({size / 2**20:.1f} MiB)" if size >= 2**20 else ""
        raise ValueError(
            f"{path}: its model description ({_CONFIG}) is {size:,} bytes{mebibytes}, over the limit of "
            f"{limit:,} bytes that kfcn reads into memory (the largest keras.applications model needs about 1 MB): "
            "the file is damaged or was made to exhaust memory. If you trust it, pass a larger max_config_bytes "
            "to kfcn.saving.load_model."
        )


def _keras_reason(error):
    """The informative part of a Keras loading error (its deserialisation errors quote the whole config first)."""
    text = str(error).split("Exception encountered:")[-1].strip()
    return " ".join(text.split("Full object config:")[0].split())


def _explain(path, error, safe_mode):
    """kfcn's own ValueError for a file Keras refuses for safety, naming what and where; None for other errors."""
    reason = _keras_reason(error)
    config = _read_config(path)
    if safe_mode and ("lambda" in reason.lower() or "safe_mode" in reason):
        layers = sorted({layer for node, layer in _walk(config) if node.get("class_name") == "__lambda__" and layer})
        where = f" in layer {', '.join(layers)}" if layers else ""
        return ValueError(
            f"{path} holds Python code (the bytecode of a lambda{where}), which runs when the model is loaded: "
            "the file may execute arbitrary code, so Keras' safe mode refuses it. If you trust the file, load it "
            "with kfcn.saving.load_model(path, safe_mode=False) in Python, or pass --unsafe on the command line "
            f"({_VERBS_WITH_UNSAFE} take it)."
        )
    unsafe_api = re.search(r"Cannot deserialize `([^`]+)` because it is not a modeling function", reason)
    if unsafe_api:
        name = unsafe_api.group(1)
        return ValueError(
            f"{path} names {name}{_where(config, name.rsplit('.', 1)[-1])}, which is not part of a model: Keras "
            "refuses to call it while loading, in any mode (a file that names it tries to change how Keras "
            "loads code). Do not use this file; save the model again from its code."
        )
    unknown = re.search(r"Could not locate (function|class) '([^']+)'", reason) or re.search(
        r"Could not deserialize '([^']+)' because it is not a KerasSaveable", reason
    )
    if unknown:
        kind, name = unknown.groups() if unknown.re.groups == 2 else ("class", unknown.group(1))
        module, layer = _reference(config, name.rsplit(".", 1)[-1])
        full = f"{module}.{name}" if module and module != "builtins" and not name.startswith(module) else name
        return ValueError(
            f"{path} names the {kind} {full}{f' in layer {layer}' if layer else ''}, which is neither part of "
            "Keras nor registered with keras.saving.register_keras_serializable, so Keras will not import it, "
            "with or without safe_mode: a file can name any Python function (os.system, say) to run code when "
            f"loaded. If the file is yours and {name} is your own {kind}, import the module that registers it "
            f"before loading, or pass custom_objects={{{name!r}: {name}}} to kfcn.saving.load_model."
        )
    return None


def _read_config(path):
    """The parsed config.json of a `.keras` zip (its size already checked), or None."""
    try:
        with zipfile.ZipFile(path) as archive:
            return json.loads(archive.read(_CONFIG))
    except (zipfile.BadZipFile, KeyError, OSError, ValueError):
        return None


def _walk(node, layer=None):
    """Every dict in a Keras config, with the layer it belongs to ("'name' (ClassName)")."""
    if isinstance(node, dict):
        inner = node.get("config")
        if "class_name" in node and isinstance(inner, dict) and isinstance(inner.get("name"), str):
            layer = f"{inner['name']!r} ({node['class_name']})"
        yield node, layer
        for value in node.values():
            yield from _walk(value, layer)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item, layer)


def _reference(config, name):
    """(module, layer) of the config entry that names the function or class `name`."""
    for node, layer in _walk(config):
        names = node.get("class_name"), node.get("config") if node.get("class_name") == "function" else None
        if name in names:
            return node.get("module"), layer
    return None, None


def _where(config, name):
    layer = _reference(config, name)[1]
    return f" in layer {layer}" if layer else ""


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
