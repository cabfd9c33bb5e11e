"""`kfcn predict`, `kfcn receptive-field` and `kfcn export` in-process, checked against the Python API."""

import csv
import json

import keras
import numpy as np
import pytest
from PIL import Image

from kfcn.cli import main
from kfcn.inference import predict, predict_tiled
from kfcn.models import unet
from kfcn.saving import save_model
from tests.tolerances import reordered_network_atol


@pytest.fixture
def model_file(tmp_path):
    model = unet((None, None, 1), num_classes=1, filters=4, depth=2)
    save_model(model, tmp_path / "model.keras")
    return model, tmp_path / "model.keras"


def write_images(folder, rng, sizes):
    folder.mkdir(parents=True, exist_ok=True)
    images = {}
    for index, size in enumerate(sizes):
        images[f"img{index}"] = (rng.random(size) * 255).astype(np.uint8)
        Image.fromarray(images[f"img{index}"]).save(folder / f"img{index}.png")
    return images


def read(path):
    return np.asarray(Image.open(path))


def test_a_folder_gives_probability_and_overlay_pngs_that_match_the_api(model_file, tmp_path, rng, capsys):
    model, path = model_file
    images = write_images(tmp_path / "in", rng, [(40, 52), (33, 20)])
    assert main(["predict", str(tmp_path / "in"), "--output", str(tmp_path / "out"), "--model", str(path)]) == 0
    assert "wrote 2 image(s)" in capsys.readouterr().out
    for stem, image in images.items():
        expected = np.round(np.clip(predict(model, image)[..., 0], 0, 1) * 255)
        written = read(tmp_path / "out" / f"{stem}.png").astype("float32")
        assert written.shape == image.shape and np.abs(written - expected).max() <= 1
        picture = read(tmp_path / "out" / f"{stem}_overlay.png")
        assert picture.shape == (*image.shape, 3)
        background = expected <= 127.5  # class 0 is not tinted: its pixels stay grey
        grey = picture[background]
        assert np.array_equal(grey[:, 0], image[background]) and np.array_equal(grey[:, 0], grey[:, 2])


@pytest.mark.tensorflow_only(reason="converts in TensorFlow")
def test_engine_litert_writes_what_keras_writes(model_file, tmp_path, rng):
    model, path = model_file
    images = write_images(tmp_path / "in", rng, [(40, 52)])
    base = ["predict", str(tmp_path / "in"), "--model", str(path), "--format", "tiff", "--no-overlay"]
    assert main([*base, "--output", str(tmp_path / "lite"), "--engine", "litert"]) == 0
    written = np.asarray(Image.open(tmp_path / "lite" / "img0.tif"))
    keras_output = predict(model, images["img0"])[..., 0]  # XNNPACK against oneDNN: sums in another order
    np.testing.assert_allclose(written, keras_output, atol=reordered_network_atol(model, keras_output))


def test_labels_tiff_png16_and_tiling_by_size(model_file, tmp_path, rng):
    model, path = model_file
    images = write_images(tmp_path / "in", rng, [(100, 150)])
    image = images["img0"]
    base = ["predict", str(tmp_path / "in" / "img0.png"), "--model", str(path), "--no-overlay"]
    assert main([*base, "--output", str(tmp_path / "labels"), "--labels"]) == 0
    labels = read(tmp_path / "labels" / "img0.png")
    assert set(np.unique(labels)) <= {0, 255}
    np.testing.assert_array_equal(labels == 255, predict(model, image)[..., 0] > 0.5)
    assert not (tmp_path / "labels" / "img0_overlay.png").exists()
    # Larger than --tile: tiled, with the exact (receptive-field) overlap by default.
    assert main([*base, "--output", str(tmp_path / "tiff"), "--format", "tiff", "--tile", "88"]) == 0
    import tifffile

    tiled = tifffile.imread(tmp_path / "tiff" / "img0.tif")
    assert tiled.dtype == np.float32
    np.testing.assert_array_equal(tiled, predict_tiled(model, image, 88, progress=False))  # the same calls
    assert main([*base, "--output", str(tmp_path / "png16"), "--format", "png16"]) == 0
    sixteen = read(tmp_path / "png16" / "img0.png")
    assert sixteen.dtype == np.uint16
    np.testing.assert_allclose(sixteen / 65535, predict(model, image)[..., 0], atol=0.5 / 65535 + 1e-7)  # rounding


