"""Training helpers that `kfcn train` and the examples share: the optimizer and its schedule,
losses by name, class weights (SegNet's median-frequency rule, as a per-pixel weight map), the
standard callbacks (best checkpoint, resumable backup, CSV log, early stopping), the curves PNG
and the density-model helpers.

Example:
>>> loss = segmentation_loss("ce+j2", num_classes=1)
>>> loss.name
'compound_loss'
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import keras
import numpy as np

# read_log lives beside EpochLog, which writes the log; it stays public here as kfcn.training.read_log.
from kfcn.checkpoints import RUN_COLUMNS, Backup, BestModelCheckpoint, EpochLog, LogLearningRate, read_log

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
        if keras.backend.backend() == "torch":  # Keras' own fails in PyTorch's backward on 4-D maps
            return losses.SparseCrossEntropy(ignore_class=ignore_class)
        # Keras' own elsewhere: the same values, and a run resumed across this change stays bit-exact.
        return keras.losses.SparseCategoricalCrossentropy(ignore_class=ignore_class)

    parts = {
        "ce": cross_entropy,
        "j2": lambda: losses.JaccardJ2Loss(**overlap),
        "jaccard": lambda: losses.JaccardLoss(**overlap),
        "dice": lambda: losses.DiceLoss(**overlap),
    }
    chosen = [parts[part]() for part in name.split("+")]
    return chosen[0] if len(chosen) == 1 else losses.CompoundLoss(chosen)


def median_frequency_weights(
    labels, num_classes: int, ignore_class: int | None = None, power: float = 1.0
) -> np.ndarray:
    """SegNet's class balancing (median-frequency): the weight of class c is (median(f) / f_c) ** power.

    f_c is the frequency of class c over the images that hold it: the pixels of class c
    divided by all the pixels of the images in which c appears (Eigen & Fergus 2015, as
    used by SegNet, Badrinarayanan et al. 2015). The median runs over the classes present;
    a class absent from every label gets weight 0 (it never appears in training), and so
    does `ignore_class`, whose pixels count towards the image sizes but are no class.
    Compute it from the training labels only.

    Args:
        labels: an iterable of integer label arrays (any shapes), class indices
            0..num_classes-1 or `ignore_class`; a generator is read once.
        num_classes: the number of classes K.
        ignore_class: the label value left out (e.g. CamVid's void, 11), or None.
        power: 1 is SegNet's rule; 0.5 (the square root) softens it: on CamVid the full rule
            weights sky and road about 0.2 and poles and signs 5 to 10, enough to paint
            buildings as poles, which the square root halves on a log scale.

    Returns:
        float32 array of K weights, indexed by class (`ignore_class`, if below K, is 0).

    Raises:
        ValueError: a label value outside 0..K-1 that is not `ignore_class`, or no labelled pixel.

    Example:
    >>> # Class 0: 6 px of the 8 px of the two images holding it (f = 0.75); class 1: 2 of 4 (0.5);
    >>> # class 2 is absent; 9 is ignored. median(0.75, 0.5) = 0.625.
    >>> labels = [np.zeros((2, 2)), np.array([[0, 0], [1, 1]]), np.array([[9, 9]])]
    >>> [round(float(w), 4) for w in median_frequency_weights(labels, num_classes=3, ignore_class=9)]
    [0.8333, 1.25, 0.0]
    >>> [round(float(w), 4) for w in median_frequency_weights(labels, 3, ignore_class=9, power=0.5)]
    [0.9129, 1.118, 0.0]
    """
    from kfcn.arguments import check_integer

    num_classes = check_integer("num_classes", num_classes, minimum=1)
    if ignore_class is not None:
        ignore_class = check_integer("ignore_class", ignore_class, minimum=0)
    size = max(num_classes, -1 if ignore_class is None else ignore_class) + 1
    counts = np.zeros(size, np.float64)
    present = np.zeros(size, np.float64)  # pixels of the images that hold each class
    for label in labels:
        values = np.asarray(label)
        if values.size == 0:
            continue
        if not np.issubdtype(values.dtype, np.integer):
            if not np.array_equal(values, np.round(values)):
                raise ValueError("median_frequency_weights takes integer class labels; a label holds fractions.")
            values = values.astype(np.int64)
        low, high = int(values.min()), int(values.max())
        if low < 0 or high >= size or (high >= num_classes and high != ignore_class):
            wrong = sorted(set(np.unique(values).tolist()) - set(range(num_classes)) - {ignore_class})
            raise ValueError(
                f"median_frequency_weights: label values {wrong[:5]} are not classes 0..{num_classes - 1}"
                + ("" if ignore_class is None else f" nor the ignore class {ignore_class}")
                + "; give the right num_classes and ignore_class, or map the labels to class indices."
            )
        per_class = np.bincount(values.ravel(), minlength=size)
        counts += per_class
        present += (per_class > 0) * values.size
    if ignore_class is not None:
        counts[ignore_class] = 0
    counts, present = counts[:num_classes], present[:num_classes]
    if not counts.any():
        raise ValueError("median_frequency_weights: the labels hold no pixel of any class (all empty or ignored).")
    frequency = counts / np.maximum(present, 1)
    median = np.median(frequency[counts > 0])
    if isinstance(power, bool) or not isinstance(power, (int, float)) or not math.isfinite(power) or power < 0:
        raise ValueError(f"median_frequency_weights: power is a number >= 0 (1: SegNet's rule); got {power!r}.")
    return np.where(counts > 0, (median / np.maximum(frequency, 1e-12)) ** power, 0.0).astype(np.float32)


def class_weight_map(weights, ignore_class: int | None = None):
    """A per-pixel weight map from class weights, for `random_crop_pipeline(weight_map=...)`.

    Each pixel gets the weight of its class (`weights[label]`); a label value beyond the
    weights, and `ignore_class`, gets 0. The pipeline computes the map once per image
    and crops and augments it with the label, as it does the U-Net border weights; the
    loss then takes it as `sample_weight`, i.e. a class-weighted cross-entropy
    (`kfcn train --class-weights`).

    Args:
        weights: one non-negative weight per class, e.g. `median_frequency_weights(...)`.
        ignore_class: a label value whose pixels get weight 0, or None.

    Returns:
        A function `label (H, W) int array -> weights (H, W) float32`.

    Example:
    >>> to_weights = class_weight_map([0.5, 2.0], ignore_class=2)
    >>> to_weights(np.array([[0, 1], [2, 1]])).tolist()
    [[0.5, 2.0], [0.0, 2.0]]
    """
    table = np.asarray(weights, np.float32)
    if table.ndim != 1 or not table.size or not np.all(np.isfinite(table)) or np.any(table < 0):
        raise ValueError(f"class_weight_map takes one finite, non-negative weight per class; got {weights!r}.")
    table = table.copy()
    if ignore_class is not None and 0 <= ignore_class < table.size:
        table[ignore_class] = 0.0
    padded = np.append(table, np.float32(0))  # every other label value (the ignore class) weighs 0

    def to_weights(label):
        label = np.asarray(label)
        index = np.where((label >= 0) & (label < table.size), label, table.size).astype(np.int64)
        return padded[index]

    return to_weights


OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("cosine", "constant")


def make_optimizer(
    name="adam",
    learning_rate=1e-3,
    schedule="constant",
    total_steps=None,
    warmup_fraction=0.05,
    momentum=None,
    ema=False,
    loss_scaling=False,
):
    """The optimizer `kfcn train` builds (and the examples use): Adam, AdamW or SGD at a constant rate or on a
    cosine schedule.

    The cosine schedule decays to 0 over `total_steps` (epochs x steps per epoch); with
    `warmup_fraction` > 0 it first rises linearly from a tenth of `learning_rate` over that
    fraction of the steps (kfcn train's 5 %). `ema=True` keeps an exponential moving average
    of the weights (momentum 0.99) that Keras swaps in at the end of each epoch;
    `loss_scaling=True` wraps the optimizer for mixed_float16 training.

    Example:
    >>> optimizer = make_optimizer("sgd", 0.1, "cosine", total_steps=100, momentum=0.9)
    >>> type(optimizer).__name__, round(float(optimizer.learning_rate), 6)  # step 0: a tenth, warming up
    ('SGD', 0.01)
    >>> round(float(make_optimizer("adam", 1e-3, "cosine", total_steps=100, warmup_fraction=0).learning_rate), 6)
    0.001
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"Unknown optimizer {name!r}; kfcn has {', '.join(OPTIMIZERS)}.")
    if schedule not in SCHEDULES:
        raise ValueError(f"Unknown schedule {schedule!r}; kfcn has {', '.join(SCHEDULES)}.")
    if momentum is not None and name != "sgd":
        raise ValueError(f"momentum applies to the sgd optimizer; {name} has its own moment estimates.")
    rate, cosine = learning_rate, keras.optimizers.schedules.CosineDecay
    if schedule == "cosine":
        if total_steps is None or total_steps < 1:
            raise ValueError(
                f"A cosine schedule needs total_steps >= 1 (epochs x steps per epoch); got {total_steps!r}."
            )
        if warmup_fraction > 0:
            warmup = max(1, math.floor(total_steps * warmup_fraction + 1e-9))  # total // 20 at 5 %
            rate = cosine(rate / 10, total_steps, warmup_target=rate, warmup_steps=warmup)
        else:
            rate = cosine(rate, total_steps)
    options = {"learning_rate": rate}
    if momentum is not None:
        options["momentum"] = momentum
    if ema:
        options |= {"use_ema": True, "ema_momentum": 0.99}
    optimizer = {"adam": keras.optimizers.Adam, "adamw": keras.optimizers.AdamW, "sgd": keras.optimizers.SGD}[name](
        **options
    )
    return keras.optimizers.LossScaleOptimizer(optimizer) if loss_scaling else optimizer


def recipe(name):
    """Every option of a named recipe shipped with kfcn (what `kfcn train --recipe NAME` starts from).

    Example:
    >>> recipe("isbi2012")["schedule"]
    'cosine'
    """
    from kfcn.recipes import recipe as load

    return load(name)


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
    best = None if values is None else best_logged_index(values, mode)
    return None if best is None else float(values[best])


def best_logged_index(values, mode):
    """The row of the best finite value of a logged quantity (the first of equals), the epoch that
    `BestModelCheckpoint` keeps (it saves finite values only, on a strict improvement); None if none is finite.

    Example:
    >>> best_logged_index(np.array([0.9, np.nan, 0.5, 0.5]), "min"), best_logged_index(np.array([np.nan]), "max")
    (2, None)
    """
    values = np.asarray(values, dtype="float64")
    finite = np.isfinite(values)
    if not finite.any():
        return None
    ranked = np.where(finite, values, np.inf if mode == "min" else -np.inf)
    return int(ranked.argmin() if mode == "min" else ranked.argmax())


def standard_callbacks(run_dir, monitor, mode, patience=None, ema=False, crop_stream=None, precise_bn=None):
    """The callbacks of a resumable run in `run_dir`, every file written atomically (`kfcn.checkpoints`).

    - `model.keras`: the best epoch by `monitor` (resumes its comparison from the log);
    - `backup/`: the weights and optimizer state of the last epoch, so rerunning the same
      command resumes at the epoch it stopped (and `ResumeCropStream` keeps the crop
      stream aligned), and a larger `--epochs` extends a finished run; a kill at any
      moment leaves a state that resumes;
    - `training.csv`: one row per epoch, with the learning rate, and `curves.png`, its curves, redrawn at most
      once a minute while the run goes on (`CurvesPlot`);
    - with `patience`, early stopping; with `ema`, the checkpoint and validation use
      the optimizer's moving average of the weights (`SwapEMAWeights`);
    - with `precise_bn` (fixed input batches), each epoch's batch-norm statistics are
      recomputed on them before validation and checkpoints (`kfcn.batch_norm.PreciseBatchNorm`);
    - a training loss that turns NaN or infinite stops the run at that step, before its
      epoch writes anything (`StopOnNonFiniteLoss`).

    Example:
    >>> import tempfile
    >>> [type(c).__name__ for c in standard_callbacks(tempfile.mkdtemp(), "val_loss", "min", patience=5)]
    ... # doctest: +NORMALIZE_WHITESPACE
    ['StopOnNonFiniteLoss', 'BestModelCheckpoint', 'LogLearningRate', 'EpochLog', 'CurvesPlot',
     'EarlyStopping', 'Backup']
    """

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    callbacks = [StopOnNonFiniteLoss()]
    if crop_stream is not None:
        from kfcn.data import ResumeCropStream

        callbacks.append(ResumeCropStream(crop_stream))
    if ema:
        callbacks.append(keras.callbacks.SwapEMAWeights(swap_on_epoch=True))
    if precise_bn is not None:  # after the swap: the statistics of the weights that are validated and kept
        from kfcn.batch_norm import PreciseBatchNorm

        callbacks.append(PreciseBatchNorm(precise_bn))
    log = run_dir / "training.csv"
    callbacks.append(
        BestModelCheckpoint(
            run_dir / "model.keras", monitor, mode, initial_value_threshold=best_so_far(log, monitor, mode)
        )
    )
    callbacks.append(LogLearningRate())
    callbacks.append(EpochLog(log))
    callbacks.append(CurvesPlot(log, run_dir / "curves.png"))
    if patience:
        callbacks.append(
            keras.callbacks.EarlyStopping(monitor=monitor, mode=mode, patience=patience, restore_best_weights=False)
        )
    # Last, so that a backup is taken only once everything else has logged the epoch. Kept when
    # the run ends: raising --epochs continues from it.
    callbacks.append(Backup(run_dir / "backup", delete_checkpoint=False))
    return callbacks


class TrainingDiverged(ValueError):
    """The training loss became NaN or infinite: the weights diverged (`StopOnNonFiniteLoss`)."""


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Raises `TrainingDiverged` at the first training step whose loss, or any of whose weights, is NaN or infinite.

    Once the weights hold a NaN every later step trains on NaN, and Keras' own `TerminateOnNaN`
    lets the epoch end, so its log row, checkpoint and backup would keep the diverged weights.
    Raised mid-epoch, before this epoch's writes, it leaves a run folder as it was after the
    last finite epoch. The loss alone does not tell: on CPUs whose vector max/min turn NaN
    into the other operand (oneDNN's AVX-512 kernels; the losses' clipping), a model whose
    weights are all NaN can report a finite loss (`kfcn.finite_weights`), so each step's
    weights are checked too (one pass over them: 23 ms for the 7.8 M of a U-Net-32, a quarter of a
    percent of its step; `benchmarks/divergence_check.py`).

    Example:
    >>> inputs = keras.Input((2,))
    >>> model = keras.Model(inputs, keras.layers.Dense(1, name="dense")(inputs))
    >>> stop = StopOnNonFiniteLoss()
    >>> stop.set_model(model)
    >>> stop.on_epoch_begin(1)
    >>> stop.on_train_batch_end(0, {"loss": 0.7})  # a finite loss and finite weights: nothing happens
    >>> stop.on_train_batch_end(3, {"loss": float("nan")})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    kfcn.training.TrainingDiverged: the training loss became nan at epoch 2, step 4: the weights diverged...
    >>> _ = model.get_layer("dense").bias.assign([float("nan")])
    >>> stop.on_train_batch_end(4, {"loss": 0.7})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    kfcn.training.TrainingDiverged: 1 weight variable ('dense/bias') became NaN or infinite (the logged loss, 0.7, ...
    """

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        from kfcn.finite_weights import described, non_finite_weights

        loss = (logs or {}).get("loss")
        if loss is None or math.isfinite(float(loss)):
            diverged = non_finite_weights(self.model)
            if not diverged:
                return
            what = f"{described(diverged)} became NaN or infinite (the logged loss, {loss}, stayed finite)"
        else:
            what = f"the training loss became {float(loss)}"
        again = (
            "kfcn train --learning-rate: the same --output takes new settings, since no epoch was kept"
            if self.epoch == 0
            else "kfcn train --learning-rate, with --overwrite or another --output"
        )
        raise TrainingDiverged(
            f"{what} at epoch {self.epoch + 1}, step {batch + 1}: the weights "
            "diverged, and every later step would train on NaN. Nothing of this epoch was written: the run folder "
            "holds the epochs before it, and resuming would diverge again. Start again with a lower learning rate "
            f"({again}), or check the labels and the loss."
        )


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


class CurvesPlot(keras.callbacks.Callback):
    """Redraws `png_path` from the log at `csv_path` (`plot_training_curves`) at the end of an epoch, at most once
    every `every_seconds` (60 by default, so that short epochs do not spend their time drawing), titled with the
    model, the folder and the epoch it shows; the run's last drawing is its caller's (`kfcn train` draws the curves
    again when the run ends). Comes after the callback that writes the log's row.

    The run is then the only writer of its `curves.png`, which is never more than a minute (and an epoch) behind
    the log: what a `kfcn card` of the unfinished run shows.

    Example:
    >>> import numpy as np, tempfile, os
    >>> from kfcn.checkpoints import EpochLog
    >>> folder = tempfile.mkdtemp()
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)], name="tiny")
    >>> model.compile("sgd", "mse")
    >>> log, png = os.path.join(folder, "training.csv"), os.path.join(folder, "curves.png")
    >>> callbacks = [EpochLog(log), CurvesPlot(log, png, every_seconds=0)]
    >>> _ = model.fit(np.zeros((4, 2)), np.zeros((4, 1)), epochs=2, verbose=0, callbacks=callbacks)
    >>> os.path.isfile(png)
    True
    """

    every_seconds = 60.0

    def __init__(self, csv_path, png_path, every_seconds=None):
        super().__init__()
        self.csv_path, self.png_path = Path(csv_path), Path(png_path)
        if every_seconds is not None:
            self.every_seconds = every_seconds

    def on_train_begin(self, logs=None):
        self.drawn = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        if time.monotonic() - self.drawn < self.every_seconds:
            return
        title = f"{self.model.name}: {self.png_path.parent.name} (epoch {epoch + 1} of {self.params['epochs']})"
        plot_training_curves(self.csv_path, self.png_path, title=title)
        self.drawn = time.monotonic()


def plot_training_curves(csv_path, png_path, title=None):
    """Draws every logged quantity against the epoch (training solid, validation dashed), one panel per quantity.

    Validation that skipped epochs (`kfcn train --val-every`) is drawn at the epochs it ran, marked.

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
    for column in RUN_COLUMNS:
        log.pop(column, None)
    names = [key for key in log if not key.startswith("val_")]
    columns = min(3, max(1, len(names)))
    rows = -(-len(names) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.2 * rows), squeeze=False)
    for axis, name in zip(axes.flat, names):
        axis.plot(epochs, log[name], label="training")
        if f"val_{name}" in log:  # only the validated epochs (--val-every), joined, with markers if sparse
            values = log[f"val_{name}"]
            validated = np.isfinite(values)
            marker = None if validated.all() else "o"
            axis.plot(epochs[validated], values[validated], "--", marker=marker, markersize=3, label="validation")
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


