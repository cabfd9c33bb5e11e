"""The run folder of `kfcn train`: resuming, extending, overwriting and refusing what would mix two runs."""

import json
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest

from kfcn.cli import main
from kfcn.training import read_log
from tests.cli.conftest import CrashAfterEpoch, add_training_callback, train_command

pytestmark = pytest.mark.tensorflow_only(reason="tf.data pipelines")


def test_rerunning_an_interrupted_run_resumes_it_exactly(isbi_crops, tmp_path, monkeypatch, capsys):
    reference = tmp_path / "reference"
    options = ("--epochs", "3", "--val-fraction", "0")
    assert main(train_command(isbi_crops, reference, *options)) == 0
    run = tmp_path / "run"
    add_training_callback(monkeypatch, CrashAfterEpoch(2))
    assert main(train_command(isbi_crops, run, *options)) == 2
    assert "simulated crash" in capsys.readouterr().err
    assert (run / "backup").is_dir() and not (run / "summary.json").exists()
    # Other settings are refused rather than mixed into the interrupted run.
    add_training_callback(monkeypatch, None)
    assert main(train_command(isbi_crops, run, *options, "--learning-rate", "0.1")) == 2
    assert "learning_rate" in capsys.readouterr().err
    assert main(train_command(isbi_crops, run, *options)) == 0
    assert "resuming" in capsys.readouterr().out
    resumed, uninterrupted = read_log(run / "training.csv"), read_log(reference / "training.csv")
    assert resumed["epoch"].tolist() == [1, 2, 3]
    np.testing.assert_array_equal(resumed["loss"], uninterrupted["loss"])  # the same operations, bit for bit
    assert [p.name for p in (run / "backup").glob("*.weights.h5")] == ["epoch-00003.weights.h5"]  # the last state


def test_the_same_run_folder_and_data_by_other_paths_resume_and_other_data_is_refused(
    isbi_crops, tmp_path, monkeypatch, capsys
):
    # Started from one folder with relative paths, rerun from another with absolute ones and the data through a
    # link: the same run, so it resumes. A copy of the data elsewhere is other data, and is refused.
    options = ("--epochs", "2", "--val-fraction", "0")
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "data").symlink_to(isbi_crops)
    monkeypatch.chdir(tmp_path / "work")
    add_training_callback(monkeypatch, CrashAfterEpoch(1))
    assert main(train_command(Path("data"), Path("runs/a"), *options)) == 2
    capsys.readouterr()
    add_training_callback(monkeypatch, None)
    monkeypatch.chdir(tmp_path)
    copy = shutil.copytree(isbi_crops, tmp_path / "copy")
    assert main(train_command(copy, tmp_path / "work" / "runs" / "a", *options)) == 2
    assert "(images, labels differ)" in capsys.readouterr().err
    assert main(train_command(isbi_crops, tmp_path / "work" / "runs" / "a", *options)) == 0
    assert "resuming" in capsys.readouterr().out
    assert read_log(tmp_path / "work" / "runs" / "a" / "training.csv")["epoch"].tolist() == [1, 2]


def test_the_data_kfcn_ships_is_the_same_setting_from_any_install():
    from kfcn.cli.run_folder import _same_setting
    from kfcn.recipes import recipe

    here = recipe("isbi2012")["images"]
    assert _same_setting("images", "/elsewhere/venv/lib/site-packages/kfcn/assets/isbi2012/images", here)
    assert not _same_setting("images", "/elsewhere/kfcn/assets/isbi2012/labels", here)
    assert not _same_setting("images", "/elsewhere/kfcn/assets/no-such-sample/images", "/elsewhere/other/images")


