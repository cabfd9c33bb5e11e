"""Export: SavedModel for TF Serving and builtin-only TFLite, for every architecture kfcn builds."""

import importlib
import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import keras
import numpy as np
import pytest

from kfcn.cli import main
from kfcn.export import MODEL_CARD_NAME, saved_model, tflite
from kfcn.inference import predict
from kfcn.models import fcn, plain_cnn, segnet, unet, with_policy
from tests.tolerances import float16_weights_atol, reordered_network_atol

pytestmark = pytest.mark.tensorflow_only(reason="export tests run on TensorFlow")

ARCHITECTURES = {
    "segnet_indices": lambda: segnet((None, None, 3), num_classes=3, filters=2, depth=2),
    "unet_same": lambda: unet((None, None, 1), num_classes=2, filters=2, depth=2),
    "unet_valid": lambda: unet((None, None, 1), num_classes=1, filters=2, depth=2, padding="valid"),
    "fcn8s": lambda: fcn((None, None, 3), num_classes=3, variant="8s", filters=2),
    "plain_cnn": lambda: plain_cnn((None, None, 1), out_channels=2, num_layers=3, filters=2),
}


def raw_image(rng, height, width, channels):
    return rng.integers(0, 256, (height, width, channels)).astype("float32")


def run_tflite(path, image, interpreter_class, dtype="float32"):
    interpreter = interpreter_class(model_path=str(path))
    runner = interpreter.get_signature_runner("serving_default")
    (name,) = runner.get_input_details()  # the signature runner resizes a dynamic input itself
    return next(iter(runner(**{name: image[None].astype(dtype)}).values()))[0]


def interpreters():
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter as LiteRT

    return {"litert": LiteRT, "tensorflow": tf.lite.Interpreter}


def test_the_same_model_exports_the_same_variables_file(tmp_path):
    """Two loads of one .keras file (other objects, other ids) export byte-identical variables: re-exporting a
    committed SavedModel adds nothing to git. Without kfcn's ordering, Keras numbered them by object ids."""
    keras.utils.set_random_seed(1)
    unet((None, None, 1), num_classes=1, filters=4, depth=2, batch_norm=True).save(tmp_path / "model.keras")
    files = []
    for copy in ("a", "b"):
        folder = saved_model(keras.saving.load_model(tmp_path / "model.keras"), tmp_path / copy)
        files.append({path.name: path.read_bytes() for path in (folder / "variables").iterdir()})
    assert files[0].keys() == files[1].keys() and len(files[0]) == 2
    assert files[0] == files[1]


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_the_variables_file_holds_each_weight_once(name, tmp_path):
    """Keras' ExportArchive saved each weight twice, once per object that refers to it (keras-team/keras#23553):
    the checkpoint's values add up to the model's variables (its weights, and a dropout's seed state) once."""
    import tensorflow as tf

    model = ARCHITECTURES[name]()
    folder = saved_model(model, tmp_path / "serving")
    stored = tf.train.list_variables(str(folder / "variables" / "variables"))
    values = sum(int(np.prod(shape)) for key, shape in stored if key != "_CHECKPOINTABLE_OBJECT_GRAPH")
    assert values == sum(int(np.prod(variable.shape)) for variable in model.variables)


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_saved_model_serves_any_size_like_keras(name, tmp_path, rng):
    import tensorflow as tf

    keras.utils.set_random_seed(1)
    model = ARCHITECTURES[name]()
    folder = saved_model(model, tmp_path / "serving", metadata={"note": "test"})
    assert folder == tmp_path / "serving" / "1" and (folder / "saved_model.pb").exists()
    card = json.loads((folder / MODEL_CARD_NAME).read_text())
    assert card["input"]["value_range"] == [0, 255] and card["metadata"] == {"note": "test"}
    assert card["serving"]["signatures"] == {"serving_default": "float32", "serving_uint8": "uint8"}
    signatures = tf.saved_model.load(str(folder)).signatures
    serve, serve_uint8 = signatures["serving_default"], signatures["serving_uint8"]
    input_name, output_name = card["input"]["name"], card["output"]["name"]
    for height, width in ((37, 29), (32, 64)):  # one size no stride takes, one every stride takes
        image = raw_image(rng, height, width, model.inputs[0].shape[-1])
        served = serve(**{input_name: tf.constant(image[None])})[output_name].numpy()[0]
        expected = predict(model, image)  # another graph (padding in-graph): sums may be reordered
        np.testing.assert_allclose(served, expected, atol=reordered_network_atol(model, expected))
        # The same pixels as uint8: an exact cast in the graph, then the same operations.
        as_stored = serve_uint8(**{input_name: tf.constant(image[None].astype("uint8"))})[output_name].numpy()[0]
        np.testing.assert_array_equal(as_stored, served)


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_tflite_is_builtin_only_and_matches_keras(name, tmp_path, rng):
    keras.utils.set_random_seed(2)
    model = ARCHITECTURES[name]()
    channels = model.inputs[0].shape[-1]
    fixed = tflite(model, tmp_path / "fixed.tflite", input_shape=(32, 32))
    dynamic = tflite(model, tmp_path / "dynamic.tflite")
    for report in (fixed, dynamic):
        assert not [op for op in report["ops"] if op.startswith("Flex") or op == "CUSTOM"], report["ops"]
    assert fixed["input"]["shape"] == [1, 32, 32, channels]
    image32 = raw_image(rng, 32, 32, channels)
    odd = raw_image(rng, 27, 35, channels)
    for interpreter in interpreters().values():  # TFLite's kernels: the same products in another order
        for path, image in ((fixed["path"], image32), (dynamic["path"], odd)):
            expected = predict(model, image)
            atol = reordered_network_atol(model, expected)
            np.testing.assert_allclose(run_tflite(path, image, interpreter), expected, atol=atol)


