"""Training helpers that `kfcn train` and the examples share: losses by name, the standard
callbacks (best checkpoint, resumable backup, CSV log, early stopping) and the curves PNG.

Example:
>>> loss = segmentation_loss("ce+j2", num_classes=1)
>>> loss.name
'compound_loss'
"""

from __future__ import annotations

import csv
import time
from pathlib import Path

import keras
import numpy as np

LOSSES = ("ce+j2", "ce", "j2", "jaccard", "dice", "ce+dice", "mse", "mae")


def segmentation_loss(name, num_classes, ignore_class=None):
    """A loss by name for a model with `num_classes` output channels (1: sigmoid, K > 1: softmax over sparse labels).

    "ce+j2" (the default of `kfcn train`) is cross-entropy plus the squared-denominator
    Jaccard loss j2; "mse"/"mae" are for value maps. Multi-class losses take class-index
    labels and leave `ignore_class` out.

    Example:
    >>> import numpy as np
    >>> loss = segmentation_loss("ce", num_classes=3, ignore_class=3)
    >>> y = np.array([[[[0], [3]]]]); p = np.full((1, 1, 2, 3), 1 / 3, "float32")
    >>> round(float(loss(y, p)), 4)  # only the non-void pixel counts: -log(1/3)
    1.0986
    """
    from kfcn import losses

    if name not in LOSSES:
        raise ValueError(f"Unknown loss {name!r}; choose one of {', '.join(LOSSES)}.")
    if name in ("mse", "mae"):
        return keras.losses.get(name)
    binary = num_classes == 1
    if binary and ignore_class is not None:
        raise ValueError("ignore_class needs class-index labels (num_classes > 1).")
    overlap = {"sparse_labels": None if binary else True, "ignore_class": ignore_class}

    def cross_entropy():
        if binary:
            return keras.losses.BinaryCrossentropy()
        return keras.losses.SparseCategoricalCrossentropy(ignore_class=ignore_class)

    parts = {
        "ce": cross_entropy,
        "j2": lambda: losses.JaccardJ2Loss(**overlap),
        "jaccard": lambda: losses.JaccardLoss(**overlap),
        "dice": lambda: losses.DiceLoss(**overlap),
    }
    chosen = [parts[part]() for part in name.split("+")]
    return chosen[0] if len(chosen) == 1 else losses.CompoundLoss(chosen)


def recipe(name):
    """Every option of a named recipe shipped with kfcn (what `kfcn train --recipe NAME` starts from).

    Example:
    >>> recipe("isbi2012")["schedule"]
    'cosine'
    """
    from kfcn.recipes import recipe as load

    return load(name)


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


def monitor_mode(monitor, model=None):
    """ "min" or "max" for a monitored quantity: kfcn metrics declare their direction; losses and errors go down."""
    name = monitor.removeprefix("val_")
    for metric in getattr(model, "metrics", None) or []:
        for inner in [metric, *getattr(metric, "metrics", [])]:
            if inner.name == name and getattr(inner, "_direction", None):
                return "max" if inner._direction == "up" else "min"
    return "max" if any(word in name for word in ("dice", "jaccard", "iou", "accuracy", "acc")) else "min"


def best_so_far(csv_path, monitor, mode):
    """The best logged value of `monitor` (None if there is no log yet): where a resumed checkpoint must start."""
    if not Path(csv_path).is_file():
        return None
    values = read_log(csv_path).get(monitor)
    if values is None or not np.isfinite(values).any():
        return None
    return float(np.nanmin(values) if mode == "min" else np.nanmax(values))


