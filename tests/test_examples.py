"""Smoke tests of the example scripts' --quick modes (their full runs are documented in the README)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import pytest

ROOT = Path(__file__).resolve().parents[1]
VGG_CELLS = ROOT.parent / "shared" / "datasets" / "vgg_cells"
pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="the examples use tf.data")


def run_example(name, tmp_path, *arguments):
    """Runs `examples/NAME --quick ARGUMENTS` in a subprocess in `tmp_path`; returns its stdout."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name), "--quick", *map(str, arguments)],
        capture_output=True,
        text=True,
        env=os.environ | {"KERAS_BACKEND": "tensorflow"},
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.skipif(not VGG_CELLS.is_dir(), reason="needs ../shared/datasets/vgg_cells (CI has it)")
def test_count_cells_quick(tmp_path):
    report = tmp_path / "report.json"
    assert "N = 8: MAE" in run_example("count_cells.py", tmp_path, "--report", report) and report.is_file()


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
