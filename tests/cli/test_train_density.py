"""`kfcn train --label-mode density`: dot annotations become density targets, the scale is folded into
model.keras, the options are refused and recorded in one place, the vgg-cells recipe loads, and a tiny run
is read back by `kfcn evaluate --task counting`."""

import argparse
import json
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from kfcn.cli import main
from kfcn.cli.run_folder import RESUME, prepare_run_dir
from kfcn.cli.train import _calibrate
from kfcn.cli.train_data import _dot_pairs
from kfcn.cli.train_options import OPTIONS, resolve
from kfcn.data import density_map, dots_from_image, random_crop_pipeline
from kfcn.data.density import density_from_mask, dot_mask
from kfcn.recipes import RECIPES, data_requirements, recipe
from kfcn.saving import load_model, save_model
from kfcn.training import fold_density_scale, read_log
from tests.cli.conftest import error_of, write_pairs

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.tensorflow_only(reason="tf.data pipelines")

SIDE = 16


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Five 16 x 16 RGB images with RGB dot images (pure red pixels), 2-6 dots each, as the VGG cells' files."""
    rng = np.random.default_rng(0)
    images, labels = [], []
    for index in range(5):
        dots = np.zeros((SIDE, SIDE, 3), np.uint8)
        for row, column in rng.choice(SIDE * SIDE, 2 + index, replace=False)[:, None] // [SIDE, 1] % SIDE:
            dots[row, column] = (255, 0, 0)
        images.append(rng.integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8))
        labels.append(dots)
    return write_pairs(tmp_path_factory.mktemp("density_data"), images, labels)


def command(data, output, *options):
    return [
        "train", "--images", str(data / "images"), "--labels", str(data / "labels"), "--output", str(output),
        "--label-mode", "density", "--model", "unet", "--filters", "2", "--depth", "1", "--crop", str(SIDE),
        "--batch", "2", "--epochs", "1", "--steps", "2", "--no-jit-compile",
        *options,
    ]  # fmt: skip


def test_the_density_targets_of_a_dot_image_are_density_map_of_its_dots(data):
    pairs = _dot_pairs(data / "images", data / "labels")
    image, mask = next(iter(pairs))
    dots = dots_from_image(np.asarray(Image.open(data / "labels" / "0.png")))
    assert np.argwhere(mask.numpy()[..., 0]).tolist() == dots.tolist() and len(dots) == 2
    target_map = lambda label: density_from_mask(label, sigma=1.5)  # noqa: E731
    # A crop of the whole image, no augmentation: the target is the density map of the whole image.
    batches = random_crop_pipeline(pairs.take(1), SIDE, batch_size=1, target_map=target_map, shuffle_buffer=0, seed=0)
    _, target = next(iter(batches))
    np.testing.assert_allclose(target.numpy()[0, ..., 0], density_map(dots, (SIDE, SIDE), sigma=1.5), atol=1e-7)
    assert round(float(target.numpy().sum()), 4) == 2.0