def count_absolute_error(y_true, y_pred):
    """Per image, `|sum(y_pred) - sum(y_true)|`: the count error of density maps, in objects.

    Example:
    >>> truth = np.zeros((2, 4, 4, 1), "float32"); truth[0, 1, 1] = 1.0
    >>> [float(e) for e in count_absolute_error(truth, np.full((2, 4, 4, 1), 0.25, "float32"))]
    [3.0, 4.0]
    """
    from keras import ops

    axes = tuple(range(1, len(y_pred.shape)))
    y_true = ops.cast(y_true, "float32")
    y_pred = ops.cast(y_pred, "float32")
    return ops.abs(ops.sum(y_pred, axis=axes) - ops.sum(y_true, axis=axes))


class CountError(keras.metrics.MeanMetricWrapper):
    """Mean absolute count error of density maps: the mean over images of `|sum(pred) - sum(true)|`.

    With `kfcn train --label-mode density` the "images" of a training batch are its
    random crops (the count error of a crop, whose dots near the edge count in part), and
    those of validation are whole held-out images (the area the model takes), so
    `val_count_mae` is the whole-image count MAE. Lower is better.

    Example:
    >>> metric = CountError()
    >>> metric.update_state(np.zeros((1, 4, 4, 1)), np.full((1, 4, 4, 1), 0.5))
    >>> metric.name, float(metric.result())
    ('count_mae', 8.0)
    """

    def __init__(self, name="count_mae", dtype=None):
        super().__init__(count_absolute_error, name=name, dtype=dtype)
        self._direction = "down"

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}


