"""SavedModel export in the layout TF Serving reads: `export_dir/<version>/saved_model.pb`."""

from __future__ import annotations

from pathlib import Path

from kfcn.arguments import check_integer
from kfcn.atomic import atomic_path, check_writable, clean_partials
from kfcn.export.backend import on_tensorflow, run_in_tensorflow_child
from kfcn.export.contract import MODEL_CARD_NAME, checked_metadata, exportable, serving_contract, write_model_card


def next_version(export_dir):
    """The next free TF Serving version number in `export_dir` (1 when there is none).

    Example:
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp()); (folder / "3").mkdir()
    >>> next_version(folder)
    4
    """
    folder = Path(export_dir)
    numbers = [int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit()] if folder.is_dir() else []
    return max(numbers, default=0) + 1


def saved_model(model, export_dir, version=None, overwrite=False, metadata=None):
    """Exports `model` for TF Serving: `export_dir/<version>/` with `saved_model.pb`, `variables/`
    and `kfcn_model_card.json`.

    The `serving_default` signature takes a float32 batch `(batch, height, width,
    channels)` of **raw pixel values** of any height and width; its input is named
    after the contract (`pixels_0_255` for an 8-bit model). Inside the graph the
    image is mirror-padded to a size the network takes (its total stride, and the
    valid-padding margin on every side), scaled by the model's own `input_scaling`
    layer, and the output is cropped back to the image's size. Its output is named
    `probabilities` (sigmoid/softmax heads) or `values` (linear heads). The folder
    loads with plain TensorFlow (`tf.saved_model.load`), without kfcn.

    Every request is checked inside the graph before the network runs (rank 4, the
    channels, no empty axis, finite values in the pixel range; see
    `kfcn.export.serving.checked_request`): a malformed request is answered with an
    `INVALID_ARGUMENT` error that names the problem, and the server goes on. The
    signature therefore declares the input's rank open; the model card states the shape.

    Clients that hold the pixels as integers send them so: an 8-bit model (`input_range`
    within [0, 255]) has a second signature `serving_uint8` taking uint8, a 16-bit one
    (`input_range` above 255) `serving_uint16` taking uint16, with the same input and
    output names. It casts to float32 inside the graph (exactly) and takes the same checks;
    its answers equal `serving_default`'s for the same pixels. A model without
    `input_range` has `serving_default` only. The model card lists the signatures.

    Backends: under TensorFlow the model is traced directly; a JAX or PyTorch model
    is saved as `.keras` and exported by a child process under the TensorFlow
    backend (same weights, same layout).

    The export is atomic: it is written under a temporary name in `export_dir` and
    renamed into place when complete; an existing version is never replaced unless
    `overwrite=True`.

    Args:
        model: a functional or Sequential Keras image-to-image model with one image input.
        export_dir: the model's base path for TF Serving (`--model_base_path`).
        version: a positive int; None takes the next free number.
        overwrite: replace an existing version.
        metadata: a dict of JSON values stored in the model card (training data,
            command, metrics); anything JSON cannot hold (NumPy values, sets, NaN) is
            refused before anything is written.

    Returns:
        The version folder as a `Path`.

    Example:
    >>> import tempfile
    >>> import tensorflow as tf
    >>> from kfcn.models import unet
    >>> model = unet((None, None, 1), num_classes=1, filters=2, depth=2)
    >>> folder = saved_model(model, tempfile.mkdtemp())
    >>> folder.name
    '1'
    >>> serve = tf.saved_model.load(str(folder)).signatures["serving_default"]
    >>> tuple(serve(pixels_0_255=tf.zeros((1, 30, 17, 1)))["probabilities"].shape)
    (1, 30, 17, 1)
    >>> serve_uint8 = tf.saved_model.load(str(folder)).signatures["serving_uint8"]
    >>> tuple(serve_uint8(pixels_0_255=tf.zeros((1, 30, 17, 1), tf.uint8))["probabilities"].shape)
    (1, 30, 17, 1)
    """
    if version is not None:
        version = check_integer(
            "version", version, minimum=1, meaning="TF Serving's version folder", accepted="a positive int or None"
        )
    metadata = checked_metadata(metadata)
    model = exportable(model)
    contract = serving_contract(model)  # checks the model before any file is touched
    export_dir = check_writable(export_dir, "export folder")
    clean_partials(export_dir)
    version = next_version(export_dir) if version is None else version
    target = export_dir / str(version)
    if target.exists() and not overwrite:
        raise FileExistsError(
            f"Version {version} already exists in {export_dir}; pass overwrite=True (--overwrite) to replace it, "
            "or version=None for the next free number."
        )
    if not on_tensorflow():
        kwargs = {"export_dir": str(export_dir), "version": version, "overwrite": overwrite, "metadata": metadata}
        return Path(run_in_tensorflow_child(model, "saved_model", kwargs))
    from kfcn.export.serving import serving_function

    signatures = serving_signatures(contract)
    endpoints = {name: serving_function(model, contract, checked=True, input_dtype=d) for name, d in signatures.items()}
    with atomic_path(target, overwrite=overwrite) as temporary:
        write_saved_model(model, temporary, endpoints)
        card = contract.model_card(model, "saved_model", metadata)
        card["serving"] = {"signature": "serving_default", "signatures": signatures, "version": version}
        write_model_card(temporary / MODEL_CARD_NAME, card)
    return target