def test_a_dot_is_a_red_pixel_of_an_rgb_image_or_a_non_zero_pixel_of_a_single_channel_one():
    grey = np.zeros((4, 5), np.uint8)
    grey[1, 2] = 1
    grey[3, 0] = 200
    assert np.argwhere(dot_mask(grey)).tolist() == [[1, 2], [3, 0]]
    assert np.argwhere(dot_mask(np.repeat(grey[..., None], 3, axis=-1))).tolist() == [[1, 2], [3, 0]]  # grey RGB
    rgb = np.zeros((4, 5, 4), np.uint8)  # RGBA: alpha ignored
    rgb[..., 3] = 255
    rgb[2, 4, :3] = (255, 0, 0)
    assert np.argwhere(dot_mask(rgb)).tolist() == [[2, 4]]
    rgb[0, 0, :3] = (0, 255, 0)
    with pytest.raises(ValueError, match=r"dots.png is a colour image with 1 non-black pixel\(s\) that are not pure"):
        dot_mask(rgb, "dots.png")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--weight-map", "unet"], "--weight-map unet weighs the borders of binary masks, but --label-mode density"),
        (["--class-weights", "1,2"], "--class-weights weighs class labels, but --label-mode density"),
        (["--num-classes", "2"], "--num-classes counts classes, but --label-mode density trains one density output"),
        (["--ignore-class", "0"], "--ignore-class leaves a class out, but --label-mode density"),
        (["--loss", "ce+j2"], "--loss ce+j2 is a segmentation loss; --label-mode density regresses density maps"),
        (["--augment", "elastic"], "--augment elastic resamples the label maps by nearest neighbour"),
        (["--density-sigma", "0"], "--density-sigma must be a positive number; got 0.0"),
        (["--density-scale", "-1"], "--density-scale must be a positive number; got -1.0"),
    ],
)
def test_options_of_class_labels_are_refused_with_density_labels(data, tmp_path, capsys, options, message):
    assert message in error_of(command(data, tmp_path / "run", *options), capsys)
    assert not (tmp_path / "run").exists()


def test_density_options_are_refused_without_density_labels(data, tmp_path, capsys):
    argv = ["train", "--images", str(data / "images"), "--labels", str(data / "labels"), "--output", str(tmp_path)]
    assert "--loss mse is for --label-mode density" in error_of([*argv, "--loss", "mse"], capsys)
    assert "--calibrate-counts applies to --label-mode density" in error_of([*argv, "--calibrate-counts"], capsys)


def test_final_precise_bn_is_refused_where_it_would_leave_the_count_calibration_stale(data, tmp_path, capsys):
    argv = command(data, tmp_path / "run", "--calibrate-counts", "--final-precise-bn", "2")
    assert "would give model.keras new batch-norm statistics after --calibrate-counts" in error_of(argv, capsys)
    assert not (tmp_path / "run").exists()


def resolved(data, tmp_path, **given):
    options = {"images": str(data / "images"), "labels": str(data / "labels"), "output": str(tmp_path / "run")}
    return resolve(argparse.Namespace(**(options | given)))


def test_density_labels_default_to_mse_and_flips_unless_an_option_says_otherwise(data, tmp_path):
    config = resolved(data, tmp_path, label_mode="density")
    assert (config["loss"], config["augment"], config["density_sigma"], config["density_scale"]) == (
        "mse",
        "flips",
        2.0,
        100.0,
    )
    assert (config["calibrate_counts"], config["weight_map"]) == (False, "none")
    assert resolved(data, tmp_path, label_mode="density", loss="mae", augment="none")["loss"] == "mae"
    assert (resolved(data, tmp_path)["loss"], resolved(data, tmp_path)["augment"]) == ("ce+j2", "elastic")


def test_a_run_recorded_before_the_density_options_existed_resumes(data, tmp_path):
    """An option added to kfcn after a run started counts as its default for that run."""
    config = resolved(data, tmp_path)
    run = tmp_path / "run"
    run.mkdir()
    old = {key: value for key, value in config.items() if key not in ("density_sigma", "density_scale")}
    old.pop("calibrate_counts")
    (run / "config.json").write_text(json.dumps(old))
    (run / "training.csv").write_text("epoch,loss\n1,0.5\n")
    assert prepare_run_dir(dict(config)) == (run, RESUME)


@pytest.fixture(scope="module")
def tiny_run(data, tmp_path_factory):
    run = tmp_path_factory.mktemp("density_run") / "run"
    assert main(command(data, run, "--val-fraction", "0.2")) == 0
    return run


