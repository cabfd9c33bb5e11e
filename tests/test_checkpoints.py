"""A `kfcn train` run killed with SIGKILL at any moment, during its checkpoint and backup writes
too, resumes to the run an uninterrupted command makes; an unreadable backup falls back or says so."""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from kfcn.training import read_log
from tests.conftest import write_isbi_crops

pytestmark = pytest.mark.tensorflow_only(reason="tf.data pipelines")

EPOCHS = 4

# Runs `kfcn train`; with KILL_AT = "what:n", the n-th write of that kind is cut off half-way and
# the process SIGKILLs itself, as a machine stopped mid-write would leave it.
CHILD = """
    import os, signal, sys
    import keras
    from pathlib import Path

    what, _, n = os.environ.get("KILL_AT", "none:0").partition(":")
    count = {"weights": 0, "model": 0, "state": 0}

    def die_half_way(path):
        path = Path(path)
        if path.is_file():
            data = path.read_bytes()
            path.write_bytes(data[: len(data) // 2])
        os.kill(os.getpid(), signal.SIGKILL)

    def counted(kind, original, position=0):
        def wrapper(*args, **kwargs):
            result = original(*args, **kwargs)
            count[kind] += 1
            if what == kind and count[kind] == int(n):
                die_half_way(args[position] if len(args) > position else kwargs.get("filepath"))
            return result
        return wrapper

    keras.Model.save_weights = counted("weights", keras.Model.save_weights, 1)
    keras.Model.save = counted("model", keras.Model.save, 1)
    import kfcn.checkpoints
    original_replace = kfcn.checkpoints.os.replace

    class Os:  # killed after the n-th epoch's weights are in place, before the state file names them
        def __getattr__(self, name):
            return getattr(os, name)

        @staticmethod
        def replace(source, target):
            original_replace(source, target)
            count["state"] += 1
            if what == "state" and count["state"] == int(n):
                os.kill(os.getpid(), signal.SIGKILL)

    kfcn.checkpoints.os = Os()
    import kfcn.atomic

    replaced = {}  # "after:NAME@n": killed right after the n-th atomic write of NAME once the training has ended

    class AtomicOs:
        def __getattr__(self, name):
            return getattr(os, name)

        @staticmethod
        def replace(source, target):
            original_replace(source, target)
            name = "kept" if Path(target).name.startswith("model-epoch-") else Path(target).name
            if name == "summary.json" or "summary.json" in replaced:  # the first summary.json ends the training
                replaced[name] = replaced.get(name, 0) + 1
                if what == "after" and n == f"{name}@{replaced[name]}":
                    os.kill(os.getpid(), signal.SIGKILL)

    kfcn.atomic.os = AtomicOs()
    from kfcn.cli import main
    sys.exit(main(sys.argv[1:]))
"""


def arguments(data, output, *extra):
    """The `kfcn train` command line every run of this module repeats (with `extra` options)."""
    words = ["train", "--images", str(data / "images"), "--labels", str(data / "labels"), "--output", str(output)]
    words += ["--filters", "2", "--depth", "2", "--crop", "32", "--batch", "2", "--epochs", str(EPOCHS)]
    return words + ["--steps", "2", "--val-fraction", "0.2", "--augment", "geometric", *extra]


def killed(data, output, kill_at, *extra):
    """`kfcn train` in a child process that SIGKILLs itself at `kill_at`: the run being interrupted."""
    environment = os.environ | {"KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3", "KILL_AT": kill_at}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(CHILD), *arguments(data, output, *extra)],
        env=environment,
        capture_output=True,
        text=True,
    )


def rerun(data, output, capsys, *extra):
    """The same command again, in this process (what is tested is the kill, not a second process):
    (exit status, stdout, stderr)."""
    from kfcn.cli import main

    capsys.readouterr()
    code = main(arguments(data, output, *extra))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_isbi_crops(tmp_path_factory.mktemp("kill_data"), count=5, side=48)


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory):
    """The uninterrupted run, made once for every kill point, in this process as the resumed runs are."""
    from kfcn.cli import main

    run = tmp_path_factory.mktemp("reference") / "run"
    assert main(arguments(data, run)) == 0
    keras.backend.clear_session(free_memory=False)  # the test's own run starts from a fresh session, as the others
    return run


