"""Recipes: every shipped recipe resolves to valid `kfcn train` options, and one trains (shrunk by flags)."""

import json

import pytest

from kfcn.cli.train_options import OPTIONS
from kfcn.recipes import RECIPES, recipe
from kfcn.saving import load_model
from kfcn.training import recipe as training_recipe


@pytest.mark.parametrize("name", RECIPES)
def test_a_recipe_holds_every_training_choice_as_valid_options(name):
    options = recipe(name)
    assert set(options) <= set(OPTIONS), sorted(set(options) - set(OPTIONS))
    chosen = {"model", "filters", "crop", "augment", "weight_map", "loss", "optimizer", "schedule", "epochs"}
    assert chosen | {"ema", "monitor", "learning_rate", "steps", "batch"} <= set(options)
    assert training_recipe(name) == options


def test_an_unknown_recipe_lists_the_shipped_ones():
    with pytest.raises(ValueError, match="isbi2012"):
        recipe("isbi2013")


@pytest.mark.tensorflow_only(reason="tf.data pipelines")
def test_train_from_a_recipe_with_flags_on_top(tmp_path):
    from kfcn.cli import main

    run = tmp_path / "run"
    # --weight-map none: the border weights of the recipe's twenty 512 x 512 slices take most of a minute.
    shrink = ["--filters", "2", "--depth", "2", "--crop", "32", "--epochs", "1", "--steps", "1", "--no-jit-compile"]
    shrink += ["--final-precise-bn", "0"]
    assert main(["train", "--recipe", "isbi2012", "--output", str(run), *shrink, "--weight-map", "none"]) == 0
    config = json.loads((run / "config.json").read_text())
    shrunk = {"filters": 2, "depth": 2, "crop": 32, "epochs": 1, "steps": 1, "final_precise_bn": 0}
    expected = recipe("isbi2012") | shrunk
    assert {key: config[key] for key in expected} == expected | {"jit_compile": False, "weight_map": "none"}
    assert config["recipe"] == "isbi2012" and config["images"].endswith("isbi2012/images")
    assert load_model(run / "model.keras").name == "unet_isbi"  # the shipped model's name, from model_options
    assert main(["train", "--recipe", "nope", "--output", str(tmp_path / "other")]) == 2


def test_the_isbi_recipe_holds_the_shipped_u_nets_settings():
    # The shipped U-Net's run folder config (beside its card, saved_models/unet_isbi_config.json) holds every value
    # of the recipe: the data as the package's samples, and `precision: auto` as auto decides on a native-BF16 CPU.
    from pathlib import Path

    from kfcn.cli.train import precision_used

    root = Path(__file__).resolve().parents[1]
    shipped = json.loads((root / "saved_models" / "unet_isbi_config.json").read_text())
    options = recipe("isbi2012")
    assert shipped["recipe"] == "isbi2012" and options["precision"] == "auto"
    for key in ("images", "labels"):
        assert shipped[key] == f"kfcn/assets/isbi2012/{key}" and options[key].endswith(f"isbi2012/{key}")
    settled = set(options) - {"images", "labels", "precision", "jit_compile"}
    assert {key: shipped[key] for key in settled} == {key: options[key] for key in settled}
    native_bf16 = precision_used(options, {"bf16": True, "gpu": False})
    assert {key: shipped["precision_used"][key] for key in ("precision", "jit_compile")} == {
        key: native_bf16[key] for key in ("precision", "jit_compile")
    }
