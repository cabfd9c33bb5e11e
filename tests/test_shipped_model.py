"""The shipped models reproduce the held-out figures their model cards and reports state."""

import importlib
import json
import sys
from pathlib import Path

import keras
import pytest

from kfcn.inference import input_range
from kfcn.samples import shipped_model_path
from kfcn.saving import load_model

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.tensorflow_only(reason="one backend is enough")


def example_module(name):
    """The module of `examples/NAME.py` (the examples are scripts, not a package)."""
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.pop(0)


def test_held_out_scores_match_the_model_card():
    validate_isbi = example_module("validate_isbi")
    HELD_OUT, validation_table = validate_isbi.HELD_OUT, validate_isbi.validation_table
    stated = json.loads((ROOT / "saved_models" / "unet_isbi_validation.json").read_text())
    assert stated["held_out"] == HELD_OUT == [f"slice_{index}" for index in range(20, 25)]
    model = load_model(shipped_model_path())
    assert input_range(model) == (0, 255)
    measured = validation_table(model)
    for name, row in measured["per_slice"].items():
        for key, value in row.items():
            assert value == pytest.approx(stated["plain"]["per_slice"][name][key], abs=2e-4), (name, key)
    for key, value in measured["isbi2012_original"].items():
        assert value == pytest.approx(stated["plain"]["isbi2012_original"][key], abs=2e-4), key


def test_the_error_analysis_is_of_the_shipped_model_and_its_held_out_split_reproduces():
    """saved_models/unet_isbi_error_analysis.json (the card's section on where the pixel error lies) analysed the
    shipped file, its Markdown states its numbers, and its held-out means come out again from the model."""
    from kfcn.cli.common import file_sha256

    analysis = example_module("isbi_error_analysis")
    stated = json.loads((ROOT / "saved_models" / "unet_isbi_error_analysis.json").read_text())
    assert stated["model_sha256"] == file_sha256(shipped_model_path())
    assert (
        stated["markdown"] == analysis.markdown(stated)
        and stated["markdown"] in (ROOT / "saved_models" / "unet_isbi.md").read_text()
    )
    measured, _ = analysis.set_scores(load_model(shipped_model_path()), analysis.SETS["held_out"])
    assert measured["slices"] == stated["held_out"]["slices"]
    for key, value in measured["mean"].items():
        assert value == pytest.approx(stated["held_out"]["mean"][key], abs=2e-4), key


def test_the_shipped_model_exported_as_a_savedmodel_serves_it_through_both_signatures(tmp_path):
    # The SavedModel is not committed (examples/export_isbi.py writes it into saved_models/, ignored by git): the
    # shipped .keras is exported here as that script exports it, and both signatures its card lists serve what the
    # .keras predicts, on a held-out slice at a size the network does not take.
    import numpy as np
    import tensorflow as tf

    from kfcn.data import load_pair
    from kfcn.export import MODEL_CARD_NAME, saved_model
    from kfcn.inference import predict
    from kfcn.samples import isbi2012_dir

    model = load_model(shipped_model_path())
    folder = saved_model(model, tmp_path / "unet_isbi_serving", version=1)
    card = json.loads((folder / MODEL_CARD_NAME).read_text())
    assert card["serving"]["signatures"] == {"serving_default": "float32", "serving_uint8": "uint8"}
    image, _ = load_pair(isbi2012_dir() / "images" / "slice_20.png", isbi2012_dir() / "labels" / "slice_20.png")
    image = image[:200, :136]  # a size the network does not take: the graph pads and crops it back
    expected = predict(model, image)
    served = tf.saved_model.load(str(folder)).signatures
    name = card["input"]["name"]
    for signature, dtype in card["serving"]["signatures"].items():
        output = served[signature](**{name: tf.constant(image[None].astype(dtype))})[card["output"]["name"]]
        np.testing.assert_allclose(output.numpy()[0], expected, atol=1e-5, err_msg=signature)


VGG_CELLS = ROOT.parent / "shared" / "datasets" / "vgg_cells"


@pytest.mark.skipif(not VGG_CELLS.is_dir(), reason="needs ../shared/datasets/vgg_cells (CI has it)")
def test_cell_counter_loads_with_plain_keras_and_reproduces_its_model_card():
    count_cells = example_module("count_cells")
    card = json.loads((ROOT / "saved_models" / "vgg_cells_counter.json").read_text())
    import kfcn.layers  # noqa: F401  (registers kfcn's layers with Keras)

    model = keras.saving.load_model(ROOT / "saved_models" / "vgg_cells_counter.keras")
    assert input_range(model) == (0, 255) and model.output.shape[-1] == 1
    images, _, counts = count_cells.load(VGG_CELLS, sigma=2.0)
    held_out = [number - 1 for number in card["held_out_images"]]
    assert len(held_out) == 68 and not set(held_out) & {number - 1 for number in card["train_images"]}
    errors = count_cells.count_errors(model, images[held_out], counts[held_out])
    assert abs(errors).mean() == pytest.approx(card["result"]["mae"], abs=1e-3)


CAMVID = ROOT.parent / "shared" / "datasets" / "camvid"


SHIPPED_CAMVID = sorted(path.stem.removeprefix("camvid_") for path in (ROOT / "saved_models").glob("camvid_*.keras"))


@pytest.mark.skipif(not CAMVID.is_dir(), reason="needs ../shared/datasets/camvid (CI has it)")
@pytest.mark.parametrize("network", SHIPPED_CAMVID)
def test_camvid_model_loads_with_plain_keras_and_reproduces_its_validation_table(network):
    """Each shipped CamVid network is the file its `kfcn evaluate` report scored, and the example's own scoring
    of it on the validation images gives that report's whole-set figures (the README's tables)."""
    from kfcn.cli.common import file_sha256

    camvid = example_module("camvid_segmentation")
    path = ROOT / "saved_models" / f"camvid_{network}.keras"
    report = json.loads((ROOT / "saved_models" / f"camvid_{network}_evaluation.json").read_text())
    assert report["model_sha256"] == file_sha256(path)
    import kfcn.layers  # noqa: F401  (registers kfcn's layers with Keras)

    model = keras.saving.load_model(path)
    assert input_range(model) == (0, 255) and model.input.shape[1:] == (None, None, 3)
    assert model.output.shape[-1] == len(camvid.CLASSES) == 11  # void is not an output
    assert {layer.compute_dtype for layer in model.layers} == {"float32"}  # runs at full speed on any CPU
    assert model.count_params() == report["parameters"]  # the tables' parameter count
    images, labels = camvid.read_split(CAMVID, "val")
    assert len(images) == len(report["per_image"]) == 101
    scores, _ = camvid.evaluate(model, images, labels)
    whole = report["whole_set"]
    assert whole["class_names"] == list(camvid.CLASSES)
    for name in ("global_accuracy", "class_accuracy", "mean_iou"):
        assert scores[name] == pytest.approx(100 * whole[name], abs=0.05)
