"""ONNX export of the same padded serving graph, through tf2onnx (what Keras' own ONNX export uses)."""

from __future__ import annotations

from pathlib import Path

from kfcn.atomic import atomic_path
from kfcn.export.backend import on_tensorflow, run_in_tensorflow_child
from kfcn.export.contract import checked_metadata, exportable, model_card_path, serving_contract, write_model_card


def onnx(model, path, overwrite=True, opset=None, metadata=None):
    """Exports `model` as an ONNX file with the SavedModel's contract: raw pixels of any size in.

    The graph is the one `saved_model` exports (the model's own scaling, mirror
    padding to the network's stride, output cropped back), converted by tf2onnx,
    the converter behind Keras' `model.export(format="onnx")` on TensorFlow. Input
    and output names are the contract's (`pixels_0_255` → `probabilities`); height
    and width are dynamic. Needs `pip install "kfcn[onnx]"` (tf2onnx, onnx); run the
    file with onnxruntime.

    What does not work: valid-padding U-Nets are refused (tf2onnx mistranslates
    their run-time skip crops; use `saved_model` or `tflite`). tf2onnx traces a
    TensorFlow graph, so the export always runs under the TensorFlow backend (a JAX
    or PyTorch model goes through a TensorFlow child process, as for `saved_model`);
    Keras' torch-backend ONNX path (`torch.onnx`) is not used.

    Model card: `<file name>.kfcn_model_card.json` beside the file, as for `tflite`;
    the same JSON is also embedded in the file's metadata (`metadata_props`, key
    `kfcn_model_card`; onnxruntime: `session.get_modelmeta().custom_metadata_map`).

    Args:
        model: a functional or Sequential Keras image-to-image model.
        path: the `.onnx` file to write (atomically).
        overwrite: replace an existing file.
        opset: ONNX opset (default: tf2onnx's).
        metadata: a dict of JSON values stored in the model card (refused before
            anything is written if JSON cannot hold it).

    Returns:
        A dict report: path, bytes, input and output names, the model card's path.

    Example:
    >>> import tempfile, os
    >>> from kfcn.models import plain_cnn
    >>> report = onnx(plain_cnn((None, None, 1), num_layers=2, filters=2), os.path.join(tempfile.mkdtemp(), "m.onnx"))
    >>> report["input"], report["output"]
    ('pixels_0_255', 'values')
    """
    from kfcn.layers import CropToMatch

    metadata = checked_metadata(metadata)
    model = exportable(model)
    contract = serving_contract(model)
    if any(isinstance(layer, CropToMatch) for layer in model._flatten_layers()):
        raise ValueError(
            "ONNX export of a valid-padding U-Net is refused: tf2onnx mistranslates its run-time skip crops "
            "(CropToMatch), giving outputs off by ~1e-2 in kfcn's tests. Export it with saved_model or tflite, "
            "which are exact."
        )
    path = Path(path)
    if path.suffix != ".onnx":
        raise ValueError(f"ONNX files end in .onnx; got {path}.")
    card_path = model_card_path(path)
    for existing in (path, card_path):
        if existing.exists() and not overwrite:
            raise FileExistsError(f"{existing} exists; pass overwrite=True (--overwrite) to replace it.")
    try:
        import tf2onnx  # noqa: F401
    except ImportError:
        raise ValueError('ONNX export needs tf2onnx and onnx: pip install "kfcn[onnx]".') from None
    if not on_tensorflow():
        kwargs = {"path": str(path), "overwrite": overwrite, "opset": opset, "metadata": metadata}
        return run_in_tensorflow_child(model, "onnx", kwargs)
    import json

    import onnx as onnx_format
    import tf2onnx

    from kfcn.export.serving import serving_function

    serve = serving_function(model, contract)
    proto, _ = tf2onnx.convert.from_function(serve, input_signature=serve.input_signature, opset=opset)
    card = contract.model_card(model, "onnx", metadata)
    onnx_format.helper.set_model_props(proto, {"kfcn_model_card": json.dumps(card, allow_nan=False)})
    with atomic_path(path, overwrite=overwrite) as temporary, atomic_path(card_path, overwrite=overwrite) as card_file:
        onnx_format.save(proto, str(temporary))
        write_model_card(card_file, card)
    size = path.stat().st_size
    report = {"path": str(path), "bytes": size, "input": contract.input_name, "output": contract.output_name}
    return {**report, "model_card": str(card_path)}