def serving_signatures(contract):
    """`{signature name: input dtype}` of the SavedModel: float32 `serving_default`, and
    `serving_uint8` or `serving_uint16` for a model whose raw pixels that type holds.

    Example:
    >>> from kfcn.models import plain_cnn
    >>> serving_signatures(serving_contract(plain_cnn((None, None, 1), num_layers=1)))
    {'serving_default': 'float32', 'serving_uint8': 'uint8'}
    """
    signatures = {"serving_default": "float32"}
    if contract.pixel_dtype is not None:
        signatures[f"serving_{contract.pixel_dtype}"] = contract.pixel_dtype
    return signatures


def write_saved_model(model, folder, endpoints):
    """Writes `model` as a SavedModel to `folder` with `endpoints` (`{signature name: tf.function}`)."""
    import keras
    import tensorflow as tf

    archive = keras.export.ExportArchive()
    archive.track(model)
    try:
        for name, function in endpoints.items():
            archive.add_endpoint(name, function)
    except tf.errors.OperatorNotAllowedInGraphError as error:
        raise ValueError(
            f"{model.name} cannot be exported for images of any size: one of its layers decides in Python from "
            f"the input's size ({str(error).split('.')[0].strip()}), which a SavedModel of free height and width "
            "does not know. Export it as TFLite with a fixed input_shape=(height, width) (kfcn export --format "
            "tflite --input-size H W), or build the model for a fixed size."
        ) from None
    _each_variable_once_in_model_order(archive, model)
    archive.write_out(str(folder), verbose=False)


def _each_variable_once_in_model_order(archive, model):
    """Makes `archive` save each variable once, and in the model's own order.

    Once: `ExportArchive.track` lists the model's `keras.Variable` wrappers, and the endpoints capture the
    `tf.Variable`s they wrap, which Keras lists again as `_all_variables`; two objects per weight, so
    TensorFlow's checkpoint (which merges only the same object) wrote every weight twice and a served model
    held two copies in memory (keras-team/keras#23553, open). The tracked collections are given the wrapped
    `tf.Variable`s, the very objects the endpoints capture: the variables file is then the weights once.

    In order: `_all_variables` lists them in the order TensorFlow's function graphs watched them, a set
    ordered by object ids, so each export numbered them differently; sorted by the model's order, the same
    model's variables file comes out the same bytes each export (a committed SavedModel re-exported unchanged
    then adds nothing to git).

    Both act on Keras' private `_filter_and_track_resources` (run by `write_out`), after it. If a later Keras
    renames it, the export stays correct, only larger and in a varying byte order again (`tests/export/
    test_export.py` then fails).
    """
    import tensorflow as tf

    build = getattr(archive, "_filter_and_track_resources", None)
    if build is None:
        return
    rank = {}
    for index, variable in enumerate(model.variables):
        rank.setdefault(id(variable), index)
        rank.setdefault(id(getattr(variable, "value", variable)), index)  # the backend variable it wraps

    def wrapped(variable):  # the tf.Variable a keras.Variable wraps: the object the endpoints capture
        value = getattr(variable, "value", None)
        return value if isinstance(value, tf.Variable) else variable

    def build_once_in_order():
        build()
        trackable = archive._tf_trackable
        for collection in ("variables", "trainable_variables", "non_trainable_variables"):
            tracked = getattr(trackable, collection, None)
            if tracked is not None:
                setattr(trackable, collection, [wrapped(variable) for variable in tracked])
        tracked = getattr(trackable, "_all_variables", None)
        if tracked is not None:
            trackable._all_variables = sorted(tracked, key=lambda v: rank.get(id(v), len(rank)))

    archive._filter_and_track_resources = build_once_in_order
