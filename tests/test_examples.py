"""Smoke tests of the example scripts' --quick modes (their full runs are documented in the README)."""

import doctest
import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from tests.conftest import write_isbi_crops
from tests.test_shipped_model import example_module

ROOT = Path(__file__).resolve().parents[1]
VGG_CELLS = ROOT.parent / "shared" / "datasets" / "vgg_cells"
pytestmark = pytest.mark.tensorflow_only(reason="the examples use tf.data")


def run_example(name, tmp_path, *arguments, quick=True):
    """Runs `examples/NAME --quick ARGUMENTS` (without --quick if not `quick`) in a subprocess in `tmp_path`;
    returns its stdout."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name), *(["--quick"] if quick else []), *map(str, arguments)],
        capture_output=True,
        text=True,
        env=os.environ | {"KERAS_BACKEND": "tensorflow"},
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.parametrize(
    "name", sorted(path.stem for path in (ROOT / "examples").glob("*.py") if ">>>" in path.read_text())
)
def test_the_docstring_examples_of_the_example_modules_hold(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # whatever an example writes stays in tmp_path
    failures, tried = doctest.testmod(example_module(name), optionflags=doctest.ELLIPSIS)
    assert tried and not failures


@pytest.mark.skipif(not VGG_CELLS.is_dir(), reason="needs ../shared/datasets/vgg_cells (CI has it)")
def test_count_cells_quick(tmp_path):
    report = tmp_path / "report.json"
    assert "N = 8: MAE" in run_example("count_cells.py", tmp_path, "--report", report) and report.is_file()


@pytest.mark.skipif(not VGG_CELLS.is_dir(), reason="needs ../shared/datasets/vgg_cells (CI has it)")
def test_counter_runs_trains_scores_and_ships_with_kfcn_and_skips_finished_runs(tmp_path):
    arguments = ["--runs", "runs", "--report", "counter.json", "--ship", "shipped/counter.keras"]
    first = run_example("counter_runs.py", tmp_path, *arguments)
    report = json.loads((tmp_path / "counter.json").read_text())
    assert "vgg-cells-n4/run-e1-s0: training" in first
    assert len(report["train_images"]) == 4 and len(report["held_out_images"]) == 96
    assert not set(report["train_images"]) & set(report["held_out_images"])
    assert (
        sorted(int(path.name[:3]) for path in (tmp_path / "runs" / "vgg-cells-n4" / "images").iterdir())
        == report["train_images"]
    )
    held_out = json.loads((tmp_path / "runs" / "vgg-cells-n4" / "run-e1-s0-heldout.json").read_text())["per_image"]
    errors = [image["predicted_count"] - image["true_count"] for image in held_out]
    assert report["result"]["mae"] == pytest.approx(np.abs(errors).mean())
    assert (
        report["seeds"] == [report["result"]] and "RUNS" in report["command"] and str(tmp_path) not in report["command"]
    )
    shipped = tmp_path / "shipped"
    assert sorted(path.name for path in shipped.iterdir()) == [
        "counter.keras",
        "counter.md",
        "counter_config.json",
        "counter_curves.png",
        "counter_training.csv",
    ]
    card = (shipped / "counter.md").read_text()
    assert "`kfcn train --recipe vgg-cells` without `--images` says where its data come from" in card
    assert "## Held-out scores: `val-images`" in card and f"| {report['result']['mae']:.4f} |" in card
    again = run_example("counter_runs.py", tmp_path, *arguments)  # a finished run is scored again, not retrained
    assert "run-e1-s0: training" not in again and json.loads((tmp_path / "counter.json").read_text()) == report

    # its deployment forms, exported and scored on the same held-out images: Keras agrees with kfcn evaluate
    exported = ["--model", shipped / "counter.keras", "--card", "counter.json", "--output", "exports"]
    run_example("export_counter.py", tmp_path, *exported, "--report", "deployment.json", quick=False)
    forms = json.loads((tmp_path / "deployment.json").read_text())["metrics_over_held_out_images"]
    assert forms["keras"]["mae"] == pytest.approx(report["result"]["mae"], abs=1e-3)
    assert forms["tflite_float32"]["mae"] == pytest.approx(report["result"]["mae"], abs=1e-2)
    assert sorted(forms) == ["keras", "saved_model", "tflite_float16", "tflite_float32", "tflite_int8"]
    assert (tmp_path / "exports" / "vgg_cells_counter_int8.tflite").is_file()


def test_restore_isbi_quick(tmp_path):
    report, figure = tmp_path / "report.json", tmp_path / "figure.png"
    run_example("restore_isbi.py", tmp_path, "--report", report, "--figure", figure)
    scores = json.loads(report.read_text())
    assert [row["slice"] for row in scores["per_slice"]] == [20, 21, 22, 23, 24] and figure.is_file()
    assert 10 < scores["mean"]["degraded"]["psnr"] < 40  # the degradation is real but not destructive


def test_galaxy_decomposition_quick(tmp_path):
    report = tmp_path / "report.json"
    run_example("galaxy_decomposition.py", tmp_path, "--report", report)
    assert set(json.loads(report.read_text())["components"]) == {"bulge", "disk"}


def test_touching_instances_quick(tmp_path):
    report, figure = tmp_path / "report.json", tmp_path / "figure.png"
    run_example("touching_instances.py", tmp_path, "--report", report, "--figure", figure)
    scores = json.loads(report.read_text())
    for method in ("three_class_watershed", "two_class_components"):
        assert 0 <= scores[method]["f1"] <= 1 and scores[method]["true_objects"] > 0
    assert scores["three_class_watershed"]["true_objects"] == scores["two_class_components"]["true_objects"]
    assert figure.is_file()


CAMVID = ROOT.parent / "shared" / "datasets" / "camvid"


@pytest.mark.skipif(not CAMVID.is_dir(), reason="needs ../shared/datasets/camvid (CI has it)")
def test_camvid_segmentation_quick(tmp_path):
    report, figure = tmp_path / "report.json", tmp_path / "figure.png"
    run_example("camvid_segmentation.py", tmp_path, "--report", report, "--figure", figure, "--output-dir", tmp_path)
    scores = json.loads(report.read_text())
    assert set(scores["results"]) == {"segnet", "unet"} and figure.is_file()
    for result in scores["results"].values():
        iou = [value for value in result["iou_per_class"].values() if value == value]  # not NaN
        assert len(result["iou_per_class"]) == 11 and abs(sum(iou) / len(iou) - result["mean_iou"]) < 0.01
    network = scores["better_by_mean_iou"]
    model = tmp_path / f"camvid_{network}.keras"
    assert model.is_file()
    # its deployment forms, exported and scored on two validation images: Keras agrees with the example's
    # own scoring of the same images, and the float32 file with Keras
    exported = ["--network", network, "--model", model, "--output", "exports", "--report", "deployment.json"]
    exported += ["--limit", "2"]
    run_example("export_camvid.py", tmp_path, *exported, quick=False)
    deployment = json.loads((tmp_path / "deployment.json").read_text())
    forms = deployment["metrics_over_validation_images"]
    assert sorted(forms) == ["keras", "saved_model", "tflite_float16", "tflite_float32", "tflite_int8"]
    assert deployment["validation_images"] == deployment["calibration_images"] == 2
    camvid = example_module("camvid_segmentation")
    images, labels = camvid.read_split(CAMVID, "val", limit=2)
    expected, _ = camvid.evaluate(keras.saving.load_model(model), images, labels)
    for name in ("global_accuracy", "class_accuracy", "mean_iou"):
        assert forms["keras"][name] == pytest.approx(expected[name], abs=0.01)
        assert forms["tflite_float32"][name] == pytest.approx(expected[name], abs=0.1)
    assert (tmp_path / "exports" / f"camvid_{network}_int8.tflite").is_file()
    assert deployment["command"].endswith(("" if network == "unet" else " --network segnet") + " --limit 2")


def test_contour_robustness_quick(tmp_path):
    report, figure = tmp_path / "report.json", tmp_path / "figure.png"
    run_example("contour_robustness.py", tmp_path, "--report", report, "--figure", figure)
    scores = json.loads(report.read_text())
    assert [run["labels"] for run in scores["runs"]] == ["clean", "perturbed"] and figure.is_file()
    assert 0.05 < scores["changed_training_pixels"] < 0.25  # 1-3 px contour moves change a real share
    assert all(len(run["per_slice"]) == 5 for run in scores["runs"])  # scored on slices 20-24


def test_camvid_scores_and_class_weights_by_hand():
    camvid = example_module("camvid_segmentation")
    scores = camvid.scores_from_confusion(np.array([[3, 1], [1, 5]]))  # rows: truth, columns: prediction
    assert scores["global_accuracy"] == pytest.approx(80.0)
    assert scores["class_accuracy"] == pytest.approx(100 * (3 / 4 + 5 / 6) / 2)
    assert scores["mean_iou"] == pytest.approx(100 * (3 / 5 + 5 / 7) / 2)
    # Class 0 covers 6 of the 8 pixels of the two images holding it, class 1 2 of 4: f = 0.75, 0.5.
    weights = camvid.median_frequency_weights([np.zeros((2, 2), np.uint8), np.array([[0, 0], [1, 1]], np.uint8)])
    assert weights[:2] == pytest.approx([0.625 / 0.75, 0.625 / 0.5]) and not weights[2:].any()  # absent, void: 0


def test_train_isbi_trains_then_fine_tunes_without_weights_on_a_cosine_schedule(tmp_path, monkeypatch, capsys):
    # In this process (the script's main(), its own argument parsing), on the top-left 128 x 128 of
    # seven ISBI slices in place of the shipped 25 x 512 x 512: the same split (the last five held
    # out) and the same code, without the U-Net weight maps of 20 full slices (most of a minute).
    train_isbi = example_module("train_isbi")
    slices = write_isbi_crops(tmp_path / "isbi", count=7, side=128)
    monkeypatch.setattr(train_isbi, "isbi2012_dir", lambda: slices)
    first, second = tmp_path / "first" / "unet.keras", tmp_path / "second" / "unet.keras"
    tiny = ["--epochs", "1", "--steps", "1", "--crop", "64", "--batch", "1"]

    def train(*arguments):
        """Runs the script's main() with `arguments`; returns its exit status."""
        monkeypatch.setattr(sys, "argv", ["train_isbi.py", *tiny, *map(str, arguments)])
        try:
            train_isbi.main()
        except SystemExit as stopped:  # argparse's refusals
            return stopped.code
        finally:
            keras.backend.clear_session(free_memory=False)
        return 0

    fine_tune = ["--output", second, "--init", first, "--weight-map", "none", "--schedule", "cosine"]
    for arguments in (["--filters", 2, "--output", first], fine_tune):
        assert train(*arguments) == 0, capsys.readouterr().err[-2000:]
    summary = json.loads((second.parent / "unet_training.json").read_text())
    for flag in (f"--init {first}", "--weight-map none", "--schedule cosine", "--learning-rate 0.001"):
        assert flag in summary["command"]
    assert "--jit" not in summary["command"] and "--filters" not in summary["command"] and summary["parameters"] > 0
    first_weights = keras.saving.load_model(first, compile=False).get_weights()
    second_weights = keras.saving.load_model(second, compile=False).get_weights()
    assert [w.shape for w in first_weights] == [w.shape for w in second_weights]  # the same network, fine-tuned
    assert any(not np.array_equal(a, b) for a, b in zip(first_weights, second_weights))

    capsys.readouterr()
    assert train("--filters", 32, "--init", first, "--output", tmp_path / "third" / "unet.keras") == 2
    assert "--init fine-tunes a model that has its own" in capsys.readouterr().err
    assert not (tmp_path / "third").exists()


