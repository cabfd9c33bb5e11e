"""`kfcn train --class-weights`: parsed and refused in one place, recorded in the run folder, kept on resuming;
the CamVid recipes load, name only known options and ask for the data kfcn does not ship."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kfcn.cli import main
from kfcn.cli.train import precision_used
from kfcn.cli.train_data import class_weight_values
from kfcn.cli.train_options import OPTIONS
from kfcn.recipes import RECIPES, data_requirements, recipe
from kfcn.training import median_frequency_weights
from kfcn.training import recipe as training_recipe
from tests.cli.conftest import error_of, write_pairs

ROOT = Path(__file__).resolve().parents[2]
VOID = 3


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Three 16 x 16 RGB images with labels of classes 0-2 and void 3, drawn differently per image."""
    rng = np.random.default_rng(0)
    images, labels = [], []
    for index in range(3):
        label = np.zeros((16, 16), np.uint8)
        label[: 4 + 4 * index] = 1
        label[:, 12:] = 2 if index != 1 else 0
        label[-2:] = VOID
        images.append(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
        labels.append(label)
    return write_pairs(tmp_path_factory.mktemp("class_weight_data"), images, labels)


def command(data, output, *options):
    return [
        "train", "--images", str(data / "images"), "--labels", str(data / "labels"), "--output", str(output),
        "--label-mode", "index", "--num-classes", "3", "--ignore-class", str(VOID),
        "--model", "unet", "--filters", "2", "--depth", "1", "--crop", "16", "--batch", "1",
        "--epochs", "1", "--steps", "1", "--augment", "none", "--loss", "ce", "--no-jit-compile",
        *options,
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("1,2", "2 weight(s) for --num-classes 3"),
        ("1,2,3,4", "4 weight(s) for --num-classes 3"),
        ("1,x,3", "'x' (class 1) is not a number"),
        ("1,-2,3", "the weight of class 1 is '-2'"),
        ("1,inf,3", "the weight of class 1 is 'inf'"),
        ("0,0,0", "every weight is 0"),
        ("median", "'median' (class 0) is not a number"),
    ],
)
def test_wrong_explicit_weights_are_refused_naming_the_problem_and_the_fix(data, tmp_path, capsys, value, problem):
    err = error_of(command(data, tmp_path / "run", "--class-weights", value), capsys)
    assert f"--class-weights: {problem}" in err
    if "number" in problem or "weight(s)" in problem:
        assert "give none, median-frequency, sqrt-median-frequency, or 3 comma-separated numbers W0,...,W2" in err
    assert not (tmp_path / "run" / "config.json").exists()


def test_class_weights_need_class_index_labels_and_do_not_combine_with_the_unet_weight_map(data, tmp_path, capsys):
    binary = [*command(data, tmp_path / "run", "--class-weights", "median-frequency"), "--label-mode", "binary"]
    binary = [part for part in binary if part not in ("--ignore-class", str(VOID), "--num-classes", "3")]
    assert "--class-weights applies to --label-mode index" in error_of(binary, capsys)
    unet = [*binary, "--weight-map", "unet"]
    assert "--class-weights and --weight-map unet do not combine" in error_of(unet, capsys)


@pytest.mark.tensorflow_only(reason="tf.data pipelines")
def test_median_frequency_weights_come_from_the_training_images_and_a_resumed_run_keeps_them(data, tmp_path, capsys):
    run = tmp_path / "run"
    # --val-fraction 0.3 holds out the last of the three images: its labels must not count.
    argv = command(data, run, "--class-weights", "median-frequency", "--val-fraction", "0.3")
    assert main(argv) == 0
    out = capsys.readouterr().out
    training_labels = [np.asarray(Image.open(data / "labels" / f"{index}.png")) for index in (0, 1)]
    expected = median_frequency_weights(training_labels, 3, ignore_class=VOID)
    config = json.loads((run / "config.json").read_text())
    assert config["class_weights"] == "median-frequency"
    np.testing.assert_allclose(config["class_weight_values"], expected, rtol=1e-6)
    assert json.loads((run / "summary.json").read_text())["class_weights"] == config["class_weight_values"]
    shown = ", ".join(f"{index}: {weight:.4g}" for index, weight in enumerate(config["class_weight_values"]))
    assert out.count("class weights") == 1 and f"class weights (median-frequency): {shown}" in out

    # Extending the run reads the recorded weights back rather than computing them again.
    recorded = config["class_weight_values"]
    config["class_weight_values"] = [7.0, 8.0, 9.0]  # stands for weights the data would no longer give
    (run / "config.json").write_text(json.dumps(config))
    assert main([*argv[: argv.index("--epochs")], "--epochs", "2", *argv[argv.index("--epochs") + 2 :]]) == 0
    assert "class weights (recorded in config.json): 0: 7, 1: 8, 2: 9" in capsys.readouterr().out
    assert json.loads((run / "config.json").read_text())["class_weight_values"] == [7.0, 8.0, 9.0]
    assert recorded != [7.0, 8.0, 9.0]