@pytest.mark.parametrize("quantize", [None, "int8"])
def test_a_mixed_precision_model_exports_as_its_float32_copy(quantize, tmp_path, rng):
    """TFLite has no builtin bfloat16 convolution: a model in a mixed policy converts from its float32 copy, and
    the file answers as the float32 model's own conversion does."""
    keras.utils.set_random_seed(2)
    model = ARCHITECTURES["segnet_indices"]()
    mixed = with_policy(model, "mixed_bfloat16")
    calibration = [raw_image(rng, 32, 32, 3) for _ in range(4)]
    files = {}
    for name, source in (("mixed", mixed), ("float32", model)):
        report = tflite(
            source,
            tmp_path / f"{name}.tflite",
            quantize=quantize,
            representative_data=calibration,
            input_shape=(32, 32),
        )
        assert not [op for op in report["ops"] if op.startswith("Flex") or op == "CUSTOM"], report["ops"]
        files[name] = report["path"]
    image = raw_image(rng, 32, 32, 3)
    interpreter = interpreters()["tensorflow"]
    np.testing.assert_array_equal(
        run_tflite(files["mixed"], image, interpreter), run_tflite(files["float32"], image, interpreter)
    )
    if quantize is None:  # the served graph too: float32 variables and float32 operations
        import tensorflow as tf

        served = {}
        for name, source in (("mixed", mixed), ("float32", model)):
            loaded = tf.saved_model.load(str(saved_model(source, tmp_path / f"serving_{name}")))
            assert {variable.dtype for variable in loaded.variables} == {tf.float32}
            served[name] = loaded.signatures["serving_default"](tf.constant(image[None]))
        np.testing.assert_array_equal(*(next(iter(answer.values())).numpy() for answer in served.values()))