def test_export_camvid_refuses_a_limit_below_one_before_writing(tmp_path):
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "export_camvid.py"), "--limit", "0", "--report", "report.json"],
        capture_output=True,
        text=True,
        env=os.environ | {"KERAS_BACKEND": "tensorflow"},
        cwd=tmp_path,
    )
    assert done.returncode != 0 and "--limit 0: give at least 1 validation image" in done.stderr
    assert list(tmp_path.iterdir()) == []


EXPORT_RUN = """
import os, signal, sys
import numpy as np
sys.path.insert(0, {examples!r})
import kfcn
import deployment_forms

output, run = sys.argv[1], sys.argv[2]
if run == "killed":  # SIGKILL at the int8 file: the SavedModel and two TFLite files are written by then
    tflite = kfcn.export.tflite
    def dying(model, path, quantize=None, *arguments, **options):
        if quantize == "int8":
            os.kill(os.getpid(), signal.SIGKILL)
        return tflite(model, path, quantize, *arguments, **options)
    kfcn.export.tflite = dying
model = kfcn.models.unet((None, None, 1), filters=2, depth=1, input_range=(0, 255))
images = [np.random.default_rng(0).uniform(0, 255, (16, 16, 1)).astype("float32")]
deployment_forms.export_and_score(
    model, "tiny.keras", output, "tiny", calibration=images, input_shape=(16, 16), metadata={{"run": run}},
    images=images, score=lambda outputs: {{"mean": float(np.mean(outputs))}},
    report=os.path.join(output, "report.json"), command=run, table_key="metrics",
)
"""


