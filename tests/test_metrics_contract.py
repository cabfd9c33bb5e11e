"""Metrics: empty masks, argument checks, `_direction` for callbacks, bad labels, binary models and logits."""

import keras
import numpy as np
import pytest

from kfcn import losses, metrics
from tests.conftest import BACKEND

pytestmark = pytest.mark.backend

SCORES = [metrics.DiceScore, metrics.JaccardScore]


def _score(metric, truth, pred, **kwargs):
    metric.update_state(truth, pred, **kwargs)
    return float(metric.result())


@pytest.mark.parametrize("metric_class", SCORES)
def test_empty_target_predicted_empty_scores_one(metric_class):
    empty = np.zeros((2, 4, 4), "int32")
    background = np.full((2, 4, 4, 1), 0.1, "float32")
    assert _score(metric_class(2, class_ids=[1]), empty, background) == pytest.approx(1.0)
    assert _score(metric_class(2), empty, background) == pytest.approx(1.0)
    # One false positive pixel: the foreground score drops to 0.
    background[0, 0, 0, 0] = 0.9
    assert _score(metric_class(2, class_ids=[1]), empty, background) == pytest.approx(0.0)
    assert _score(metrics.PixelError(2), empty, background) == pytest.approx(1 / 32)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_classes": 3, "class_ids": [3]}, r"distinct ints in range\(3\)"),
        ({"num_classes": 3, "class_ids": [-1]}, r"range\(3\)"),
        ({"num_classes": 3, "class_ids": [1, 1]}, "distinct"),
        ({"num_classes": 3, "class_ids": []}, "distinct ints"),
        ({"num_classes": 3, "class_ids": [1.5]}, "distinct ints"),
        ({"num_classes": 1}, "binary model.*num_classes=2"),
        ({"num_classes": 2.0}, "must be an int >= 2"),
        ({"num_classes": 12, "ignore_class": 11.5}, "`ignore_class` must be an int"),
        ({"num_classes": 12, "class_ids": [3], "ignore_class": 3}, "both scored.*and ignored"),
        ({"num_classes": 2, "threshold": 1.5}, r"probability in \[0, 1\]"),
    ],
)
@pytest.mark.parametrize("metric_class", SCORES)
def test_bad_arguments_are_refused_in_init(metric_class, kwargs, message):
    with pytest.raises(ValueError, match=message):
        metric_class(**kwargs)


def test_void_equal_to_num_classes_is_accepted():
    # CamVid: 11 classes, void = 11.
    truth = np.array([[[0, 11], [10, 11]]])
    probs = np.eye(11, dtype="float32")[np.array([[[0, 5], [10, 3]]])]
    assert _score(metrics.JaccardScore(11, ignore_class=11), truth, probs) == pytest.approx(1.0)
    assert _score(metrics.PixelError(11, ignore_class=11), truth, probs) == pytest.approx(0.0)


@pytest.mark.parametrize(
    "metric, monitor, better", [(metrics.DiceScore(2), "dice", "up"), (metrics.PixelError(2), "pixel_error", "down")]
)
def test_direction_drives_early_stopping_in_auto_mode(rng, metric, monitor, better):
    assert metric._direction == better
    inputs = keras.Input((6, 6, 1))
    model = keras.Model(inputs, keras.layers.Conv2D(1, 1, activation="sigmoid")(inputs))
    model.compile("sgd", "binary_crossentropy", metrics=[metric])
    x = rng.normal(size=(4, 6, 6, 1)).astype("float32")
    y = (rng.random((4, 6, 6)) > 0.5).astype("float32")
    stopper = keras.callbacks.EarlyStopping(monitor=monitor, mode="auto", patience=5)
    model.fit(x, y, epochs=2, verbose=0, callbacks=[stopper])  # without _direction: ValueError
    assert stopper.monitor_op is (keras.ops.greater if better == "up" else keras.ops.less)
    assert bool(stopper._is_improvement(0.6, 0.5)) is (better == "up")


@pytest.mark.parametrize("metric_class", [metrics.DiceScore, metrics.JaccardScore, metrics.PixelError])
def test_labels_outside_classes_are_refused(metric_class):
    truth = np.array([[[0, 255], [255, 0]]])  # a raw 0/255 mask
    probs = np.full((1, 2, 2, 1), 0.7, "float32")
    with pytest.raises(ValueError, match=r"class indices in \[0, 2\).*got 255.*labels // 255"):
        metric_class(2).update_state(truth, probs)
    with pytest.raises(ValueError, match=r"got -1, 0.5"):
        metric_class(2).update_state(np.array([[[-1, 0.5], [1, 0]]]), probs)