def test_quantized_tflite_files_run_in_litert_and_tensorflow(tmp_path, rng):
    keras.utils.set_random_seed(3)
    model = unet((None, None, 1), num_classes=1, filters=4, depth=2, batch_norm=True)
    images = [raw_image(rng, 32, 32, 1) for _ in range(8)]
    reference = predict(model, images[0])
    float16 = tflite(model, tmp_path / "f16.tflite", quantize="float16", input_shape=(32, 32))
    int8 = tflite(model, tmp_path / "int8.tflite", quantize="int8", representative_data=images, input_shape=(32, 32))
    float32 = tflite(model, tmp_path / "f32.tflite", input_shape=(32, 32))
    # What an int8 device wants: the pixels as stored in a uint8 tensor, no float op before the network.
    calibration = [np.clip(image, 5, 250) for image in images]  # covers [5, 250]; the input must still be 0-255
    int8_uint8 = tflite(model, tmp_path / "u8.tflite", "int8", calibration, input_shape=(32, 32), input_dtype="uint8")
    assert int8["bytes"] < float32["bytes"] and float16["bytes"] < float32["bytes"]
    assert "QUANTIZE" in int8["ops"] or "DEQUANTIZE" in int8["ops"]
    assert int8_uint8["input"]["dtype"] == "uint8" and "CAST" not in int8_uint8["ops"]
    for interpreter in interpreters().values():
        # float16 weights, float32 arithmetic: each weight rounded by at most 2^-11.
        atol = float16_weights_atol(model, reference) + reordered_network_atol(model, reference)
        np.testing.assert_allclose(run_tflite(float16["path"], images[0], interpreter), reference, atol=atol)
        quantized = run_tflite(int8["path"], images[0], interpreter)
        assert quantized.shape == reference.shape
        assert np.abs(quantized - reference).mean() < 0.05  # a probability map: int8 drift stays small
        (details,) = interpreter(model_path=int8_uint8["path"]).get_input_details()
        assert tuple(details["quantization"]) == (1.0, 0)  # the uint8 values are the pixels themselves
        quantized = run_tflite(int8_uint8["path"], images[0], interpreter, dtype="uint8")
        assert np.abs(quantized - reference).mean() < 0.05