def test_skip_existing_finishes_an_interrupted_folder(model_file, tmp_path, rng, capsys):
    _, path = model_file
    write_images(tmp_path / "in", rng, [(24, 24)] * 4)
    (tmp_path / "in" / "img2.png").write_bytes(b"\x89PNG truncated")  # the run stops here
    command = ["predict", str(tmp_path / "in"), "--output", str(tmp_path / "out"), "--model", str(path)]
    assert main(command) == 2
    assert "img2.png" in capsys.readouterr().err
    done = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert done == ["img0.png", "img0_overlay.png", "img1.png", "img1_overlay.png"]  # whole files only
    before = (tmp_path / "out" / "img0.png").stat().st_mtime_ns
    write_images(tmp_path / "fixed", rng, [(24, 24)] * 3)
    (tmp_path / "fixed" / "img2.png").replace(tmp_path / "in" / "img2.png")
    assert main([*command, "--skip-existing"]) == 0
    assert "2 already done" in capsys.readouterr().out
    assert (tmp_path / "out" / "img0.png").stat().st_mtime_ns == before
    assert len(list((tmp_path / "out").iterdir())) == 8


def test_default_model_is_the_shipped_unet(tmp_path, capsys):
    from kfcn.samples import isbi2012_dir, shipped_model_path
    from kfcn.saving import load_model

    image = read(isbi2012_dir() / "images" / "slice_20.png")[:96, :128]
    Image.fromarray(image).save(tmp_path / "slice.png")
    assert main(["predict", str(tmp_path / "slice.png"), "--output", str(tmp_path / "out")]) == 0
    assert "unet_isbi.keras" in capsys.readouterr().out
    expected = np.round(predict(load_model(shipped_model_path()), image)[..., 0] * 255)
    assert np.abs(read(tmp_path / "out" / "slice.png") - expected).max() <= 1


def test_counting_prints_counts_and_writes_heat_maps(tmp_path, rng, capsys):
    model = unet((None, None, 1), num_classes=1, filters=4, depth=2, head="regression")
    save_model(model, tmp_path / "density.keras")
    images = write_images(tmp_path / "in", rng, [(32, 40), (24, 24)])
    argv = ["predict", str(tmp_path / "in"), "--output", str(tmp_path / "out")]
    assert main([*argv, "--model", str(tmp_path / "density.keras"), "--task", "counting"]) == 0
    out = capsys.readouterr().out
    with open(tmp_path / "out" / "counts.csv") as file:
        counts = {row["image"]: float(row["count"]) for row in csv.DictReader(file)}
    for stem, image in images.items():
        expected = float(predict(model, image)[..., 0].sum(dtype=np.float64))
        assert counts[f"{stem}.png"] == pytest.approx(expected, abs=1e-3)
        assert f"{stem}.png: count {expected:.1f}" in out
        assert read(tmp_path / "out" / f"{stem}_heatmap.png").shape == (*image.shape, 3)


def test_receptive_field_table(model_file, capsys):
    _, path = model_file
    assert main(["receptive-field", str(path)]) == 0
    assert "receptive field 44 px" in capsys.readouterr().out


def test_export_saved_model_and_tflite(tmp_path, capsys):
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


def files_of(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_outputs_that_would_overwrite_inputs_or_each_other_are_refused_before_any_work(model_file, tmp_path, capsys):
    _, path = model_file
    write_images(tmp_path / "in", np.random.default_rng(1), [(24, 24)])
    before = files_of(tmp_path / "in")
    assert main(["predict", str(tmp_path / "in"), "--output", str(tmp_path / "in"), "--model", str(path)]) == 2
    assert "is an input image" in capsys.readouterr().err and files_of(tmp_path / "in") == before
    # a.png's overlay is a_overlay.png, which is also the prediction of the input a_overlay.png.
    Image.fromarray(np.zeros((24, 24), np.uint8)).save(tmp_path / "in" / "img0_overlay.png")
    before = files_of(tmp_path / "in")
    for shard in ([], ["--shard", "1/2"]):  # a shard checks the names of every worker's images
        assert (
            main(["predict", str(tmp_path / "in"), "--output", str(tmp_path / "out"), "--model", str(path), *shard])
            == 2
        )
        assert "would both write" in capsys.readouterr().err
    assert files_of(tmp_path / "in") == before and not list((tmp_path / "out").iterdir())
    assert (
        main(["predict", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--model", str(path), "--no-overlay"]) == 0
    )
