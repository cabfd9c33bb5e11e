"""kfcn.training: losses by name against NumPy, the log reader, the monitor direction."""

import re

import keras
import numpy as np
import pytest

from kfcn import metrics
from kfcn.training import make_optimizer, monitor_mode, read_log, segmentation_loss


def test_ce_plus_j2_is_the_sum_of_its_parts(rng):
    y = (rng.random((2, 8, 8, 1)) > 0.5).astype("float32")
    p = rng.uniform(0.05, 0.95, (2, 8, 8, 1)).astype("float32")
    bce = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    intersection = (y * p).sum(axis=(1, 2, 3))
    j2 = 1 - intersection / ((y**2).sum(axis=(1, 2, 3)) + (p**2).sum(axis=(1, 2, 3)) - intersection + 1e-7)
    assert float(segmentation_loss("ce+j2", 1)(y, p)) == pytest.approx(bce + j2.mean(), rel=1e-4)


def test_unknown_names_and_ignore_class_for_binary_are_refused():
    with pytest.raises(ValueError, match="Unknown loss"):
        segmentation_loss("focal", 1)
    with pytest.raises(ValueError, match="class-index labels"):
        segmentation_loss("ce", 1, ignore_class=2)


def test_read_log_keeps_the_last_row_of_a_repeated_epoch_and_reads_na(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("epoch,loss,val_loss\n0,2.0,NA\n1,1.5,1.6\n1,1.4,1.5\n")
    log = read_log(path)
    assert log["epoch"].tolist() == [1, 2] and log["loss"].tolist() == [2.0, 1.4]  # Keras' 0-based log, renumbered
    assert np.isnan(log["val_loss"][0])


def test_monitor_direction_comes_from_the_metric():
    model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Conv2D(1, 1, activation="sigmoid")])
    model.compile(loss="bce", metrics=[metrics.DiceScore(2, name="dice"), metrics.PixelError(2)])
    model.fit(np.zeros((1, 4, 4, 1)), np.zeros((1, 4, 4, 1)), verbose=0)
    assert monitor_mode("val_dice", model) == "max" and monitor_mode("val_pixel_error", model) == "min"
    assert monitor_mode("val_loss") == "min" and monitor_mode("val_mean_iou") == "max"


def test_read_log_refuses_a_row_with_more_values_than_the_header_names(tmp_path):
    # Keras' CSVLogger appends rows without a header: a resumed run that logs a new column misaligns.
    path = tmp_path / "log.csv"
    path.write_text("epoch,loss,val_loss\n0,2.0,2.1\n1,0.001,1.5,1.6\n")
    with pytest.raises(ValueError, match="epoch 1 has more values than the header names"):
        read_log(path)


def test_make_optimizer_warms_up_then_follows_the_cosine_formula():
    rate, total = 0.1, 200
    schedule = make_optimizer("sgd", rate, "cosine", total_steps=total, momentum=0.9)._learning_rate
    warmup = total // 20  # kfcn train's 5 %: from a tenth of the rate up to it, linearly
    for step in (0, 3, warmup, 50, 120, total):
        if step < warmup:
            expected = rate / 10 + (rate - rate / 10) * step / warmup
        else:
            expected = rate * 0.5 * (1 + np.cos(np.pi * min(step - warmup, total) / total))
        assert float(schedule(step)) == pytest.approx(expected, rel=1e-5, abs=1e-7)
    plain = make_optimizer("adam", 1e-3, "cosine", total_steps=total, warmup_fraction=0)._learning_rate
    assert [float(plain(s)) for s in (0, 100)] == pytest.approx([1e-3, 0.5e-3], rel=1e-5)
    assert float(make_optimizer("adamw", 2e-3).learning_rate) == pytest.approx(2e-3)


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"name": "rmsprop"}, "Unknown optimizer 'rmsprop'; kfcn has adam, adamw, sgd"),
        ({"schedule": "step"}, "Unknown schedule 'step'; kfcn has cosine, constant"),
        ({"momentum": 0.9}, "momentum applies to the sgd optimizer"),
        ({"schedule": "cosine"}, "A cosine schedule needs total_steps >= 1"),
    ],
)
def test_make_optimizer_refuses_what_it_cannot_build(options, problem):
    with pytest.raises(ValueError, match=re.escape(problem)):
        make_optimizer(**options)


def test_validation_of_some_epochs_only_is_drawn_at_those_epochs(tmp_path):
    """With --val-every the log holds validation at a few epochs: each must show (an isolated value between
    missing ones draws nothing as a plain line), and the figure must differ from one without them."""
    from PIL import Image

    from kfcn.training import plot_training_curves

    rows = ["epoch,loss,val_loss"] + [f"{e},{1 / e},{2 / e if e % 3 == 0 else 'NA'}" for e in range(1, 10)]
    none = ["epoch,loss,val_loss"] + [f"{e},{1 / e},NA" for e in range(1, 10)]
    images = []
    for name, lines in (("sparse", rows), ("none", none)):
        (tmp_path / f"{name}.csv").write_text("\n".join(lines) + "\n")
        plot_training_curves(tmp_path / f"{name}.csv", tmp_path / f"{name}.png")
        images.append(np.asarray(Image.open(tmp_path / f"{name}.png").convert("RGB"), np.int16))
    assert images[0].shape == images[1].shape
    assert (np.abs(images[0] - images[1]).sum(-1) > 60).sum() > 40  # the three validated epochs are drawn


@pytest.mark.parametrize("every_seconds, drawn_after", [(0, [1, 2, 3]), (3600, [])])
def test_the_curves_are_redrawn_after_an_epoch_at_most_every_so_many_seconds(
    tmp_path, monkeypatch, every_seconds, drawn_after
):
    """Each drawing reads the log with the epoch just ended and says which it is; short epochs draw nothing."""
    import kfcn.training
    from kfcn.checkpoints import EpochLog
    from kfcn.training import CurvesPlot

    drawings = []
    monkeypatch.setattr(
        kfcn.training,
        "plot_training_curves",
        lambda csv_path, png_path, title: drawings.append((read_log(csv_path)["epoch"].tolist(), png_path, title)),
    )
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)], name="tiny")
    model.compile("sgd", "mse")
    log, png = tmp_path / "run" / "training.csv", tmp_path / "run" / "curves.png"
    log.parent.mkdir()
    callbacks = [EpochLog(log), CurvesPlot(log, png, every_seconds=every_seconds)]
    model.fit(np.zeros((4, 2)), np.zeros((4, 1)), epochs=3, verbose=0, callbacks=callbacks)
    assert drawings == [(list(range(1, k + 1)), png, f"tiny: run (epoch {k} of 3)") for k in drawn_after]