def test_int8_records_its_calibration_range_and_warns_when_it_leaves_pixels_uncovered(tmp_path):
    # One 1x1 convolution of weight 1: the output is the scaled pixel, pixel / 255. Calibrated on
    # images of 10-100 only, a pixel of 200 saturates near 100 / 255 in the int8 file: what the card says.
    model = plain_cnn((None, None, 1), num_layers=1, filters=1, kernel_size=1, head="regression")
    model.set_weights([np.ones_like(w) if w.ndim == 4 else np.zeros_like(w) for w in model.get_weights()])
    dim = [np.full((16, 16, 1), value, "float32") for value in np.linspace(10, 100, 8)]
    with pytest.warns(UserWarning, match=r"span pixels 10 to 100 of the model's \[0, 255\]"):
        report = tflite(model, tmp_path / "int8.tflite", quantize="int8", representative_data=dim, input_shape=(16, 16))
    assert report["calibration_range"] == [10.0, 100.0]
    card = json.loads(Path(report["model_card"]).read_text())
    assert card["tflite"]["calibration_range"] == [10.0, 100.0] and "saturate" in card["tflite"]["calibration_note"]
    for interpreter in interpreters().values():
        inside = run_tflite(report["path"], np.full((16, 16, 1), 50.0, "float32"), interpreter)
        np.testing.assert_allclose(inside, 50 / 255, atol=1 / 255)
        beyond = run_tflite(report["path"], np.full((16, 16, 1), 200.0, "float32"), interpreter)
        np.testing.assert_allclose(beyond, 100 / 255, atol=1 / 255)
    full = [np.linspace(0, 255, 256, dtype="float32").reshape(16, 16, 1)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tflite(model, tmp_path / "full.tflite", quantize="int8", representative_data=full, input_shape=(16, 16))
    assert not [w for w in caught if "calibration images span" in str(w.message)]  # the range is covered


@pytest.mark.parametrize("input_shape", [(24, 20), None])
def test_the_tflite_card_states_the_shapes_the_interpreter_takes_and_gives(tmp_path, input_shape):
    # A file converted for 24x20 takes exactly that (its card said "any height and width" before);
    # one converted without a size takes any. The interpreter of each file is the truth.
    model = unet((None, None, 1), num_classes=3, filters=2, depth=2, input_range=(0, 255))
    report = tflite(model, tmp_path / "m.tflite", input_shape=input_shape)
    card = json.loads(Path(report["model_card"]).read_text())
    interpreter = interpreters()["litert"](model_path=report["path"])
    (given,), (taken,) = interpreter.get_input_details(), interpreter.get_output_details()
    if input_shape is None:
        assert card["input"]["shape"] == [1, "height", "width", 1] and card["output"]["shape"] == [
            1,
            "height",
            "width",
            3,
        ]
        assert card["input"]["sizes"].startswith("any height and width")
        assert list(given["shape_signature"]) == [1, -1, -1, 1]
    else:
        assert card["input"]["shape"] == given["shape"].tolist() == [1, 24, 20, 1]
        assert card["output"]["shape"] == taken["shape"].tolist() == [1, 24, 20, 3]
        assert card["input"]["sizes"].startswith("exactly 24x20 (this file was converted for that size")


def test_int8_from_a_tf_data_dataset_of_pairs(tmp_path, rng):
    import tensorflow as tf

    model = plain_cnn((None, None, 1), out_channels=1, num_layers=2, filters=2)
    pairs = tf.data.Dataset.from_tensor_slices(
        (np.stack([raw_image(rng, 16, 16, 1) for _ in range(4)]), np.zeros((4, 16, 16, 1), "int32"))
    )
    report = tflite(model, tmp_path / "m.tflite", quantize="int8", representative_data=pairs, input_shape=(16, 16))
    assert report["quantization"] == "int8"


def test_served_without_kfcn(tmp_path, rng):
    """A process in which `import kfcn` fails loads the SavedModel and serves two sizes."""
    model = unet((None, None, 1), num_classes=2, filters=2, depth=3)
    folder = saved_model(model, tmp_path / "serving")
    image_a, image_b = raw_image(rng, 40, 40, 1), raw_image(rng, 21, 50, 1)  # 21 is no multiple of 8
    np.save(tmp_path / "a.npy", image_a)
    np.save(tmp_path / "b.npy", image_b)
    script = textwrap.dedent(
        f"""
        import sys, numpy as np
        sys.modules["kfcn"] = None  # import kfcn now fails
        try:
            import kfcn
        except ImportError:
            pass
        else:
            raise SystemExit("kfcn was importable")
        import tensorflow as tf
        serve = tf.saved_model.load({str(folder)!r}).signatures["serving_default"]
        for name in ("a", "b"):
            image = np.load({str(tmp_path)!r} + f"/{{name}}.npy")
            out = serve(pixels_0_255=tf.constant(image[None]))["probabilities"].numpy()
            np.save({str(tmp_path)!r} + f"/{{name}}_out.npy", out[0])
        """
    )
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": ""}
    subprocess.run([sys.executable, "-c", script], check=True, env=environment, cwd=tmp_path)
    for name, image in (("a", image_a), ("b", image_b)):
        expected = predict(model, image)
        atol = reordered_network_atol(model, expected)
        np.testing.assert_allclose(np.load(tmp_path / f"{name}_out.npy"), expected, atol=atol)


def test_versions_and_overwrite(tmp_path):
    model = plain_cnn((None, None, 1), num_layers=1)
    assert saved_model(model, tmp_path).name == "1"
    assert saved_model(model, tmp_path).name == "2"
    with pytest.raises(FileExistsError, match="overwrite=True"):
        saved_model(model, tmp_path, version=1)
    before = (tmp_path / "1" / "saved_model.pb").stat().st_mtime_ns
    assert saved_model(model, tmp_path, version=1, overwrite=True).name == "1"
    assert (tmp_path / "1" / "saved_model.pb").stat().st_mtime_ns != before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["1", "2"]


def test_failing_export_leaves_nothing_behind(tmp_path, monkeypatch):
    module = importlib.import_module("kfcn.export.saved_model")  # the package's attribute is the function

    def broken(*args, **kwargs):
        (args[1] / "half_written").mkdir(parents=True)
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(module, "write_saved_model", broken)
    with pytest.raises(OSError, match="disk full"):
        saved_model(plain_cnn((None, None, 1), num_layers=1), tmp_path / "serving")
    assert list((tmp_path / "serving").iterdir()) == []
    with pytest.raises(ValueError, match="is a file"):
        (tmp_path / "file").write_text("")
        saved_model(plain_cnn((None, None, 1), num_layers=1), tmp_path / "file")


def test_failing_tflite_leaves_no_file(tmp_path, monkeypatch):
    module = importlib.import_module("kfcn.export.tflite")

    monkeypatch.setattr(module, "_convert", lambda *a: (_ for _ in ()).throw(ValueError("no builtin op")))
    with pytest.raises(ValueError, match="no builtin op"):
        tflite(plain_cnn((None, None, 1), num_layers=1), tmp_path / "m.tflite")
    assert list(tmp_path.iterdir()) == []


def test_a_model_with_non_finite_weights_is_refused_before_anything_is_written(tmp_path):
    """A diverged run's model would export into files whose every answer is meaningless (on some CPUs, finite)."""
    model = plain_cnn((None, None, 1), num_layers=2, filters=2)
    model.weights[0].assign(np.full(model.weights[0].shape, np.nan, "float32"))
    for export in (
        lambda: saved_model(model, tmp_path / "serving"),
        lambda: tflite(model, tmp_path / "m.tflite"),
    ):
        with pytest.raises(ValueError, match="weights hold NaN or infinite values"):
            export()
    assert list(tmp_path.iterdir()) == []


def test_bad_requests_name_the_fix(tmp_path):
    model = unet((None, None, 1), num_classes=1, filters=2, depth=2)
    with pytest.raises(ValueError, match="representative_data"):
        tflite(model, tmp_path / "m.tflite", quantize="int8")
    with pytest.raises(ValueError, match="quantize"):
        tflite(model, tmp_path / "m.tflite", quantize="int4")
    fixed = unet((64, 64, 1), num_classes=1, filters=2, depth=2)
    with pytest.raises(ValueError, match="built for input height 64"):
        tflite(fixed, tmp_path / "m.tflite", input_shape=(32, 64))
    vector = keras.Sequential([keras.Input((8,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="no image input"):
        saved_model(vector, tmp_path / "serving")
    with pytest.raises(ValueError, match="version"):
        saved_model(model, tmp_path / "serving", version=0)
    with pytest.raises(ValueError, match="whole numbers of pixels"):
        tflite(model, tmp_path / "m.tflite", input_shape=(32.5, 32))
    sixteen_bit = [np.full((16, 16, 1), 4000.0, "float32")]
    with pytest.raises(ValueError, match=r"values from 4000 to 4000.*\[0, 255\]"):
        tflite(model, tmp_path / "m.tflite", quantize="int8", representative_data=sixteen_bit, input_shape=(16, 16))
    rescaled = [np.linspace(0, 1, 256, dtype="float32").reshape(16, 16, 1)]
    with pytest.raises(ValueError, match=r"rescaled to \[0, 1\]"):
        tflite(model, tmp_path / "m.tflite", quantize="int8", representative_data=rescaled, input_shape=(16, 16))
    with pytest.raises(ValueError, match=r"input_dtype='uint16' is for models of pixels above 255.*'uint8'"):
        tflite(model, tmp_path / "m.tflite", input_dtype="uint16")
    twelve_bit = plain_cnn((None, None, 1), num_layers=1, filters=2, input_range=(0, 4095))
    with pytest.raises(ValueError, match=r"uint8' cannot carry .* \[0, 4095\].*input_dtype='uint16'"):
        tflite(twelve_bit, tmp_path / "m.tflite", input_dtype="uint8")
    unscaled = plain_cnn((None, None, 1), num_layers=1, filters=2, input_range=None)
    with pytest.raises(ValueError, match=r"no input_range.*input_dtype='float32'"):
        tflite(unscaled, tmp_path / "m.tflite", input_dtype="uint8")
    assert list(tmp_path.iterdir()) == []


def test_a_12_bit_model_takes_uint16_in_both_forms(tmp_path, rng):
    import tensorflow as tf

    model = plain_cnn((None, None, 1), out_channels=1, num_layers=2, filters=2, input_range=(0, 4095))
    folder = saved_model(model, tmp_path / "serving")
    signatures = tf.saved_model.load(str(folder)).signatures
    assert sorted(signatures) == ["serving_default", "serving_uint16"]
    image = rng.integers(0, 4096, (1, 11, 13, 1))
    served = signatures["serving_default"](pixels_0_4095=tf.constant(image.astype("float32")))["values"].numpy()
    as_stored = signatures["serving_uint16"](pixels_0_4095=tf.constant(image.astype("uint16")))["values"].numpy()
    np.testing.assert_array_equal(as_stored, served)
    # uint16 holds more than 12 bits: the range check stays in that signature.
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"\[0, 4095\].*from 0 to 5000"):
        signatures["serving_uint16"](pixels_0_4095=tf.constant(np.array([0, 5000], "uint16").reshape(1, 1, 2, 1)))
    report = tflite(model, tmp_path / "m.tflite", input_dtype="uint16")
    assert report["input"]["dtype"] == "uint16" and report["input"]["shape"] == [1, None, None, 1]
    for interpreter in interpreters().values():
        output = run_tflite(report["path"], image[0], interpreter, dtype="uint16")
        np.testing.assert_allclose(output, served[0], atol=reordered_network_atol(model, served))


def test_cli_uint8_tflite_reports_its_real_input_and_writes_the_card(tmp_path, rng, capsys):
    """`kfcn export --format tflite --input-dtype uint8 --metadata ...`: a dynamic-size uint8 file that
    matches Keras on the same pixels, its card beside it with the metadata, its real shape printed."""
    model = unet((None, None, 1), num_classes=1, filters=2, depth=2)
    model.save(tmp_path / "model.keras")
    output = tmp_path / "m.tflite"
    arguments = ["export", str(tmp_path / "model.keras"), "--format", "tflite", "--output", str(output)]
    assert main([*arguments, "--input-dtype", "uint8", "--metadata", '{"data": "test", "dice": [0.9, 0.8]}']) == 0
    printed = capsys.readouterr().out
    assert "pixels_0_255 uint8 [1, None, None, 1]" in printed and MODEL_CARD_NAME in printed
    card = json.loads((tmp_path / f"m.tflite.{MODEL_CARD_NAME}").read_text())
    assert card["metadata"] == {"data": "test", "dice": [0.9, 0.8]} and card["format"] == "tflite"
    assert card["input"]["dtype"] == "uint8" and card["input"]["shape"] == [1, "height", "width", 1]
    assert not [op for op in card["tflite"]["ops"] if op.startswith("Flex") or op == "CUSTOM"]
    image = raw_image(rng, 27, 35, 1)
    expected = predict(model, image)
    for interpreter in interpreters().values():
        output_map = run_tflite(output, image, interpreter, dtype="uint8")
        np.testing.assert_allclose(output_map, expected, atol=reordered_network_atol(model, expected))
    assert main([*arguments, "--input-dtype", "uint16", "--overwrite"]) == 2
    assert "pixels above 255" in capsys.readouterr().err


@pytest.mark.parametrize(
    "metadata, words",
    [
        ({"loss": float("nan")}, ["metadata['loss'] is nan", "None"]),
        ({"scores": {"dice": np.array([0.9])}}, ["metadata['scores']['dice'] is a numpy.ndarray", ".tolist()"]),
        ({"slices": {20, 21}}, ["metadata['slices'] is a set", "sorted()"]),
        ({"make": print}, ["metadata['make'] is a builtin_function_or_method"]),
        ({"epochs": np.int64(3)}, ["metadata['epochs'] is a numpy.int64", "int()"]),
        ({7: "seven"}, ["metadata has the key 7", "str(7)"]),
        (["isbi"], ["`metadata` is a dict"]),
    ],
)
def test_metadata_json_cannot_hold_is_refused_before_anything_is_written(metadata, words, tmp_path):
    model = plain_cnn((None, None, 1), num_layers=1, filters=2)
    for export, target in ((saved_model, tmp_path / "serving"), (tflite, tmp_path / "m.tflite")):
        with pytest.raises(ValueError) as refusal:
            export(model, target, metadata=metadata)
        assert all(word in str(refusal.value) for word in words), str(refusal.value)
    assert list(tmp_path.iterdir()) == []


def test_cli_refuses_metadata_json_cannot_hold_before_writing(tmp_path, capsys):
    plain_cnn((None, None, 1), num_layers=1, filters=2).save(tmp_path / "model.keras")
    output = tmp_path / "serving"
    arguments = ["export", str(tmp_path / "model.keras"), "--format", "saved_model", "--output", str(output)]
    assert main([*arguments, "--metadata", '{"run": {"loss": NaN}}']) == 2  # Python's json reads NaN
    assert "--metadata: metadata['run']['loss'] is nan" in capsys.readouterr().err and not output.exists()


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_export_from_another_backend(backend, tmp_path, rng):
    """A model built under JAX or PyTorch exports through a TensorFlow child process."""
    script = textwrap.dedent(
        f"""
        import keras, kfcn
        keras.utils.set_random_seed(0)
        model = kfcn.models.unet((None, None, 1), num_classes=1, filters=2, depth=2)
        model.save({str(tmp_path / "model.keras")!r})
        print(kfcn.export.saved_model(model, {str(tmp_path / "serving")!r}))
        print(kfcn.export.tflite(model, {str(tmp_path / "m.tflite")!r}, input_shape=(16, 16))["path"])
        """
    )
    environment = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    subprocess.run([sys.executable, "-c", script], check=True, env=environment, capture_output=True)
    import tensorflow as tf

    from kfcn.saving import load_model

    model = load_model(tmp_path / "model.keras")
    image = raw_image(rng, 16, 16, 1)
    serve = tf.saved_model.load(str(tmp_path / "serving" / "1")).signatures["serving_default"]
    served = serve(pixels_0_255=tf.constant(image[None]))["probabilities"].numpy()[0]
    atol = reordered_network_atol(model, served)
    np.testing.assert_allclose(served, predict(model, image), atol=atol)
    np.testing.assert_allclose(run_tflite(tmp_path / "m.tflite", image, tf.lite.Interpreter), served, atol=atol)


@pytest.mark.parametrize("name", ["segnet_indices", "unet_same", "fcn8s", "plain_cnn"])
def test_onnx_matches_keras_at_any_size(name, tmp_path, rng):
    pytest.importorskip("tf2onnx")
    import onnxruntime

    from kfcn.export import onnx

    model = ARCHITECTURES[name]()
    report = onnx(model, tmp_path / "m.onnx", metadata={"note": name})
    session = onnxruntime.InferenceSession(report["path"])
    card = json.loads(session.get_modelmeta().custom_metadata_map["kfcn_model_card"])
    assert card["metadata"] == {"note": name} and card == json.loads(Path(report["model_card"]).read_text())
    for height, width in ((37, 29), (64, 32)):
        image = raw_image(rng, height, width, model.inputs[0].shape[-1])
        (output,) = session.run([report["output"]], {report["input"]: image[None]})
        expected = predict(model, image)  # onnxruntime's kernels: the same products in another order
        np.testing.assert_allclose(output[0], expected, atol=reordered_network_atol(model, expected))


def test_onnx_refuses_the_valid_unet(tmp_path):
    pytest.importorskip("tf2onnx")
    from kfcn.export import onnx

    with pytest.raises(ValueError, match="saved_model or tflite"):
        onnx(ARCHITECTURES["unet_valid"](), tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_readme_serving_request_runs_through_the_signature(tmp_path):
    """The REST body shown in README.md, sent as TF Serving would: instances stacked into a batch."""
    import pathlib
    import re

    import tensorflow as tf

    readme = (pathlib.Path(__file__).resolve().parents[2] / "README.md").read_text()
    body = json.loads(re.search(r"<!-- serving-request -->\s*```json\n(.*?)\n```", readme, re.S).group(1))
    model = unet((None, None, 1), num_classes=1, filters=2, depth=2)
    serve = tf.saved_model.load(str(saved_model(model, tmp_path))).signatures[body["signature_name"]]
    (name,) = serve.structured_input_signature[1]
    batch = np.array([instance[name] for instance in body["instances"]], dtype="float32")
    predictions = serve(**{name: tf.constant(batch)})["probabilities"].numpy()
    assert predictions.shape == (1, 2, 3, 1)
    expected = predict(model, batch[0])
    np.testing.assert_allclose(predictions[0], expected, atol=reordered_network_atol(model, expected))