def test_labels_outside_classes_in_compiled_evaluation_give_nan(rng):
    inputs = keras.Input((6, 6, 1))
    model = keras.Model(inputs, keras.layers.Conv2D(3, 1, activation="softmax")(inputs))
    model.compile(
        loss=losses.DiceLoss(ignore_class=3),
        metrics=[metrics.DiceScore(3, ignore_class=3), metrics.PixelError(3, ignore_class=3)],
    )
    x = rng.normal(size=(2, 6, 6, 1)).astype("float32")
    y = rng.integers(0, 4, (2, 6, 6))
    logs = model.evaluate(x, y, verbose=0, return_dict=True)
    assert 0 <= logs["dice"] <= 1 and 0 <= logs["pixel_error"] <= 1
    y[1, 2, 2] = 255
    if BACKEND == "torch":  # eager: concrete values, so the fix is named
        with pytest.raises(ValueError, match="got 255"):
            model.evaluate(x, y, verbose=0)
    else:
        logs = model.evaluate(x, y, verbose=0, return_dict=True)
        assert np.isnan(logs["dice"]) and np.isnan(logs["pixel_error"])


@pytest.mark.parametrize("metric_class", [metrics.DiceScore, metrics.JaccardScore, metrics.PixelError])
def test_non_finite_values_make_the_result_nan_until_reset(metric_class):
    truth = np.array([[[0, 1], [1, 0]]])
    probs = np.array([[[[0.2], [np.nan]], [[0.9], [0.1]]]], "float32")
    metric = metric_class(2)
    assert np.isnan(_score(metric, truth, probs))
    assert np.isnan(_score(metric, truth, np.nan_to_num(probs)))  # accumulated: stays NaN
    metric.reset_state()
    assert _score(metric, truth, np.nan_to_num(probs, nan=0.8)) == pytest.approx(
        0.0 if metric_class is metrics.PixelError else 1.0
    )
    assert np.isnan(_score(metric_class(2), np.array([[[0, np.nan], [1, 0]]]), probs * 0 + 0.5))


def test_binary_model_and_its_metrics_agree(rng):
    # A binary model: one sigmoid channel (num_classes=1 in the builder), scored with num_classes=2.
    truth = rng.integers(0, 2, (2, 5, 5))
    logits = rng.normal(size=(2, 5, 5, 1)).astype("float32") * 2
    probs = 1 / (1 + np.exp(-logits))
    predicted = (probs[..., 0] > 0.5).astype(int)
    tp, nt, np_ = np.sum((truth == 1) & (predicted == 1)), np.sum(truth == 1), np.sum(predicted == 1)
    assert _score(metrics.DiceScore(2, class_ids=[1]), truth, probs) == pytest.approx(2 * tp / (nt + np_))
    assert _score(metrics.DiceScore(2, class_ids=[1], from_logits=True), truth, logits) == pytest.approx(
        2 * tp / (nt + np_)
    )
    assert _score(metrics.PixelError(2, from_logits=True), truth, logits) == pytest.approx(np.mean(truth != predicted))
    # Two softmax channels give the same scores as the one sigmoid channel.
    two_channels = np.concatenate([1 - probs, probs], axis=-1)
    assert _score(metrics.DiceScore(2, class_ids=[1]), truth, two_channels) == pytest.approx(2 * tp / (nt + np_))


def test_prediction_channels_must_match_num_classes():
    with pytest.raises(ValueError, match="one-channel.*num_classes must be 2"):
        metrics.DiceScore(3).update_state(np.zeros((1, 2, 2)), np.zeros((1, 2, 2, 1), "float32"))
    with pytest.raises(ValueError, match="3 channels but num_classes=4"):
        metrics.JaccardScore(4).update_state(np.zeros((1, 2, 2)), np.zeros((1, 2, 2, 3), "float32"))


def test_per_sample_weight_and_config_round_trip():
    truth = np.array([[[1, 1], [0, 0]], [[1, 1], [1, 1]]])
    probs = np.full((2, 2, 2, 1), 0.9, "float32")
    # Sample 0 weighs 0: only sample 1, all foreground predicted foreground, counts.
    assert _score(metrics.PixelError(2), truth, probs, sample_weight=np.array([0.0, 1.0])) == pytest.approx(0.0)
    metric = metrics.JaccardScore(12, class_ids=[1, 2], ignore_class=11, from_logits=True, threshold=0.3)
    clone = metrics.JaccardScore.from_config(metric.get_config())
    assert clone.get_config() == metric.get_config() and clone._direction == "up"
    assert metrics.PixelError.from_config(metrics.PixelError(3).get_config())._direction == "down"
