import keras
import numpy as np
import pytest

from kfcn import metrics

pytestmark = pytest.mark.backend


def numpy_scores(truth, predicted, num_classes, ignore=None):
    keep = np.ones_like(truth, bool) if ignore is None else truth != ignore
    t, p = truth[keep], predicted[keep]
    dice, jaccard = [], []
    for c in range(num_classes):
        tp = np.sum((t == c) & (p == c))
        nt, np_ = np.sum(t == c), np.sum(p == c)
        if nt + np_ == 0:
            continue
        dice.append(2 * tp / (nt + np_))
        jaccard.append(tp / (nt + np_ - tp))
    return np.mean(dice), np.mean(jaccard), np.mean(t != p)


def test_multiclass_scores_accumulate_over_batches(rng):
    truth = rng.integers(0, 4, (6, 8, 8))
    probs = rng.random((6, 8, 8, 4)).astype("float32")
    dice, jaccard, error = metrics.DiceScore(4), metrics.JaccardScore(4), metrics.PixelError(4)
    for start in (0, 3):
        for metric in (dice, jaccard, error):
            metric.update_state(truth[start : start + 3], probs[start : start + 3])
    expected = numpy_scores(truth, probs.argmax(-1), 4)
    assert float(dice.result()) == pytest.approx(expected[0], rel=1e-5)
    assert float(jaccard.result()) == pytest.approx(expected[1], rel=1e-5)
    assert float(error.result()) == pytest.approx(expected[2], rel=1e-5)


def test_jaccard_equals_keras_mean_iou(rng):
    truth = rng.integers(0, 3, (2, 8, 8))
    probs = rng.random((2, 8, 8, 3)).astype("float32")
    ours = metrics.JaccardScore(3)
    ours.update_state(truth, probs)
    reference = keras.metrics.MeanIoU(3)
    reference.update_state(truth, probs.argmax(-1))
    assert float(ours.result()) == pytest.approx(float(reference.result()), rel=1e-5)


def test_ignore_class_and_one_hot_targets(rng):
    truth = rng.integers(0, 4, (2, 8, 8))  # 3 = void
    probs = rng.random((2, 8, 8, 3)).astype("float32")
    metric = metrics.JaccardScore(3, ignore_class=3)
    metric.update_state(truth, probs)
    assert float(metric.result()) == pytest.approx(numpy_scores(truth, probs.argmax(-1), 3, ignore=3)[1])
    one_hot = np.eye(3)[np.minimum(truth, 2)]
    again = metrics.DiceScore(3)
    again.update_state(one_hot, probs)
    assert float(again.result()) == pytest.approx(numpy_scores(np.minimum(truth, 2), probs.argmax(-1), 3)[0])


def test_binary_threshold_and_foreground_only():
    truth = np.array([[[1, 1], [0, 0]]])
    probs = np.array([[[[0.9], [0.2]], [[0.1], [0.7]]]], "float32")
    metric = metrics.DiceScore(2, class_ids=[1], threshold=0.5)
    metric.update_state(truth, probs)
    assert float(metric.result()) == pytest.approx(0.5)
    metric.reset_state()
    metric.update_state(truth, probs * 0 + 0.95)
    assert float(metric.result()) == pytest.approx(2 * 2 / (2 + 4))


def test_metrics_in_fit_and_config_round_trip(rng):
    inputs = keras.Input((8, 8, 1))
    model = keras.Model(inputs, keras.layers.Conv2D(3, 1, activation="softmax")(inputs))
    model.compile("adam", "sparse_categorical_crossentropy", metrics=[metrics.JaccardScore(3), metrics.PixelError(3)])
    x = rng.normal(size=(4, 8, 8, 1)).astype("float32")
    y = rng.integers(0, 3, (4, 8, 8))
    logs = model.evaluate(x, y, verbose=0, return_dict=True)
    assert 0.0 <= logs["jaccard"] <= 1.0 and 0.0 <= logs["pixel_error"] <= 1.0
    clone = metrics.DiceScore.from_config(metrics.DiceScore(5, class_ids=[1, 2], ignore_class=4).get_config())
    assert clone.num_classes == 5 and clone.class_ids == [1, 2] and clone.ignore_class == 4


def test_rejects_one_class():
    with pytest.raises(ValueError, match="num_classes=2"):
        metrics.DiceScore(1)