def test_a_stopped_export_leaves_every_old_form_and_the_next_replaces_them_all(tmp_path):
    # The export scripts stage their forms and report (examples/deployment_forms.export_and_score): a kill while
    # writing them leaves the forms and the report of the last export, all of one export, whole; the next one
    # replaces all.
    output = tmp_path / "forms"
    (output / "tiny_serving" / "7").mkdir(parents=True)  # another version of the served model: kept
    code = EXPORT_RUN.format(examples=str(ROOT / "examples"))
    environment = os.environ | {"KERAS_BACKEND": "tensorflow"}

    def export(run):
        return subprocess.run([sys.executable, "-c", code, str(output), run], env=environment, capture_output=True)

    def contents():
        return {str(path.relative_to(output)): path.read_bytes() for path in output.rglob("*") if path.is_file()}

    def runs_named_by_the_cards():
        cards = [output / "tiny_serving" / "1" / "kfcn_model_card.json", *output.glob("*.tflite.kfcn_model_card.json")]
        return sorted(json.loads(card.read_text())["metadata"]["run"] for card in cards)

    first = export("first")
    assert first.returncode == 0, first.stderr.decode()[-2000:]
    report = json.loads((output / "report.json").read_text())
    assert report["files"]["tflite_int8"]["path"] == str(output / "tiny_int8.tflite")  # the final path, not the staged
    assert report["command"] == "first" and report["model"] == "tiny.keras"
    assert sorted(report["metrics"]) == ["keras", "saved_model", "tflite_float16", "tflite_float32", "tflite_int8"]
    before = contents()
    assert runs_named_by_the_cards() == ["first"] * 4
    killed = export("killed")
    assert killed.returncode == -9, killed.stderr.decode()[-2000:]
    assert {name: data for name, data in contents().items() if ".kfcn-partial-" not in name} == before
    assert export("third").returncode == 0
    assert runs_named_by_the_cards() == ["third"] * 4
    assert json.loads((output / "report.json").read_text())["command"] == "third"
    assert not [path for path in output.rglob("*") if ".kfcn-partial-" in path.name]  # the killed staging is gone
    assert (output / "tiny_serving" / "7").is_dir()