def test_a_tiny_run_records_its_options_and_logs_count_errors(tiny_run):
    config = json.loads((tiny_run / "config.json").read_text())
    expected = {
        "label_mode": "density",
        "density_sigma": 2.0,
        "density_scale": 100.0,
        "calibrate_counts": False,
        "loss": "mse",
        "augment": "flips",
        "weight_map": "none",
        "num_classes": None,
    }
    assert {key: config[key] for key in expected} == expected
    assert set(OPTIONS) - {"overwrite"} <= set(config)
    log = read_log(tiny_run / "training.csv")
    assert {"loss", "count_mae", "val_loss", "val_count_mae"} <= set(log)
    assert json.loads((tiny_run / "summary.json").read_text())["monitor"] == "val_count_mae"


def test_the_saved_model_outputs_densities_the_network_divided_by_the_scale(tiny_run):
    model = load_model(tiny_run / "model.keras")
    last = model.layers[-1]
    assert (type(last).__name__, last.name, last.scale) == ("Rescaling", "density", pytest.approx(0.01))
    network = keras.Model(model.inputs, last.input)  # what was trained towards density x 100
    image = np.random.default_rng(1).uniform(0, 255, (1, SIDE, SIDE, 3)).astype("float32")
    density = model.predict(image, verbose=0)
    np.testing.assert_allclose(density, network.predict(image, verbose=0) / 100, rtol=1e-5, atol=1e-7)
    assert density.shape == (1, SIDE, SIDE, 1)


def test_kfcn_evaluate_counts_with_the_tiny_model_as_validation_did(tiny_run, data, tmp_path, capsys):
    scores = tmp_path / "scores.json"
    argv = ["evaluate", str(data / "images"), str(data / "labels"), "--model", str(tiny_run / "model.keras")]
    assert main([*argv, "--task", "counting", "--json", str(scores)]) == 0
    rows = {row["image"]: row for row in json.loads(scores.read_text())["per_image"]}
    assert [rows[f"{index}.png"]["true_count"] for index in range(5)] == [2, 3, 4, 5, 6]
    model = load_model(tiny_run / "model.keras")
    image = np.asarray(Image.open(data / "images" / "4.png"), "float32")[None]
    assert rows["4.png"]["predicted_count"] == pytest.approx(float(model.predict(image, verbose=0).sum()), abs=1e-3)
    # Validation held out the last image (4.png) whole: its count error is the run's val_count_mae.
    log = read_log(tiny_run / "training.csv")
    assert rows["4.png"]["absolute_error"] == pytest.approx(float(log["val_count_mae"][-1]), abs=1e-3)