# Backup weights are written once per epoch (write n is epoch n's); the state commit follows each;
# model.keras is written at each improvement of the monitored score.
@pytest.mark.parametrize("kill_at", ["weights:1", "weights:3", "state:2", "model:1", "model:2"])
def test_killed_at_any_write_resumes_to_the_uninterrupted_run(data, reference, tmp_path, kill_at, capsys):
    run = tmp_path / "run"
    done = killed(data, run, kill_at)
    assert done.returncode == -9, (done.returncode, done.stderr[-2000:])
    code, _, err = rerun(data, run, capsys)
    assert code == 0, err[-2000:]
    log, expected = read_log(run / "training.csv"), read_log(reference / "training.csv")
    assert log["epoch"].tolist() == list(range(1, EPOCHS + 1))
    # The same operations on the same weights, crops and machine: the resumed epochs repeat the
    # uninterrupted ones exactly (the backup holds the float32 weights and optimizer state bit for bit).
    for key in ("loss", "val_loss", "val_pixel_error"):
        np.testing.assert_array_equal(log[key], expected[key], err_msg=key)
    summary, expected_summary = (json.loads((folder / "summary.json").read_text()) for folder in (run, reference))
    for key in ("monitor", "best_epoch", "epochs_run"):
        assert summary[key] == expected_summary[key], key
    # Every score of the best epoch repeats; its wall-clock and CPU seconds are measurements, not results.
    for key in ("seconds", "cpu_seconds"):
        assert summary["best"].pop(key) > 0 and expected_summary["best"].pop(key) > 0, key
    assert summary["best"] == expected_summary["best"]
    from kfcn.saving import load_model

    load_model(run / "model.keras")  # complete, whatever moment the kill came
    assert not any(".kfcn-partial-" in p.name for p in run.rglob("*"))


FINAL = ("--final-precise-bn", "2")


@pytest.fixture(scope="module")
def final_reference(data, tmp_path_factory):
    """The uninterrupted run with --final-precise-bn: its model.keras gets new statistics once it has finished."""
    from kfcn.cli import main

    run = tmp_path_factory.mktemp("final_reference") / "run"
    assert main(arguments(data, run, *FINAL)) == 0
    keras.backend.clear_session(free_memory=False)
    return run


def all_weights(path):
    from kfcn.saving import load_model

    return [keras.ops.convert_to_numpy(weight) for weight in load_model(path).weights]


# The final statistics step writes, in order: the kept copy of model.keras, summary.json (the step, incomplete),
# model.keras, summary.json (complete), config.json; summary.json@1 is the training's own summary, before the
# step. Killed after any of them, the same command ends where the uninterrupted one did (after the complete
# summary the run is finished: its command is then refused as a finished run's, with nothing left to do).
@pytest.mark.parametrize(
    "kill_after, code",
    [("summary.json@1", 0), ("kept@1", 0), ("summary.json@2", 0), ("model.keras@1", 0), ("summary.json@3", 2)],
)
def test_killed_during_the_final_statistics_step_ends_as_the_uninterrupted_run(
    data, final_reference, tmp_path, kill_after, code, capsys
):
    run = tmp_path / "run"
    done = killed(data, run, f"after:{kill_after}", *FINAL)
    assert done.returncode == -9, (done.returncode, done.stderr[-2000:])
    again, _, err = rerun(data, run, capsys, *FINAL)
    assert again == code, err[-2000:]
    step, expected = (
        json.loads((folder / "summary.json").read_text())["statistics_recomputed"] for folder in (run, final_reference)
    )
    assert step["complete"] and step["kept"] == expected["kept"]
    for when in ("before", "after"):  # the scores of the trained model, then of the new statistics
        assert step[when] == pytest.approx(expected[when], rel=1e-6), when
    for name in ("model.keras", expected["kept"]):  # the new statistics; the model as training left it
        for ours, theirs in zip(all_weights(run / name), all_weights(final_reference / name), strict=True):
            np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-7, err_msg=name)
    config, expected_config = (json.loads((folder / "config.json").read_text()) for folder in (run, final_reference))
    assert {**config, "output": None} == {**expected_config, "output": None}
    assert not any(".kfcn-partial-" in p.name for p in run.rglob("*"))