def fold_density_scale(net, scale, name="density"):
    """`net` followed by a Rescaling by `1 / scale`: a network trained on targets x `scale` as a density model.

    Density targets are small (a Gaussian of σ = 2 px peaks near 0.04); training
    towards `scale` x the density keeps the network's outputs of order 1. Training the
    returned model with the loss multiplied by `scale ** 2` (mean squared error) or
    `scale` (mean absolute error) gives the network exactly the gradients of training it
    on the scaled targets, and the model that is saved outputs densities: its sum over
    a region is the count there. `calibrate_density_model` later changes the factor.

    Example:
    >>> net = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Identity()])
    >>> model = fold_density_scale(net, 100.0)
    >>> model.layers[-1].name, float(model.predict(np.full((1, 4, 4, 1), 50.0), verbose=0).sum())
    ('density', 8.0)
    """
    if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
        raise ValueError(f"The density scale must be a positive number; got {scale!r}.")
    output = keras.layers.Rescaling(1.0 / scale, name=name, dtype="float32")(net.outputs[0])
    return keras.Model(net.inputs, output, name=net.name)


def calibrate_density_model(model, images, counts):
    """A density model rescaled so that its total count on `images` is `sum(counts)`, and the factor.

    A density network that has not fully fitted its training images tends to count
    low (on the VGG cells by about 2 %); one factor, taken from the training images
    only, makes their total count right (`examples/count_cells.py`, `kfcn train
    --calibrate-counts`). The model must end with a `Rescaling` layer (as
    `fold_density_scale` makes it); the returned model shares every other layer with it
    and ends with a Rescaling of the same name whose scale is multiplied by the factor.

    Args:
        model: a Keras density model ending with a `Rescaling` layer.
        images: raw images (H, W, C), any sizes (predicted whole by `kfcn.inference.predict`).
        counts: the true number of objects in each image.

    Returns:
        `(calibrated model, factor)`; the factor is 1.0 when the model already counts right.

    Example:
    >>> net = keras.Sequential([keras.Input((None, None, 1)), keras.layers.Identity()])
    >>> model = fold_density_scale(net, 100.0)
    >>> calibrated, factor = calibrate_density_model(model, [np.full((8, 8, 1), 50.0)], [16])  # 32 counted
    >>> round(factor, 4)
    0.5
    >>> round(float(calibrated.predict(np.full((1, 8, 8, 1), 50.0), verbose=0).sum()), 4)
    16.0
    """
    from kfcn.inference import predict

    last = model.layers[-1]
    if not isinstance(last, keras.layers.Rescaling) or getattr(last, "offset", 0.0) not in (0, 0.0):
        raise ValueError(
            f"calibrate_density_model needs a model that ends with a Rescaling layer without offset (as "
            f"fold_density_scale makes it); {model.name} ends with {type(last).__name__}."
        )
    predicted = sum(float(np.asarray(predict(model, image))[..., 0].sum(dtype=np.float64)) for image in images)
    total = float(np.sum(counts, dtype=np.float64))
    if not predicted > 0:
        raise ValueError(
            f"The model counts {predicted:.4g} objects on the calibration images (true: {total:g}); a factor "
            "cannot make that right. Train longer or check the labels."
        )
    factor = total / predicted
    rescaled = keras.layers.Rescaling(float(last.scale) * factor, name=last.name, dtype=last.dtype_policy)
    return keras.Model(model.inputs, rescaled(last.input), name=model.name), factor
