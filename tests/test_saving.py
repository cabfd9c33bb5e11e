"""`.keras` files: safe mode, clear errors for corrupt files, atomic writes."""

import keras
import numpy as np
import pytest

from kfcn.models import plain_cnn
from kfcn.saving import load_model, save_model


def test_round_trip_without_optimizer(tmp_path):
    model = plain_cnn((None, None, 1), num_layers=2, filters=2)
    model.compile("adam", "mse")
    model.fit(np.zeros((1, 8, 8, 1)), np.zeros((1, 8, 8, 1)), verbose=0)
    save_model(model, tmp_path / "m.keras")
    loaded = load_model(tmp_path / "m.keras")
    image = np.random.default_rng(0).integers(0, 256, (1, 8, 8, 1)).astype("float32")
    # The same weights through the same operations: bit for bit.
    np.testing.assert_array_equal(loaded.predict(image, verbose=0), model.predict(image, verbose=0))
    assert getattr(loaded, "optimizer", None) is None
    assert [p.name for p in tmp_path.iterdir()] == ["m.keras"]  # no temporary left


def test_unsafe_lambda_is_refused_naming_the_option(tmp_path):
    inputs = keras.Input((None, None, 1))
    model = keras.Model(inputs, keras.layers.Lambda(lambda x: x * 2)(inputs))
    model.save(tmp_path / "lambda.keras")
    with pytest.raises(ValueError, match="safe_mode=False"):
        load_model(tmp_path / "lambda.keras")
    assert load_model(tmp_path / "lambda.keras", safe_mode=False).name == model.name


@pytest.mark.parametrize(
    "content, message",
    [(b"", "not a valid .keras file"), (b"PK\x03\x04 cut short", "not a valid .keras file")],
)
def test_corrupt_files_are_named(tmp_path, content, message):
    (tmp_path / "m.keras").write_bytes(content)
    with pytest.raises(ValueError, match=message):
        load_model(tmp_path / "m.keras")


def test_a_truncated_real_file_is_refused(tmp_path):
    save_model(plain_cnn((None, None, 1), num_layers=2, filters=2), tmp_path / "m.keras")
    data = (tmp_path / "m.keras").read_bytes()
    (tmp_path / "cut.keras").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not a valid .keras file"):
        load_model(tmp_path / "cut.keras")


def test_other_paths_are_named(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_model(tmp_path / "missing.keras")
    with pytest.raises(ValueError, match="is a folder"):
        load_model(tmp_path)
    (tmp_path / "m.h5").write_bytes(b"")
    with pytest.raises(ValueError, match="not a `.keras` file"):
        load_model(tmp_path / "m.h5")


def test_failed_save_keeps_the_previous_file(tmp_path, monkeypatch):
    model = plain_cnn((None, None, 1), num_layers=2, filters=2)
    save_model(model, tmp_path / "m.keras")
    before = (tmp_path / "m.keras").read_bytes()

    def broken_save(self, path, *args, **kwargs):
        open(path, "wb").write(b"half")
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(keras.Model, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_model(model, tmp_path / "m.keras")
    assert (tmp_path / "m.keras").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.keras"]


def _lambda_file(tmp_path):
    model = keras.Sequential([keras.Input((None, None, 1)), keras.layers.Lambda(lambda x: x * 2, name="double")])
    model.save(tmp_path / "lambda.keras")
    return tmp_path / "lambda.keras"


def test_every_verb_that_loads_a_model_has_the_unsafe_flag_the_message_names(tmp_path):
    from kfcn.cli import build_parser

    with pytest.raises(ValueError, match="--unsafe") as refusal:
        load_model(_lambda_file(tmp_path))
    parser = build_parser()
    named = str(refusal.value).split("(kfcn ")[1].split(" take it")[0].replace(" and ", ", ").split(", ")
    arguments = {
        "predict": ["a.png", "--output", "o"],
        "evaluate": ["i", "l"],
        "export": ["m.keras", "--format", "tflite", "--output", "o"],
    }
    arguments |= {"inspect": ["m.keras"], "receptive-field": ["m.keras"], "train": ["--output", "o"]}
    assert sorted(named) == sorted(arguments)
    for verb, rest in arguments.items():
        assert parser.parse_args([verb, *rest, "--unsafe"]).unsafe, verb


def test_fine_tuning_an_unsafe_file_names_the_train_flag(tmp_path):
    from kfcn.cli.train import build_model

    with pytest.raises(ValueError, match=r"lambda in layer 'double'.*--unsafe"):
        build_model({"model": str(_lambda_file(tmp_path)), "precision": "float32"}, 1, 1)