def test_an_unreadable_last_backup_falls_back_to_the_epoch_before_and_says_so(data, reference, tmp_path, capsys):
    run = tmp_path / "run"
    assert killed(data, run, "state:4").returncode == -9  # epochs 1-3 committed, epoch 4's weights not yet
    state = json.loads((run / "backup" / "training_metadata.json").read_text())
    assert state["epoch"] == 3 and state["previous_epoch"] == 2
    (run / "backup" / state["weights"]).write_bytes(b"")  # the disk lost the newest weights
    code, out, err = rerun(data, run, capsys)
    assert code == 0, err[-2000:]
    assert "unreadable" in out and "resuming from epoch 2" in out
    np.testing.assert_array_equal(read_log(run / "training.csv")["loss"], read_log(reference / "training.csv")["loss"])


def test_a_backup_that_cannot_be_read_at_all_names_the_folder_and_the_fix(data, tmp_path, capsys):
    run = tmp_path / "run"
    assert killed(data, run, "state:2").returncode == -9
    for path in (run / "backup").glob("*.weights.h5"):
        path.write_bytes(b"not hdf5")
    code, _, err = rerun(data, run, capsys)
    assert code == 2
    assert "backup cannot be read" in err and f"Delete {run / 'backup'}" in err


def test_the_epoch_log_numbers_from_one_replaces_a_repeated_epoch_and_renumbers_an_old_log(tmp_path):
    from kfcn.checkpoints import EpochLog

    path = tmp_path / "training.csv"
    path.write_text("epoch,loss\n0,4.0\n1,3.0\n")  # a log of Keras' CSVLogger: epochs 1 and 2, numbered from 0
    log = EpochLog(path)
    log.on_epoch_end(1, {"loss": 2.5})  # epoch 2 again (a resumed run): its row is replaced
    log.on_epoch_end(2, {"loss": np.float32(2.0), "val_loss": float("nan")})
    assert path.read_text().splitlines() == ["epoch,loss,val_loss", "1,4.0,NA", "2,2.5,NA", "3,2.0,NA"]
    assert [p.name for p in tmp_path.iterdir()] == ["training.csv"]  # written under a temporary name, renamed


@pytest.mark.skipif(not hasattr(os, "kill") or sys.platform == "win32", reason="SIGSTOP is POSIX")
def test_the_stopped_clock_counts_the_seconds_the_process_stood_still():
    import signal
    import time

    from kfcn.checkpoints import StoppedClock

    clock = StoppedClock(tick=0.05, slack=0.5).start()
    time.sleep(0.3)
    assert clock.seconds == 0.0  # running, however busy, is not stopped
    waker = subprocess.Popen(["sh", "-c", f"sleep 2; kill -CONT {os.getpid()}"])
    os.kill(os.getpid(), signal.SIGSTOP)  # stands still here until the waker's SIGCONT
    time.sleep(0.3)  # the clock's thread wakes up late, once
    clock.stop()
    waker.wait()
    assert 1.0 < clock.seconds < 3.0


def test_an_epochs_cpu_seconds_count_work_not_waiting():
    import time

    from kfcn.checkpoints import LogLearningRate

    class SleepThenWork(keras.callbacks.Callback):
        """After the first epoch (which traces the step), epoch 2 sleeps 0.6 s (wall time, no CPU time) and
        epoch 3 works until it has used 0.5 s of CPU."""

        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                time.sleep(0.6)
            elif epoch == 2:
                started = time.process_time()
                while time.process_time() - started < 0.5:
                    pass

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    x = np.zeros((4, 2), "float32")
    logged = model.fit(x, x[:, :1], epochs=3, verbose=0, callbacks=[LogLearningRate(), SleepThenWork()]).history
    assert logged["seconds"][1] >= 0.6 and logged["cpu_seconds"][1] < 0.3
    assert logged["cpu_seconds"][2] >= 0.5