def standard_callbacks(run_dir, monitor, mode, patience=None, ema=False, crop_stream=None):
    """The callbacks of a resumable run in `run_dir`, every file written atomically (`kfcn.checkpoints`).

    - `model.keras`: the best epoch by `monitor` (resumes its comparison from the log);
    - `backup/`: the weights and optimizer state of the last epoch, so rerunning the same
      command resumes at the epoch it stopped (and `ResumeCropStream` keeps the crop
      stream aligned), and a larger `--epochs` extends a finished run; a kill at any
      moment leaves a state that resumes;
    - `training.csv`: one row per epoch, with the learning rate;
    - with `patience`, early stopping; with `ema`, the checkpoint and validation use
      the optimizer's moving average of the weights (`SwapEMAWeights`).

    Example:
    >>> import tempfile
    >>> [type(c).__name__ for c in standard_callbacks(tempfile.mkdtemp(), "val_loss", "min", patience=5)]
    ['BestModelCheckpoint', 'LogLearningRate', 'EpochLog', 'EarlyStopping', 'Backup']
    """
    from kfcn.checkpoints import Backup, BestModelCheckpoint, EpochLog, LogLearningRate

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    callbacks = []
    if crop_stream is not None:
        from kfcn.data import ResumeCropStream

        callbacks.append(ResumeCropStream(crop_stream))
    if ema:
        callbacks.append(keras.callbacks.SwapEMAWeights(swap_on_epoch=True))
    log = run_dir / "training.csv"
    callbacks.append(
        BestModelCheckpoint(
            run_dir / "model.keras", monitor, mode, initial_value_threshold=best_so_far(log, monitor, mode)
        )
    )
    callbacks.append(LogLearningRate())
    callbacks.append(EpochLog(log))
    if patience:
        callbacks.append(
            keras.callbacks.EarlyStopping(monitor=monitor, mode=mode, patience=patience, restore_best_weights=False)
        )
    # Last, so that a backup is taken only once everything else has logged the epoch. Kept when
    # the run ends: raising --epochs continues from it.
    callbacks.append(Backup(run_dir / "backup", delete_checkpoint=False))
    return callbacks


class RemainingTime(keras.callbacks.Callback):
    """Prints, after the first epoch of a `fit` call, about how long the epochs left will take.

    Example:
    >>> import numpy as np
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    >>> model.compile("sgd", "mse")
    >>> _ = model.fit(np.zeros((4, 2)), np.zeros((4, 1)), epochs=3, verbose=0, callbacks=[RemainingTime(3)])
    ... # doctest: +ELLIPSIS
    epoch 1 took ... s (with compilation); the 2 epoch(s) left should take about ... min or less
    """

    def __init__(self, epochs):
        super().__init__()
        self.epochs = epochs

    def on_train_begin(self, logs=None):
        self.started, self.first = time.time(), None

    def on_epoch_end(self, epoch, logs=None):
        if self.first is not None:
            return
        self.first = time.time() - self.started
        left = self.epochs - epoch - 1
        if left:
            print(
                f"epoch {epoch + 1} took {self.first:.0f} s (with compilation); the {left} epoch(s) left should take "
                f"about {left * self.first / 60:.0f} min or less",
                flush=True,
            )


def plot_training_curves(csv_path, png_path, title=None):
    """Draws every logged quantity against the epoch (training solid, validation dashed), one panel per quantity.

    Example:
    >>> import tempfile, os
    >>> folder = tempfile.mkdtemp()
    >>> _ = open(os.path.join(folder, "log.csv"), "w").write("epoch,loss,val_loss\\n0,2,2.5\\n1,1,1.5\\n")
    >>> plot_training_curves(os.path.join(folder, "log.csv"), os.path.join(folder, "curves.png")).name
    'curves.png'
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from kfcn.atomic import atomic_path

    log = read_log(csv_path)
    epochs = log.pop("epoch")
    log.pop("learning_rate", None)
    log.pop("seconds", None)
    names = [key for key in log if not key.startswith("val_")]
    columns = min(3, max(1, len(names)))
    rows = -(-len(names) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.2 * rows), squeeze=False)
    for axis, name in zip(axes.flat, names):
        axis.plot(epochs, log[name], label="training")
        if f"val_{name}" in log:
            axis.plot(epochs, log[f"val_{name}"], "--", label="validation")
        axis.set_title(name)
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
        axis.legend(fontsize="small")
    for axis in list(axes.flat)[len(names) :]:
        axis.axis("off")
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    png_path = Path(png_path)
    with atomic_path(png_path) as temporary:
        figure.savefig(temporary, format="png", dpi=100)
    plt.close(figure)
    return png_path