@pytest.mark.tensorflow_only(reason="tf.data pipelines")
def test_explicit_weights_are_recorded_as_given(data, tmp_path, capsys):
    run = tmp_path / "run"
    assert main([*command(data, run, "--class-weights", "5,1,2.5", "--val-fraction", "0")]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["class_weights"] == [5.0, 1.0, 2.5] and config["class_weight_values"] == [5.0, 1.0, 2.5]
    assert "class weights (as given): 0: 5, 1: 1, 2: 2.5" in capsys.readouterr().out


def test_an_ignore_class_among_the_classes_weighs_0_whatever_it_is_given():
    config = {"class_weights": [5.0, 1.0, 2.5], "ignore_class": 0, "num_classes": 3}
    assert class_weight_values(config, train=None) == [0.0, 1.0, 2.5]
    assert class_weight_values({"class_weights": "none"}, train=None) is None


@pytest.mark.parametrize("name", ["camvid-unet", "camvid-segnet"])
def test_the_camvid_recipes_load_name_known_options_and_ask_for_their_data(name, tmp_path, capsys):
    assert name in RECIPES
    options = recipe(name)
    assert set(options) <= set(OPTIONS), sorted(set(options) - set(OPTIONS))
    assert training_recipe(name) == options
    assert options["class_weights"] in ("median-frequency", "sqrt-median-frequency")
    assert options["label_mode"] == "index" and (options["num_classes"], options["ignore_class"]) == (11, 11)
    assert "images" not in options and data_requirements(name)[0] == ("images", "labels")
    err = error_of(["train", "--recipe", name, "--output", str(tmp_path / "run")], capsys)
    assert f"Recipe {name} trains on data kfcn does not ship: give --images DIR --labels DIR" in err
    assert "../shared/datasets/camvid" in err
    assert not (tmp_path / "run").exists()


SHIPPED_CAMVID = sorted(path.stem.split("_")[1] for path in (ROOT / "saved_models").glob("camvid_*_config.json"))


@pytest.mark.parametrize("network", SHIPPED_CAMVID)
def test_a_camvid_recipe_holds_its_shipped_models_settings(network):
    name = f"camvid-{network}"
    options = recipe(name)
    # the shipped network's run folder config (copied beside its card by kfcn card) holds every recipe value;
    # `precision: auto` is decided by the machine, so the shipped run's choice is what auto makes on its CPU
    shipped = json.loads((ROOT / "saved_models" / f"camvid_{network}_config.json").read_text())
    assert shipped["recipe"] == name and shipped["model"] == network
    machine_dependent = {"precision", "jit_compile"} if options["precision"] == "auto" else set()
    assert {key: shipped[key] for key in options if key not in machine_dependent} == {
        key: value for key, value in options.items() if key not in machine_dependent
    }
    if machine_dependent:
        native_bf16 = precision_used(options, {"bf16": True, "gpu": False})
        assert {key: shipped["precision_used"][key] for key in ("precision", "jit_compile")} == {
            key: native_bf16[key] for key in ("precision", "jit_compile")
        }
    assert options["class_weights"] == "sqrt-median-frequency"


def test_the_shipped_camvid_unet_is_among_the_checked():
    assert "unet" in SHIPPED_CAMVID and recipe("camvid-unet")["filters"] == 12


def test_the_help_lists_every_recipe(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "2000")  # argparse would break camvid-segnet at its hyphen
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert all(name in text for name in RECIPES) and "--class-weights" in text


class _Tensor:
    def __init__(self, array):
        self.array = array

    def numpy(self):
        return self.array


def test_sqrt_median_frequency_is_the_square_root_of_segnets_rule():
    labels = [np.array([[0, 0, 0, 1]]), np.array([[2, 2, 0, VOID]])]
    train = [(None, _Tensor(label[..., None])) for label in labels]
    config = {"class_weights": "sqrt-median-frequency", "num_classes": 3, "ignore_class": VOID}
    full = median_frequency_weights(labels, 3, ignore_class=VOID)
    np.testing.assert_allclose(class_weight_values(config, train), np.sqrt(full), rtol=1e-6)
    assert "sqrt-median-frequency" in OPTIONS["class_weights"][2]