def test_raising_epochs_extends_a_density_run(tiny_run, data, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    recorded = json.loads((run / "config.json").read_text()) | {"output": str(run)}  # the copy's own folder
    (run / "config.json").write_text(json.dumps(recorded))
    assert main(command(data, run, "--val-fraction", "0.2", "--epochs", "2")) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["extended"] == [{"epochs_before": 1}] and config["label_mode"] == "density"
    assert len(read_log(run / "training.csv")["epoch"]) == 2


def test_calibration_makes_the_total_count_on_the_training_images_right(tmp_path, capsys):
    net = keras.Sequential([keras.Input((None, None, 1)), keras.layers.Identity()], name="net")
    save_model(fold_density_scale(net, 100.0), tmp_path / "model.keras")  # counts image.sum() / 100
    masks = [np.zeros((8, 8, 1), np.uint8) for _ in range(2)]
    masks[0][1, 1] = masks[0][2, 2] = masks[1][3, 3] = 1  # 3 dots; the model counts 64 x 50 / 100 x 2 = 64
    train = tf.data.Dataset.from_tensor_slices((np.full((2, 8, 8, 1), 50.0, "float32"), np.stack(masks)))
    recorded = _calibrate({"density_scale": 100.0}, tmp_path, train)
    assert recorded == {"calibration_factor": pytest.approx(3 / 64), "total_calibration": pytest.approx(3 / 64)}
    model = load_model(tmp_path / "model.keras")
    assert float(model.predict(np.full((2, 8, 8, 1), 50.0), verbose=0).sum()) == pytest.approx(3.0, rel=1e-5)
    assert "counts x 0.0469" in capsys.readouterr().out
    # A model that counts nothing is left as it is, with the reason recorded.
    zeros = tf.data.Dataset.from_tensor_slices((np.zeros((2, 8, 8, 1), "float32"), np.stack(masks)))
    skipped = _calibrate({"density_scale": 100.0}, tmp_path, zeros)
    assert skipped["calibration_factor"] is None and "counts 0 objects" in skipped["calibration_skipped"]
    assert "left uncalibrated" in capsys.readouterr().err


def test_the_vgg_cells_recipe_holds_the_shipped_counters_settings_and_asks_for_its_data(tmp_path, capsys):
    assert "vgg-cells" in RECIPES
    options = recipe("vgg-cells")
    assert set(options) <= set(OPTIONS), sorted(set(options) - set(OPTIONS))
    # the shipped counter's run folder config (copied beside its card by kfcn card) holds every recipe value
    shipped = json.loads((ROOT / "saved_models" / "vgg_cells_counter_config.json").read_text())
    assert shipped["recipe"] == "vgg-cells"
    assert {key: shipped[key] for key in options} == options
    assert options["label_mode"] == "density" and options["calibrate_counts"] and options["epochs"] == 100
    assert "images" not in options and data_requirements("vgg-cells")[0] == ("images", "labels")
    err = error_of(["train", "--recipe", "vgg-cells", "--output", str(tmp_path / "run")], capsys)
    assert "Recipe vgg-cells trains on data kfcn does not ship: give --images DIR --labels DIR" in err
    assert "../shared/datasets/vgg_cells" in err and "cells/labels/${n}cell.png" in err
    assert not (tmp_path / "run").exists()


def test_the_vgg_cells_recipe_trains_on_dot_folders_with_flags_on_top(data, tmp_path, capsys):
    run = tmp_path / "run"
    shrink = ["--filters", "2", "--depth", "1", "--crop", str(SIDE), "--batch", "2", "--epochs", "1", "--steps", "1"]
    folders = ["--images", str(data / "images"), "--labels", str(data / "labels")]
    assert main(["train", "--recipe", "vgg-cells", "--output", str(run), *folders, *shrink, "--no-jit-compile"]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["recipe"] == "vgg-cells" and config["calibrate_counts"] is True and config["filters"] == 2
    summary = json.loads((run / "summary.json").read_text())
    assert "calibration_factor" in summary  # a number, or None with the reason when the tiny model counts <= 0
    if summary["calibration_factor"] is not None:
        assert summary["total_calibration"] == pytest.approx(summary["calibration_factor"], rel=1e-5)
    from kfcn.cli.card import model_card

    card = model_card(run)  # the card says what was done to the counts, whichever way it went
    if summary["calibration_factor"] is not None:
        assert f"calibrated on the training images after training: x {summary['calibration_factor']:.4f}" in card
        assert "(`count_mae`, `val_count_mae`) are before that factor" in card
    else:
        assert f"asked for but skipped: {summary['calibration_skipped']}" in card


def test_the_card_of_a_density_run_states_its_counting_scores_and_settings(tiny_run, capsys):
    from kfcn.cli.card import model_card

    card = model_card(tiny_run)
    log = read_log(tiny_run / "training.csv")
    assert "the best by `val_count_mae` (a validation score" in card
    assert '| label_mode | `"density"` |' in card and "| density_scale | `100.0` |" in card
    header = next(line for line in card.splitlines() if line.startswith("| epoch |"))
    assert "count_mae" in header and "val_count_mae" in header
    selected = next(line for line in card.splitlines() if line.startswith("| selected:"))
    column = header.split(" | ").index("val_count_mae")
    assert float(selected.split(" | ")[column]) == pytest.approx(float(log["val_count_mae"][0]), abs=1e-4)
    assert "Output: a density map (dot annotations blurred by a Gaussian of sigma 2.0 px)" in card
    assert "calibrated" not in card  # this run was not (--calibrate-counts)
