"""kfcn.training: losses by name against NumPy, the log reader, the monitor direction."""

import keras
import numpy as np
import pytest

from kfcn import metrics
from kfcn.training import monitor_mode, read_log, segmentation_loss


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