def test_isbi_error_analysis_splits_the_pixel_error_and_its_section_states_the_report(tmp_path):
    import kfcn.models
    from kfcn.cli.common import file_sha256
    from kfcn.evaluation import best_rand_error, pixel_errors_by_edge_distance
    from kfcn.inference import predict

    model = kfcn.models.unet((None, None, 1), filters=2, depth=2, input_range=(0, 255))
    model.save(tmp_path / "tiny.keras")
    rows = "".join(f"{epoch},{100 * epoch},0.2,0.{epoch:02d}\n" for epoch in range(1, 41))
    (tmp_path / "training.csv").write_text("epoch,cpu_seconds,pixel_error,val_pixel_error\n" + rows)
    arguments = ["--model", "tiny.keras", "--log", "training.csv", "--output", "report.json", "--figure", "f.png"]
    printed = run_example("isbi_error_analysis.py", tmp_path, *arguments)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["model_sha256"] == file_sha256(tmp_path / "tiny.keras") and (tmp_path / "f.png").is_file()
    assert report["held_out"]["slices"] == ["slice_20"] and report["training"]["slices"] == ["slice_00"]
    analysis = example_module("isbi_error_analysis")
    image, label = analysis.slice_pair(20)
    expected = pixel_errors_by_edge_distance(predict(model, image), label, tolerances=(1, 2))
    for key, value in expected.items():
        assert report["held_out"]["mean"][key] == pytest.approx(value, abs=1e-6), key
    assert report["held_out"]["mean"]["pixel_error_best_threshold"] <= expected["pixel_error"]
    rand = best_rand_error(predict(model, image)[..., -1:], label)["adapted_rand_error"]
    assert report["held_out"]["mean"]["rand_error_singletons"] == pytest.approx(rand, abs=1e-6)
    first, last = report["learning_curve"]
    assert first["epochs"] == [1, 30] and last["epochs"] == [31, 40]
    assert last["cpu_hours"] == pytest.approx(100 * sum(range(1, 41)) / 3600)
    assert first["val_pixel_error"] == pytest.approx(np.mean([epoch / 100 for epoch in range(1, 31)]))
    assert report["markdown"] == analysis.markdown(report) and report["markdown"] in printed
    assert "| held-out slices 20 |" in report["markdown"] and "| training slices 00, whole |" in report["markdown"]
