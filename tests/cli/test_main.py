"""The installed command end to end, in subprocesses: every verb on tiny data, quiet stderr, one-line errors."""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import write_isbi_crops

pytestmark = pytest.mark.tensorflow_only(reason="runs the TensorFlow CLI")
NOISE = ("cudart_stub", "cuInit", "cpu_feature_guard", "oneDNN", "absl::InitializeLog", "TF_ENABLE_ONEDNN_OPTS")


def kfcn(*arguments, backend="tensorflow"):
    """Runs `python -m kfcn.cli ...` in a fresh process; returns (exit status, stdout, stderr)."""
    return started(*arguments, backend=backend)()


def started(*arguments, backend="tensorflow"):
    """Starts `python -m kfcn.cli ...` in a fresh process; returns a function that waits for it and
    returns (exit status, stdout, stderr). Commands that do not depend on each other overlap: most
    of each one is Python importing the backend, on one core."""
    environment = os.environ | {"KERAS_BACKEND": backend}
    process = subprocess.Popen(
        [sys.executable, "-m", "kfcn.cli", *map(str, arguments)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
    )

    def result():
        out, err = process.communicate()
        return process.returncode, out, err

    return result


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_isbi_crops(tmp_path_factory.mktemp("lifecycle"), count=4, side=40)


def test_train_predict_evaluate_export_inspect_with_a_quiet_stderr(data, tmp_path):
    run = tmp_path / "run"
    train = ["train", "--images", data / "images", "--labels", data / "labels", "--output", run]
    train += ["--filters", "2", "--depth", "2", "--crop", "32", "--batch", "2", "--epochs", "2", "--steps", "2"]
    code, out, err = kfcn(*train)
    assert (code, err) == (0, ""), err
    assert "best val_pixel_error" in out and (run / "model.keras").is_file()
    model, scores = run / "model.keras", tmp_path / "scores.json"
    predicted = started("predict", data / "images", "--model", model, "--output", tmp_path / "pred")
    evaluated = started("evaluate", data / "images", data / "labels", "--model", model, "--json", scores)
    exported = started("export", model, "--format", "tflite", "--output", tmp_path / "m.tflite")
    inspected = started("inspect", model)
    code, out, err = predicted()
    assert (code, err) == (0, "") and "wrote 4 image(s)" in out
    assert len(list((tmp_path / "pred").glob("*_overlay.png"))) == 4
    code, out, err = evaluated()
    assert (code, err) == (0, "") and "Rand error" in out
    assert len(json.loads(scores.read_text())["per_image"]) == 4
    code, out, err = exported()
    assert (code, err) == (0, "") and (tmp_path / "m.tflite").stat().st_size > 0
    code, out, err = inspected()
    assert (code, err) == (0, "") and "total stride 4" in out


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_no_backend_log_unless_verbose(data, tmp_path, backend):
    code, out, err = kfcn("predict", data / "images" / "s0.png", "--output", tmp_path / "out", backend=backend)
    assert (code, err) == (0, "") and "unet_isbi.keras" in out
    if backend == "tensorflow":
        code, out, err = kfcn("--verbose", "predict", data / "images" / "s0.png", "--output", tmp_path / "v")
        assert code == 0 and any(line in err for line in NOISE), "--verbose should keep the backend's log"


def test_errors_are_one_line_without_traceback(tmp_path):
    code, out, err = kfcn("predict", tmp_path / "absent.png", "--output", tmp_path / "out")
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("kfcn predict: error: Image") and "absent.png does not exist" in err


def test_python_dash_m_kfcn_is_the_kfcn_command():
    done = subprocess.run([sys.executable, "-m", "kfcn", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stderr == ""
    assert all(verb in done.stdout for verb in ("train", "predict", "evaluate", "export", "inspect"))


def test_version():
    import kfcn as package

    assert kfcn("--version")[1].strip() == f"kfcn {package.__version__}"


def test_sigterm_stops_training_in_words_and_the_same_command_resumes(data, tmp_path):
    import signal
    import time

    arguments = ["-m", "kfcn.cli", "train", "--images", data / "images", "--labels", data / "labels"]
    arguments += ["--output", tmp_path / "run", "--filters", "2", "--depth", "2", "--crop", "32", "--batch", "2"]
    arguments += ["--epochs", "30", "--steps", "4"]
    environment = os.environ | {"KERAS_BACKEND": "tensorflow"}
    process = subprocess.Popen(
        [sys.executable, *map(str, arguments)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
    )
    log = tmp_path / "run" / "training.csv"
    deadline = time.time() + 300
    while time.time() < deadline and (not log.is_file() or len(log.read_text().splitlines()) < 3):
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, stderr[-2000:]
    assert "stopped (SIGTERM)" in stderr and "rerun the same command to resume" in stderr
    # Not a terminal: one plain line per epoch, no progress bar's escape codes; the held-out images named.
    assert "\x1b[" not in stdout and "validation: 1 held-out image(s), the last 20% by name: s3.png" in stdout
    assert "epoch(s) left should take about" in stdout
    assert len(read_log_rows(log)) < 30
    done = subprocess.run([sys.executable, *map(str, arguments)], capture_output=True, text=True, env=environment)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "resuming" in done.stdout and read_log_rows(log) == list(range(1, 31))


def read_log_rows(path):
    from kfcn.training import read_log

    return read_log(path)["epoch"].tolist()
