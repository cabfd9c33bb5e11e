"""The files a training run keeps, written so that a kill at any moment loses nothing.

Keras' `ModelCheckpoint` and `BackupAndRestore` write in place: a SIGKILL during their
write leaves a truncated `model.keras` or `latest.weights.h5`, and `BackupAndRestore`
writes its weights and its epoch as two files, so a kill between the two resumes the
newer weights at the older epoch. Here every file is written under a temporary name
and renamed into place, and the backup's epoch file is the commit record: it names
the weights file of its epoch, written completely before it.

Example:
>>> import tempfile
>>> folder = tempfile.mkdtemp()
>>> [type(c).__name__ for c in (BestModelCheckpoint(folder + "/model.keras", "loss"), Backup(folder + "/backup"))]
['BestModelCheckpoint', 'Backup']
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from pathlib import Path

import keras
import numpy as np

from kfcn.atomic import PARTIAL_MARK, atomic_path

STATE_NAME = "training_metadata.json"  # Keras' own name: a Keras backup folder resumes here too
KERAS_WEIGHTS_NAME = "latest.weights.h5"


class StoppedClock:
    """Counts the seconds this process did not run at all: stopped by SIGSTOP (`kill -STOP`, Ctrl-Z) until
    SIGCONT. A daemon thread wakes every `tick` seconds; a wake-up more than
    `slack` seconds late means that the whole process stood still meanwhile (a busy CPU delays a wake-up
    by milliseconds, not by `slack`). A training time that counts such pauses overstates the run.

    Example:
    >>> clock = StoppedClock().start()
    >>> clock.seconds  # nothing stopped the process
    0.0
    >>> clock.stop()
    """

    def __init__(self, tick=1.0, slack=15.0):
        import threading

        self.tick, self.slack, self.seconds = tick, slack, 0.0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="kfcn-stopped-clock", daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._done.set()

    def _watch(self):
        last = time.monotonic()
        while not self._done.wait(self.tick):
            now = time.monotonic()
            late = now - last - self.tick
            if late > self.slack:
                self.seconds += late
            last = now


# The columns of a run's log that describe the run, not the model (LogLearningRate's): no curve, no score.
RUN_COLUMNS = ("learning_rate", "seconds", "stopped_seconds", "cpu_seconds")


class LogLearningRate(keras.callbacks.Callback):
    """Adds the optimizer's learning rate, the epoch's wall time in seconds, of that the seconds the process
    was stopped (`StoppedClock`), and the CPU time its threads used (`time.process_time`: the same on a
    busy machine, where the wall time grows) to the logs at the end of each epoch (and so to `training.csv`,
    from which `kfcn card` sums the training time, stopped time left out, and the CPU time).

    Example:
    >>> import numpy as np
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    >>> model.compile(keras.optimizers.SGD(0.25), "mse")
    >>> history = model.fit(np.zeros((4, 2)), np.zeros((4, 1)), verbose=0, callbacks=[LogLearningRate()])
    >>> history.history["learning_rate"], history.history["seconds"][0] > 0, history.history["stopped_seconds"]
    ([0.25], True, [0.0])
    >>> history.history["cpu_seconds"][0] > 0
    True
    """

    _clock = None

    def on_train_begin(self, logs=None):
        if self._clock is not None:  # a fit that raised, which skips on_train_end
            self._clock.stop()
        self._clock = StoppedClock().start()

    def on_train_end(self, logs=None):
        self._clock.stop()

    def on_epoch_begin(self, epoch, logs=None):
        self._started, self._stopped, self._cpu = time.perf_counter(), self._clock.seconds, time.process_time()

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        if "learning_rate" not in logs:
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        logs["seconds"] = time.perf_counter() - self._started
        logs["stopped_seconds"] = self._clock.seconds - self._stopped
        logs["cpu_seconds"] = time.process_time() - self._cpu


def read_log(csv_path):
    """Rows of a run's `training.csv` as `{column: np.ndarray}`, one row per epoch, numbered from 1.

    A resumed run may have logged an epoch twice; the later row wins. Logs numbered from 0
    (Keras' `CSVLogger`, kfcn before 0.2) are renumbered from 1, as the console numbers them.

    Example:
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "log.csv")
    >>> _ = open(path, "w").write("epoch,loss\\n0,2.0\\n1,1.5\\n1,1.4\\n")
    >>> log = read_log(path)
    >>> log["epoch"].tolist(), log["loss"].tolist()
    ([1.0, 2.0], [2.0, 1.4])
    """
    rows = {}
    with open(csv_path, newline="") as file:
        for row in csv.DictReader(file):
            if None in row:  # more values than the header names: they cannot be given names
                raise ValueError(
                    f"{csv_path}: the row of epoch {row.get('epoch')} has more values than the header names "
                    f"({', '.join(k for k in row if k)}): Keras' CSVLogger appended a row with other columns to a log "
                    "written before (a run resumed by another kfcn version). Give the header every column, in the "
                    "row's order (epoch, then the names sorted), with NA for the rows that lack one."
                )
            if row.get("epoch") not in (None, "", "epoch"):
                rows[int(row["epoch"])] = row
    if 0 in rows:  # numbered from 0: Keras' CSVLogger
        rows = {epoch + 1: {**row, "epoch": str(epoch + 1)} for epoch, row in rows.items()}
    columns = {}
    for epoch in sorted(rows):
        for key, value in rows[epoch].items():
            columns.setdefault(key, []).append(float(value) if value not in ("", None, "NA") else np.nan)
    return {key: np.asarray(values) for key, values in columns.items()}


class EpochLog(keras.callbacks.Callback):
    """Writes one CSV row per epoch, numbered from 1 as the console and `summary.json` number them,
    rewriting the whole file atomically each time (a kill leaves the log of the last epoch, never a
    torn line). Appends to an existing log; an epoch logged again (a resumed run) replaces its row,
    and a log of kfcn before 0.2 (numbered from 0) is renumbered once.

    Args:
        path: the `.csv` file.

    Example:
    >>> import tempfile, numpy as np
    >>> path = tempfile.mkdtemp() + "/training.csv"
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    >>> model.compile("sgd", "mse")
    >>> _ = model.fit(np.zeros((4, 2)), np.zeros((4, 1)), epochs=2, verbose=0, callbacks=[EpochLog(path)])
    >>> open(path).read().splitlines()[0], [line.split(",")[0] for line in open(path).read().splitlines()[1:]]
    ('epoch,loss', ['1', '2'])
    """

    def __init__(self, path):
        super().__init__()
        self.path = Path(path)

    def on_epoch_end(self, epoch, logs=None):
        columns = read_log(self.path) if self.path.is_file() else {}
        rows = {
            int(logged): {key: values[row] for key, values in columns.items() if key != "epoch"}
            for row, logged in enumerate(columns.get("epoch", []))
        }
        rows[epoch + 1] = {key: _scalar(value) for key, value in (logs or {}).items()}
        keys = sorted({key for row in rows.values() for key in row})
        lines = [",".join(["epoch", *keys])]
        lines += [",".join([str(e), *(_cell(rows[e].get(key)) for key in keys)]) for e in sorted(rows)]
        with atomic_path(self.path) as temporary:
            temporary.write_text("\n".join(lines) + "\n")


def _scalar(value):
    return float(keras.ops.convert_to_numpy(value)) if not isinstance(value, (int, float)) else float(value)


def _cell(value):
    return "NA" if value is None or math.isnan(value) else repr(float(value))


class BestModelCheckpoint(keras.callbacks.Callback):
    """Saves the model to `path` (atomically, without optimizer state) whenever `monitor` improves.

    A model training in a mixed policy (`kfcn train --precision mixed_bfloat16`) is saved
    computing in float32, as `kfcn.models.with_policy(model, "float32")`: its weights are
    float32 already, and the file then exports to TFLite and runs at full speed on a CPU
    without native BF16. Mixed precision is how the run computed, not part of the model;
    predict in it with `policy="mixed_bfloat16"` (`kfcn predict --precision`).

    Args:
        path: a `.keras` file.
        monitor: a quantity in the epoch's logs, e.g. "val_pixel_error" or "loss".
        mode: "min" or "max".
        initial_value_threshold: the best value so far (a resumed run passes the best of its log).

    Example:
    >>> import numpy as np, tempfile, os
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    >>> model.compile("sgd", "mse")
    >>> path = os.path.join(tempfile.mkdtemp(), "best.keras")
    >>> checkpoint = BestModelCheckpoint(path, "loss")
    >>> _ = model.fit(np.zeros((4, 2)), np.zeros((4, 1)), epochs=2, verbose=0, callbacks=[checkpoint])
    >>> os.path.isfile(path)
    True
    """

    def __init__(self, path, monitor, mode="min", initial_value_threshold=None):
        super().__init__()
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max'; got {mode!r}.")
        self.path, self.monitor, self.mode = Path(path), monitor, mode
        self.best = initial_value_threshold

    def _better(self, value):
        if self.best is None:
            return True
        return value < self.best if self.mode == "min" else value > self.best

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.monitor not in logs:
            raise ValueError(
                f"The checkpoint's monitor {self.monitor!r} is not among the logged quantities "
                f"{sorted(logs)}; choose one of them."
            )
        value = float(logs[self.monitor])
        if math.isfinite(value) and self._better(value):
            from kfcn.models.precision import with_policy
            from kfcn.saving import save_model

            save_model(with_policy(self.model, "float32"), self.path)
            self.best = value


class Backup(keras.callbacks.BackupAndRestore):
    """`keras.callbacks.BackupAndRestore` (per epoch) that a kill at any moment cannot corrupt.

    Each epoch writes `epoch-NNNNN.weights.h5` (weights and optimizer state) under a
    temporary name, renames it into place, and only then replaces `training_metadata.json`,
    which names it; the previous epoch's file is kept until the next commit. On resume
    the named weights load; if they cannot be read, the previous epoch's do, and a
    message says so. A folder written by Keras' own callback resumes too.

    Example:
    >>> import numpy as np, tempfile, os
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    >>> model.compile("sgd", "mse")
    >>> folder = os.path.join(tempfile.mkdtemp(), "backup")
    >>> backup = Backup(folder, delete_checkpoint=False)
    >>> _ = model.fit(np.zeros((4, 2)), np.zeros((4, 1)), epochs=2, verbose=0, callbacks=[backup])
    >>> sorted(os.listdir(folder))  # kept at the end (delete_checkpoint=False): the last epoch's state
    ['epoch-00002.weights.h5', 'training_metadata.json']
    """

    def __init__(self, backup_dir, delete_checkpoint=True):
        super().__init__(str(backup_dir), save_freq="epoch", delete_checkpoint=delete_checkpoint)
        self.folder = Path(backup_dir)

    def _state(self):
        path = self.folder / STATE_NAME
        if not path.is_file():
            return None
        try:
            state = json.loads(path.read_text())
            int(state["epoch"])
            return state
        except (ValueError, KeyError, TypeError):
            raise ValueError(
                f"The backup's state file {path} is unreadable; delete the folder {self.folder} to restart the "
                "run from its first epoch (its best model so far stays in model.keras)."
            ) from None

    def _load_model(self):
        state = self._state()
        if state is None:
            return
        if not self.model.built:
            raise ValueError("Build the model (call it on a batch) before fit() with a Backup callback.")
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        candidates = [(state.get("weights", KERAS_WEIGHTS_NAME), int(state["epoch"]))]
        if state.get("previous"):
            candidates.append((state["previous"], int(state["previous_epoch"])))
        failures = []
        for name, epoch in candidates:
            try:
                self.model.load_weights(str(self.folder / name))
            except Exception as error:  # h5py raises OSError, Keras ValueError, for a truncated or missing file
                failures.append(f"{self.folder / name}: {' '.join(str(error).split())[:200]}")
                continue
            if failures:
                print(f"kfcn: the backup of the last epoch is unreadable ({failures[0]}); resuming from epoch {epoch}.")
            self.model._initial_epoch = epoch
            return
        raise ValueError(
            "The run's backup cannot be read (" + "; ".join(failures) + f"). Delete {self.folder} to restart the run "
            "from its first epoch (its best model so far stays in model.keras)."
        )

    def on_train_begin(self, logs=None):
        self._load_model()

    def on_train_end(self, logs=None):
        if self.delete_checkpoint:
            super().on_train_end(logs)
            return
        state = self._state_or_none()  # kept to extend the run: the last epoch's state alone
        if state and state.get("previous"):
            previous = self.folder / state.pop("previous")
            state.pop("previous_epoch", None)
            with atomic_path(self.folder / STATE_NAME) as path:
                path.write_text(json.dumps(state))
            previous.unlink(missing_ok=True)

    def _save_model(self):
        self.folder.mkdir(parents=True, exist_ok=True)
        epoch = self._current_epoch
        name = f"epoch-{epoch:05d}.weights.h5"
        # Keras names weight files *.weights.h5, so the temporary keeps that ending.
        temporary = self.folder / f"{PARTIAL_MARK}{os.getpid()}-{name}"
        try:
            self.model.save_weights(str(temporary), overwrite=True)
            os.replace(temporary, self.folder / name)
        finally:
            temporary.unlink(missing_ok=True)
        before = self._state_or_none()
        state = {"epoch": epoch, "batch": 0, "weights": name}
        if before and before.get("weights") and before["weights"] != name:
            state |= {"previous": before["weights"], "previous_epoch": int(before["epoch"])}
        with atomic_path(self.folder / STATE_NAME) as path:
            path.write_text(json.dumps(state))
        keep = {name, state.get("previous")}
        for path in self.folder.glob("*.weights.h5"):
            if path.name not in keep and PARTIAL_MARK not in path.name:
                path.unlink(missing_ok=True)

    def _state_or_none(self):
        try:
            return self._state()
        except ValueError:
            return None
