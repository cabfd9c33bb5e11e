"""The README's and the model card's tables and figures agree with the shipped files and tools.

Tables: `docs/make_tables.py` makes each one from `saved_models/*.json` (no model runs); the
committed text between its markers must be exactly that. Figures: every picture the README
shows is drawn by `make figures` or named in the Makefile as needing a training run. The two
numbers the README states about the shipped U-Net's pictures (its effective receptive field,
the mosaic's pixel errors) are measured again by the slow tests.
"""

import importlib.util
import re
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _module(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_tables = _module(ROOT / "docs" / "make_tables.py", "make_tables")


@pytest.fixture(scope="module")
def tables():
    return make_tables.render(), make_tables.committed()


@pytest.mark.parametrize("name", list(make_tables.TABLES))
def test_committed_table_is_the_one_the_shipped_json_gives(tables, name):
    rendered, committed = tables
    markdown = make_tables.TABLES[name][0]
    assert committed[name] == rendered[name], (
        f"The table {name!r} in {markdown} disagrees with the shipped files; run `python docs/make_tables.py` "
        "(or `make figures`) and commit the result, never edit it by hand."
    )


def test_make_tables_rewrites_a_stale_table_and_nothing_else(tmp_path):
    (tmp_path / "saved_models").mkdir()
    for entry in (ROOT / "saved_models").iterdir():
        if entry.name != "README.md":
            (tmp_path / "saved_models" / entry.name).symlink_to(entry)
    shutil.copy(ROOT / "saved_models" / "README.md", tmp_path / "saved_models" / "README.md")
    original = (ROOT / "README.md").read_text()
    goal = "| the goal for the shipped model | ≤ 0.07 | ≤ 0.06 (`singletons`), thin ≤ 0.035 |"
    stale = original.replace(goal, "| the goal | 0.5 | 0.5 |")
    assert stale != original
    (tmp_path / "README.md").write_text(stale)
    assert make_tables.write(tmp_path) == ["isbi-results"]
    assert (tmp_path / "README.md").read_text() == original
    assert make_tables.write(tmp_path) == []


@pytest.mark.parametrize("shipped", [False, True])
def test_the_isbi_recipe_run_gets_its_rows_kept_as_an_experiment_or_shipped(tmp_path, shipped):
    # A stand-in run of `kfcn train --recipe isbi2012`: its card's config and log, and a validation table (the
    # 16-filter U-Net's with one score changed). Shipped, its files are saved_models/unet_isbi_* and the 16-filter
    # U-Net's move to experiments/unet_isbi_f16_plateau_*; kept, its files are experiments/unet_isbi_recipe_*.
    import json
    import shutil

    models = tmp_path / "saved_models"
    experiments = ROOT / "saved_models" / "experiments"
    # copies, not links: the files written below would go through a link into the committed ones
    # (but for the recipe runs kept as experiments, which would add their rows)
    shutil.copytree(experiments, models / "experiments", ignore=shutil.ignore_patterns("unet_isbi_recipe*"))
    validation = json.loads((experiments / "unet_isbi_f16_plateau_validation.json").read_text())
    filters_16 = validation | {}
    run = validation | {"plain": validation["plain"] | {"mean": validation["plain"]["mean"] | {"pixel_error": 0.0812}}}
    config = {"recipe": "isbi2012", "filters": 32, "weight_map": "unet", "schedule": "cosine", "learning_rate": 0.001}
    config |= {"epochs": 90, "steps": 50, "precision": "mixed_bfloat16", "jit_compile": False}
    config["precision_used"] = {"precision": "mixed_bfloat16", "jit_compile": False, "why": "as given"}
    new, old = ("unet_isbi", "experiments/unet_isbi_f16_plateau") if shipped else ("experiments/unet_isbi_recipe", "")
    (models / f"{new}_config.json").write_text(json.dumps(config))
    (models / f"{new}_training.csv").write_text("epoch,seconds,stopped_seconds\n1,3600,NA\n2,4200,600\n")  # 2 h
    (models / f"{new}_validation.json").write_text(json.dumps(run))
    (models / (f"{old}_validation.json" if old else "unet_isbi_validation.json")).write_text(json.dumps(filters_16))
    training_16 = (experiments / "unet_isbi_f16_plateau_training.json").read_text()
    (models / (f"{old}_training.json" if old else "unet_isbi_training.json")).write_text(training_16)
    attempts = make_tables.isbi_attempts(tmp_path).splitlines()
    label = "filters 32, U-Net border weights, cosine from 0.001, `kfcn train --recipe isbi2012`, mixed bfloat16"
    pixel = "**0.0812**" if shipped else "0.0812"
    assert attempts[2].startswith(f"| {'**shipped**: ' if shipped else ''}{label} | 4,500 | 2.0 h | {pixel} | ")
    assert attempts[3].startswith('| the same, `tta="d4"` | | |')
    previous = "shipped until the recipe's run: " if shipped else "**shipped**: "
    assert attempts[4].startswith(f"| {previous}filters 16, U-Net border weights, plateau schedule | 2,000 | 32 min |")
    results = make_tables.isbi_results(tmp_path)
    assert ("| the 16-filter U-Net shipped before it | 0.0986 |" in results) == shipped
    assert ("(not shipped) | 0.0812 |" in results) == (not shipped)


def test_a_recipe_run_kept_beside_the_shipped_one_gets_its_rows_and_says_what_differs(tmp_path):
    # The shipped recipe run (the committed files) and the same run extended to 210 epochs, kept as an experiment
    # (experiments/unet_isbi_recipe_e210_*) since it did not beat it: a stand-in with one score changed.
    import json
    import shutil

    models = tmp_path / "saved_models"
    shutil.copytree(ROOT / "saved_models", models)  # copies, not links: the files written below stay in tmp_path
    shipped = json.loads((models / "unet_isbi_config.json").read_text())
    config = shipped | {"epochs": 210, "extended": [{"epochs_before": shipped["epochs"]}]}
    validation = json.loads((models / "unet_isbi_validation.json").read_text())
    extended = validation | {
        "plain": validation["plain"] | {"mean": validation["plain"]["mean"] | {"pixel_error": 0.0999}}
    }
    stem = models / "experiments" / "unet_isbi_recipe_e210"
    (stem.parent / f"{stem.name}_config.json").write_text(json.dumps(config))
    (stem.parent / f"{stem.name}_validation.json").write_text(json.dumps(extended))
    log = "epoch,cpu_seconds,seconds,stopped_seconds\n1,7200,3600,NA\n2,10800,5400,0\n"  # 2.5 h, 5 CPU h
    (stem.parent / f"{stem.name}_training.csv").write_text(log)
    attempts = make_tables.isbi_attempts(tmp_path).splitlines()
    assert (
        attempts[2].startswith("| **shipped**: filters 32, U-Net border weights")
        and "(3.5 CPU h) | **0.0936** |" in (attempts[2])
    )
    assert attempts[4].startswith(f"| the same run, extended from {shipped['epochs']} to 210 epochs | 10,500 | 2.5 h")
    assert attempts[4].startswith(
        "| the same run, extended from 90 to 210 epochs | 10,500 | 2.5 h (5.0 CPU h) | 0.0999 |"
    )
    assert attempts[6].startswith("| shipped until the recipe's run: filters 16")
    results = make_tables.isbi_results(tmp_path)
    assert (
        "| the 32-filter U-Net of `--recipe isbi2012` with border weights, 10,500 steps, 2.5 h (5.0 CPU h) (not "
        in (results)
    )


def test_a_shipped_camvid_segnet_gets_its_rows_beside_the_u_net(tmp_path):
    # A stand-in SegNet: the U-Net's files renamed, its config and parameter count and one score changed.
    import json

    models = tmp_path / "saved_models"
    models.mkdir()
    # links to the shipped files, none of the shipped SegNet's: the stand-in's files are written below, and
    # writing through a link would overwrite the shipped ones
    shipped = [entry for entry in (ROOT / "saved_models").iterdir() if not entry.name.startswith("camvid_segnet")]
    for entry in shipped:
        if entry.suffix == ".json" or entry.name.startswith("camvid_"):
            (models / entry.name).symlink_to(entry)
    evaluation = json.loads((models / "camvid_unet_evaluation.json").read_text())
    evaluation["parameters"] = 1417099
    evaluation["whole_set"]["mean_iou"] = 0.4821
    evaluation["whole_set"]["iou_per_class"][1] = 0.654
    config = json.loads((models / "camvid_unet_config.json").read_text())
    config |= {"recipe": "camvid-segnet", "model": "segnet", "filters": 64, "epochs": 50}
    config["precision_used"] = {"precision": "mixed_bfloat16", "jit_compile": False, "why": "as given"}
    config["model_options"] = {"kernel_size": 7, "upsampling": "indices"}
    (models / "camvid_segnet_evaluation.json").write_text(json.dumps(evaluation))
    (models / "camvid_segnet_config.json").write_text(json.dumps(config))
    # 3,000 s logged by its second epoch, 2,400 of them stopped (kill -STOP): 20 minutes of training, as the card says.
    (models / "camvid_segnet_training.csv").write_text("epoch,seconds,stopped_seconds\n1,600,NA\n2,3000,2400\n")
    scores = make_tables.camvid_scores(tmp_path).splitlines()
    assert scores[2].startswith("| **U-Net** (filters 12, depth 4), `kfcn train --recipe camvid-unet`")
    assert scores[3] == (
        "| **SegNet** (filters 64, depth 4, 7×7 convolutions, pooling-index unpooling), `kfcn train --recipe "
        "camvid-segnet`: 50 epochs of 50 steps, sqrt-median-frequency weights, mixed bfloat16 — shipped | 1,417,099 | "
        "**85.7** | **70.2** | **48.2** |"
    )
    per_class = make_tables.camvid_per_class(tmp_path).splitlines()
    assert [line.split(" |")[0] for line in per_class[2:4]] == ["| **shipped U-Net IoU**", "| **shipped SegNet IoU**"]
    assert per_class[3].split(" | ")[2] == "65.4"  # Building
    assert make_tables.camvid_scores(tmp_path).count("— shipped") == 2
    # Its deployment rows follow the U-Net's once its report is there, and the README's application row names both.
    assert "| network | form |" in make_tables.camvid_deployment(tmp_path)
    assert "| SegNet |" not in make_tables.camvid_deployment(tmp_path)
    (models / "camvid_segnet_deployment.json").symlink_to(ROOT / "saved_models" / "camvid_unet_deployment.json")
    deployment = make_tables.camvid_deployment(tmp_path).splitlines()
    forms = len(json.loads((models / "camvid_unet_deployment.json").read_text())["metrics_over_validation_images"])
    assert [line.split(" | ")[0] for line in deployment[2:]] == ["| U-Net"] * forms + ["| SegNet"] * forms
    assert [line.split(" | ", 1)[1] for line in deployment[2 + forms :]] == [
        line.split(" | ", 1)[1] for line in deployment[2 : 2 + forms]
    ]
    row = next(line for line in make_tables.applications(tmp_path).splitlines() if "CamVid road scenes" in line)
    assert (
        "the shipped U-Net and SegNet (`saved_models/camvid_unet.keras` and `saved_models/camvid_segnet.keras`" in row
    )
    assert "`kfcn train --recipe camvid-segnet` (224² crops" in row and "shipped SegNet **85.7 / 70.2 / 48.2**" in row
    assert "min (shipped U-Net) and 20 min (shipped SegNet); their cards name the machine" in row


def test_a_missing_marker_is_named(tmp_path):
    (tmp_path / "saved_models").mkdir()
    (tmp_path / "README.md").write_text("# kfcn\n\nNo tables here.\n")
    (tmp_path / "saved_models" / "README.md").write_text("")
    with pytest.raises(ValueError, match="README.md has no `<!-- table:isbi-results -->`"):
        make_tables.committed(tmp_path)


def test_every_readme_figure_exists_and_the_makefile_says_how_it_is_made():
    readme = (ROOT / "README.md").read_text()
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile[makefile.index("# Every README figure and table") : makefile.index("\nlint:")]
    shown = re.findall(r"!\[[^\]]*\]\((docs/images/[\w.-]+\.png)\)", readme)
    assert len(shown) >= 9
    for path in shown:
        assert (ROOT / path).is_file(), path
        assert Path(path).name in recipe, f"the Makefile's `figures` comment does not say how {path} is made"
    for script in re.findall(r"examples/\w+\.py|docs/\w+\.py", recipe):
        assert (ROOT / script).is_file(), script


needs_tensorflow = pytest.mark.tensorflow_only(reason="one backend is enough")


@pytest.mark.slow
@needs_tensorflow
def test_readme_and_card_state_the_receptive_field_kfcn_inspect_prints(tmp_path, capsys):
    from kfcn.cli import main
    from kfcn.samples import shipped_model_path

    assert main(["inspect", str(shipped_model_path()), "--erf", str(tmp_path / "erf.png")]) == 0
    printed = capsys.readouterr().out
    radius, theoretical = re.search(r"within (\d+) px of the centre .* theoretical (\d+) px", printed).groups()
    readme = " ".join((ROOT / "README.md").read_text().split())
    card = " ".join((ROOT / "saved_models" / "README.md").read_text().split())
    assert f"gradient lies within {radius} px, half of the {theoretical}-px theoretical field" in readme
    assert f"95 % of the gradient within {radius} px of the centre, half of the {theoretical}-px" in card
    assert int(radius) * 2 / int(theoretical) == pytest.approx(0.5, abs=0.05)  # "half"


@pytest.mark.slow
@needs_tensorflow
def test_readme_states_the_mosaic_pixel_errors_tiling_figure_measures():
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        tiling_figure = importlib.import_module("tiling_figure")
    finally:
        sys.path.pop(0)
    from kfcn.samples import shipped_model_path
    from kfcn.saving import load_model

    *_, errors = tiling_figure.mosaic_predictions(load_model(shipped_model_path()))
    readme = " ".join((ROOT / "README.md").read_text().split())
    card = " ".join((ROOT / "saved_models" / "README.md").read_text().split())
    assert f"scores pixel error {errors['tiled']:.3f} against {errors['resized']:.3f} for resizing" in readme
    assert f"tiled prediction pixel error {errors['tiled']:.4f}" in card
    assert f"resized to 512 and back {errors['resized']:.4f}" in card