def snapshot(folder):
    """Every file under `folder` with its bytes: what a failed command must leave as it was."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished(isbi_crops, tmp_path_factory):
    run = tmp_path_factory.mktemp("finished") / "run"
    assert main(train_command(isbi_crops, run, "--epochs", "1")) == 0
    return run


@pytest.mark.parametrize(
    "mistake, words",
    [
        (["--images", "no-such-folder"], "no-such-folder"),
        (["--crop", "30"], "--crop 30 does not suit the model"),
        (["--crop", "200"], "too small for --crop 200"),
        (["--monitor", "val_accuracy"], "--monitor val_accuracy is not a logged quantity"),
    ],
)
def test_overwrite_with_a_mistake_leaves_the_finished_run_untouched(isbi_crops, finished, mistake, words, capsys):
    before = snapshot(finished)
    argv = train_command(isbi_crops, finished, "--overwrite", "--epochs", "1")
    flag = argv.index(mistake[0]) if mistake[0] in argv else None
    argv = argv[:flag] + argv[flag + 2 :] + mistake if flag is not None else argv + mistake
    assert main(argv) == 2
    assert words in capsys.readouterr().err
    assert snapshot(finished) == before


class FailFirstStep(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        raise RuntimeError("disk full (simulated) in the first epoch")


def test_overwrite_that_fails_in_its_first_epoch_restores_the_old_run(isbi_crops, finished, monkeypatch, capsys):
    before = snapshot(finished)
    add_training_callback(monkeypatch, FailFirstStep())
    assert main(train_command(isbi_crops, finished, "--overwrite", "--epochs", "1", "--seed", "3")) == 2
    assert "disk full" in capsys.readouterr().err
    assert snapshot(finished) == before


def test_overwrite_takes_the_old_run_s_card_and_kept_models_away_and_a_failure_restores_them(
    isbi_crops, tmp_path, monkeypatch
):
    run = tmp_path / "run"
    assert main(train_command(isbi_crops, run, "--epochs", "1")) == 0
    assert main(["card", str(run)]) == 0
    (run / "model-epoch-0001-before-statistics.keras").write_bytes(b"the old run's model before its statistics")
    before = snapshot(run)
    add_training_callback(monkeypatch, FailFirstStep())
    assert main(train_command(isbi_crops, run, "--overwrite", "--epochs", "1", "--seed", "3")) == 2
    assert snapshot(run) == before  # the card too
    add_training_callback(monkeypatch, None)
    assert main(train_command(isbi_crops, run, "--overwrite", "--epochs", "1", "--seed", "3")) == 0
    assert not (run / "MODEL_CARD.md").exists()  # it described the replaced run
    assert not (run / "model-epoch-0001-before-statistics.keras").exists()  # the replaced run's model
    assert json.loads((run / "config.json").read_text())["seed"] == 3


def test_a_first_attempt_that_never_trained_does_not_block_the_corrected_command(isbi_crops, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"crop": 999}))  # left by a failed first attempt
    assert main(train_command(isbi_crops, run, "--epochs", "1")) == 0
    assert json.loads((run / "config.json").read_text())["crop"] == 32


def test_a_second_process_on_a_run_folder_in_use_is_refused_and_writes_nothing(isbi_crops, tmp_path, capsys):
    """While one process trains in a folder (it holds it), the same command from another (a rerun in a new
    session while the old one still runs) would mix two runs: it is refused, and the folder is left as it was."""
    from kfcn.cli.run_folder import held_by_this_process, training_now

    run = tmp_path / "run"
    assert main(train_command(isbi_crops, run, "--epochs", "1")) == 0
    before = snapshot(run)
    extend = train_command(isbi_crops, run, "--epochs", "2")
    with held_by_this_process(run):  # another open of the folder: as another process holds it
        assert training_now(run)
        assert main(extend) == 2
        error = capsys.readouterr().err
        assert f"Another kfcn train process is training in {run} now" in error and "kill PID" in error
        assert snapshot(run) == before
    assert not training_now(run)  # released with the hold, as a process's end releases it
    assert main(extend) == 0 and not training_now(run)
    assert json.loads((run / "config.json").read_text())["extended"] == [{"epochs_before": 1}]


def test_run_files_that_are_links_are_refused(isbi_crops, tmp_path, capsys):
    outside = tmp_path / "precious.keras"
    outside.write_bytes(b"someone else's file")
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.keras").symlink_to(outside)
    assert main(train_command(isbi_crops, run, "--epochs", "1")) == 2
    assert "symbolic links (model.keras)" in capsys.readouterr().err
    assert outside.read_bytes() == b"someone else's file"


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_a_larger_epochs_extends_a_finished_or_interrupted_run(isbi_crops, tmp_path, monkeypatch, schedule, capsys):
    options = ("--val-fraction", "0.2", "--schedule", schedule)
    direct, extended = tmp_path / "direct", tmp_path / "extended"
    assert main(train_command(isbi_crops, direct, *options, "--epochs", "4")) == 0
    assert main(train_command(isbi_crops, extended, *options)) == 0  # 2 epochs, finished
    # Extended to 4, interrupted after its third epoch, then the same command again.
    add_training_callback(monkeypatch, CrashAfterEpoch(3))
    assert main(train_command(isbi_crops, extended, *options, "--epochs", "4")) == 2
    add_training_callback(monkeypatch, None)
    assert main(train_command(isbi_crops, extended, *options, "--epochs", "4")) == 0
    assert "extended to 4 epochs" in capsys.readouterr().out
    config = json.loads((extended / "config.json").read_text())
    assert config["epochs"] == 4 and config["extended"] == [{"epochs_before": 2}]
    log, reference = read_log(extended / "training.csv"), read_log(direct / "training.csv")
    assert log["epoch"].tolist() == [1, 2, 3, 4]
    if schedule == "constant":  # the run that 4 epochs would have made, bit for bit
        for key in ("loss", "val_loss", "learning_rate"):
            np.testing.assert_array_equal(log[key], reference[key], err_msg=key)
    else:  # what differs: epochs 1-2 followed the 2-epoch cosine, epochs 3-4 follow the 4-epoch one
        np.testing.assert_array_equal(log["learning_rate"][2:], reference["learning_rate"][2:])
        assert log["learning_rate"][1] < reference["learning_rate"][1]
    assert json.loads((extended / "summary.json").read_text())["epochs_run"] == 4
    assert main(train_command(isbi_crops, extended, *options, "--epochs", "3")) == 2  # no shrinking


def test_a_resumed_run_may_change_what_it_measures_and_records_from_when(isbi_crops, tmp_path, monkeypatch, capsys):
    options = ("--epochs", "3", "--val-fraction", "0.4", "--monitor", "loss")
    reference, run = tmp_path / "reference", tmp_path / "run"
    assert main(train_command(isbi_crops, reference, *options)) == 0
    add_training_callback(monkeypatch, CrashAfterEpoch(2))
    assert main(train_command(isbi_crops, run, *options)) == 2
    add_training_callback(monkeypatch, None)
    assert main(train_command(isbi_crops, run, *options, "--val-every", "5", "--precise-bn", "1")) == 0
    out = capsys.readouterr().out
    assert "from epoch 3 on: --precise-bn 0 -> 1, --val-every 1 -> 5" in out
    assert "validating every 5 epochs and at the last" in out and "recomputed each epoch over 1 batch(es)" in out
    config = json.loads((run / "config.json").read_text())
    assert config["observation_changes"] == [{"after_epoch": 2, "val_every": [1, 5], "precise_bn": [0, 1]}]
    log = read_log(run / "training.csv")
    np.testing.assert_array_equal(log["loss"], read_log(reference / "training.csv")["loss"])
    assert np.isfinite(log["val_loss"]).all()  # epochs 1-2 validated every epoch, epoch 3 as the last
    assert main(["card", str(run)]) == 0
    assert (
        "Validated every epoch; Keras' moving batch-norm statistics; from epoch 3: validated every 5 epochs and at "
        "the last; batch-norm statistics recomputed each epoch over 1 batch of training crops."
    ) in (run / "MODEL_CARD.md").read_text()
    capsys.readouterr()
