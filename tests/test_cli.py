import numpy as np
from PIL import Image

from kfcn.cli import main
from kfcn.models import unet


def test_predict_writes_a_png_of_the_image_size(tmp_path, rng):
    model = unet((None, None, 1), num_classes=1, filters=4, depth=2)
    model.save(tmp_path / "model.keras")
    Image.fromarray((rng.random((40, 52)) * 255).astype(np.uint8)).save(tmp_path / "in.png")
    code = main(
        [
            "predict",
            str(tmp_path / "model.keras"),
            str(tmp_path / "in.png"),
            str(tmp_path / "out.png"),
            "--tile",
            "64",
            "--labels",
        ]
    )
    assert code == 0
    written = np.asarray(Image.open(tmp_path / "out.png"))
    assert written.shape == (40, 52) and set(np.unique(written)) <= {0, 255}


def test_errors_are_reported_and_nothing_is_written(tmp_path, capsys):
    model = unet((None, None, 1), num_classes=1, filters=4, depth=2)
    model.save(tmp_path / "model.keras")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    code = main(["predict", str(tmp_path / "model.keras"), str(tmp_path / "broken.png"), str(tmp_path / "out.png")])
    assert code == 2 and "Cannot read image file" in capsys.readouterr().err
    assert not (tmp_path / "out.png").exists()


def test_receptive_field_table(tmp_path, capsys):
    model = unet((None, None, 1), num_classes=1, filters=4, depth=2)
    model.save(tmp_path / "model.keras")
    assert main(["receptive-field", str(tmp_path / "model.keras")]) == 0
    assert "receptive field 44 px" in capsys.readouterr().out


def test_predict_reads_raw_pixels_like_the_api(tmp_path, rng):
    from kfcn.inference import predict_tiled

    model = unet((None, None, 1), num_classes=1, filters=4, depth=2)
    model.save(tmp_path / "model.keras")
    image = (rng.random((40, 52)) * 255).astype(np.uint8)
    Image.fromarray(image).save(tmp_path / "in.png")
    assert main(["predict", str(tmp_path / "model.keras"), str(tmp_path / "in.png"), str(tmp_path / "out.png")]) == 0
    written = np.asarray(Image.open(tmp_path / "out.png")).astype("float32")
    expected = np.round(np.clip(predict_tiled(model, image, 512, progress=False)[..., 0], 0, 1) * 255)
    assert np.abs(written - expected).max() <= 1


def test_predict_checks_the_output_before_working(tmp_path, capsys):
    (tmp_path / "blocker").write_text("a file where a folder should be")
    code = main(["predict", str(tmp_path / "missing.keras"), "in.png", str(tmp_path / "blocker" / "out.png")])
    error = capsys.readouterr().err
    assert code == 2 and "blocker" in error and "Traceback" not in error and len(error.strip().splitlines()) == 1


def test_corrupt_keras_file_is_named(tmp_path, capsys):
    (tmp_path / "model.keras").write_bytes(b"PK\x03\x04 truncated")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "in.png")
    code = main(["predict", str(tmp_path / "model.keras"), str(tmp_path / "in.png"), str(tmp_path / "out.png")])
    assert code == 2 and "not a valid .keras file" in capsys.readouterr().err


def test_export_saved_model_and_tflite(tmp_path, capsys):
    import json

    import keras
    import pytest

    if keras.backend.backend() != "tensorflow":
        pytest.skip("export runs on TensorFlow here")
    model = unet((None, None, 1), num_classes=1, filters=2, depth=2)
    model.save(tmp_path / "model.keras")
    base = tmp_path / "serving"
    args = ["export", str(tmp_path / "model.keras"), "--format", "saved_model", "--output", str(base)]
    assert main([*args, "--metadata", '{"data": "test"}']) == 0
    card = json.loads((base / "1" / "kfcn_model_card.json").read_text())
    assert card["metadata"] == {"data": "test"} and card["input"]["name"] == "pixels_0_255"
    assert main([*args, "--version", "1"]) == 2 and "overwrite" in capsys.readouterr().err
    folder = tmp_path / "calibration"
    folder.mkdir()
    for index in range(3):
        Image.fromarray((np.arange(256).reshape(16, 16) + index).astype(np.uint8)).save(folder / f"{index}.png")
    output = str(tmp_path / "m.tflite")
    tflite_args = ["export", str(tmp_path / "model.keras"), "--format", "tflite", "--output", output]
    assert main([*tflite_args, "--quantize", "int8", "--representative", str(folder), "--input-size", "16", "16"]) == 0
    assert "ops:" in capsys.readouterr().out and (tmp_path / "m.tflite").stat().st_size > 0
