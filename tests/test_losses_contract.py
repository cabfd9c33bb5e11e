"""Overlap losses: bad inputs (NaN, raw 0/255 masks, unknown labels), sparse labels, ignore_class, logits,
and CompoundLoss with Keras identifiers, its own-reduction parts and weight checks."""

import keras
import numpy as np
import pytest

from kfcn import losses
from tests.conftest import BACKEND

pytestmark = pytest.mark.backend

OVERLAP = [losses.JaccardLoss, losses.JaccardJ2Loss, losses.DiceLoss]


def numpy_overlap(loss_class, y, p, keep=None):
    """The formulas of the module docstring per sample and channel, void pixels removed, averaged."""
    if keep is not None:
        y, p = y * keep[..., None], p * keep[..., None]
    i = np.sum(y * p, axis=(1, 2))
    sy, sp, sy2, sp2 = np.sum(y, (1, 2)), np.sum(p, (1, 2)), np.sum(y**2, (1, 2)), np.sum(p**2, (1, 2))
    ratio = {
        losses.JaccardLoss: lambda: i / (sy + sp - i),
        losses.JaccardJ2Loss: lambda: i / (sy2 + sp2 - i + 1e-7),
        losses.DiceLoss: lambda: 2 * i / (sy + sp),
    }[loss_class]()
    return float(np.mean(1 - ratio))


def _model(channels, activation):
    inputs = keras.Input((6, 6, 1))
    return keras.Model(inputs, keras.layers.Conv2D(channels, 1, activation=activation)(inputs))


# --- NaN and Inf never look perfect ---------------------------------------------------------------


@pytest.mark.parametrize("loss_class", OVERLAP)
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_prediction_or_target_gives_nan(loss_class, bad):
    y = np.zeros((2, 4, 4, 1), "float32")
    y[:, :2] = 1
    p = np.full((2, 4, 4, 1), 0.5, "float32")
    p_bad = p.copy()
    p_bad[1, 0, 0, 0] = bad
    y_bad = y.copy()
    y_bad[0, 3, 3, 0] = bad
    assert np.isnan(float(loss_class()(y, p_bad)))
    assert np.isnan(float(loss_class()(y_bad, p)))
    assert np.isnan(float(loss_class(from_logits=True)(y, p_bad)))
    assert np.isnan(float(loss_class(per_sample=False)(y, p_bad)))
    # An all-NaN prediction on an empty target used to be a "perfect" 0.0.
    assert np.isnan(float(loss_class()(np.zeros_like(y), np.full_like(p, np.nan))))


# --- targets outside [0, 1]: refused eagerly, NaN in a compiled graph --------------------------------


@pytest.mark.parametrize("loss_class", OVERLAP)
def test_raw_255_mask_is_refused_with_the_fix(loss_class):
    y = np.zeros((1, 4, 4, 1), "uint8")
    y[0, :2] = 255
    with pytest.raises(ValueError, match=r"\[0, 1\], got 255; .*label_mode='binary'.*labels // 255"):
        loss_class()(y, np.full((1, 4, 4, 1), 0.5, "float32"))
    with pytest.raises(ValueError, match="got -1"):
        loss_class()(-y.astype("float32") / 255, np.full((1, 4, 4, 1), 0.5, "float32"))


def test_predictions_outside_unit_interval_ask_for_from_logits():
    y = np.ones((1, 2, 2, 1), "float32")
    with pytest.raises(ValueError, match="got -2, 3.*from_logits=True"):
        losses.DiceLoss()(y, np.array([-2.0, 3.0, 0.5, 0.5], "float32").reshape(1, 2, 2, 1))


def test_raw_mask_in_compiled_training_gives_nan_and_terminate_on_nan_stops(rng):
    model = _model(1, "sigmoid")
    model.compile("sgd", losses.JaccardJ2Loss())
    x = rng.normal(size=(4, 6, 6, 1)).astype("float32")
    y = (rng.random((4, 6, 6, 1)) > 0.5).astype("float32") * 255
    if BACKEND == "torch":  # PyTorch trains eagerly: the values are concrete, so the fix is named
        with pytest.raises(ValueError, match="label_mode='binary'"):
            model.fit(x, y, epochs=3, batch_size=2, verbose=0)
        return
    history = model.fit(x, y, epochs=3, batch_size=2, verbose=0, callbacks=[keras.callbacks.TerminateOnNaN()])
    assert len(history.history["loss"]) == 1 and np.isnan(history.history["loss"][0])


# --- sparse labels and ignore_class --------------------------------------------------------------------


def _camvid_like(rng, classes=4, void=4):
    # Class indices 0..classes-1 plus the void value (CamVid: 11 classes, void = 11 = num_classes).
    labels = rng.integers(0, classes, (2, 6, 7))
    labels[rng.random(labels.shape) < 0.2] = void
    labels[0, 0, :] = void
    probs = rng.dirichlet(np.ones(classes), (2, 6, 7)).astype("float32")
    return labels, probs


@pytest.mark.parametrize("loss_class", OVERLAP)
def test_sparse_labels_with_void_match_numpy(rng, loss_class):
    labels, probs = _camvid_like(rng)
    keep = (labels != 4).astype("float32")
    one_hot = np.eye(4, dtype="float32")[np.minimum(labels, 3)]
    expected = numpy_overlap(loss_class, one_hot, probs, keep)
    loss = loss_class(ignore_class=4)
    assert float(loss(labels, probs)) == pytest.approx(expected, rel=1e-5)
    # (B, H, W, 1) float labels, as the crop pipeline yields them; explicit sparse_labels=True.
    as_pipeline = labels[..., None].astype("float32")
    assert float(loss_class(sparse_labels=True, ignore_class=4)(as_pipeline, probs)) == pytest.approx(
        expected, rel=1e-5
    )
    # Void pixels change nothing: any prediction there gives the same loss.
    scrambled = probs.copy()
    scrambled[labels == 4] = np.roll(scrambled[labels == 4], 1, axis=-1)
    assert float(loss(labels, scrambled)) == pytest.approx(expected, rel=1e-5)


def test_sparse_labels_without_void_equal_one_hot(rng):
    labels = rng.integers(0, 3, (2, 5, 5))
    probs = rng.dirichlet(np.ones(3), (2, 5, 5)).astype("float32")
    one_hot = np.eye(3, dtype="float32")[labels]
    for loss_class in OVERLAP:
        assert float(loss_class()(labels, probs)) == pytest.approx(float(loss_class()(one_hot, probs)), rel=1e-6)


def test_sparse_labels_for_one_sigmoid_channel_are_zero_and_one(rng):
    labels = rng.integers(0, 3, (2, 5, 5, 1))  # 2 = "don't care"
    probs = rng.random((2, 5, 5, 1)).astype("float32")
    keep = (labels[..., 0] != 2).astype("float32")
    expected = numpy_overlap(losses.DiceLoss, (labels == 1).astype("float32"), probs, keep)
    assert float(losses.DiceLoss(sparse_labels=True, ignore_class=2)(labels, probs)) == pytest.approx(expected)
    assert float(losses.DiceLoss(ignore_class=2)(labels, probs)) == pytest.approx(expected)  # dense mask + void


@pytest.mark.parametrize("bad_label", [4, 255, -1, 1.5])
def test_unknown_class_indices_are_refused(rng, bad_label):
    labels, probs = _camvid_like(rng, void=11)
    labels = labels.astype("float32")
    labels[1, 2, 3] = bad_label
    with pytest.raises(ValueError, match=rf"whole numbers in \[0, 4\).*got {bad_label:g}.*labels // 255"):
        losses.JaccardLoss(ignore_class=11)(labels, probs)


def test_unknown_class_indices_in_compiled_evaluation_give_nan(rng):
    model = _model(3, "softmax")
    model.compile(loss=losses.DiceLoss(ignore_class=3))
    x = rng.normal(size=(2, 6, 6, 1)).astype("float32")
    y = rng.integers(0, 4, (2, 6, 6, 1))
    assert np.isfinite(model.evaluate(x, y, verbose=0))
    y[0, 0, 0, 0] = 255
    if BACKEND == "torch":
        with pytest.raises(ValueError, match="got 255"):
            model.evaluate(x, y, verbose=0)
    else:
        assert np.isnan(model.evaluate(x, y, verbose=0))


def test_ignore_class_needs_index_labels_or_one_channel():
    with pytest.raises(ValueError, match="ignore_class applies to class-index labels"):
        losses.DiceLoss(ignore_class=3, sparse_labels=False)(np.zeros((1, 2, 2, 3)), np.zeros((1, 2, 2, 3), "float32"))
    with pytest.raises(ValueError, match="`ignore_class` must be an int"):
        losses.DiceLoss(ignore_class=2.5)
    with pytest.raises(ValueError, match="`sparse_labels` must be"):
        losses.DiceLoss(sparse_labels="auto")


# --- logits ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("loss_class", OVERLAP)
def test_from_logits_applies_sigmoid_or_softmax(rng, loss_class):
    logits = rng.normal(size=(2, 5, 5, 1)).astype("float32") * 3
    y = (rng.random((2, 5, 5, 1)) > 0.5).astype("float32")
    sigmoid = 1 / (1 + np.exp(-logits))
    assert float(loss_class(from_logits=True)(y, logits)) == pytest.approx(numpy_overlap(loss_class, y, sigmoid))
    logits = rng.normal(size=(2, 5, 5, 3)).astype("float32") * 3
    softmax = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    labels = rng.integers(0, 3, (2, 5, 5))
    expected = numpy_overlap(loss_class, np.eye(3, dtype="float32")[labels], softmax)
    assert float(loss_class(from_logits=True)(labels, logits)) == pytest.approx(expected, rel=1e-5)


def test_logit_head_trains_with_from_logits(rng):
    model = _model(1, None)
    model.compile(keras.optimizers.Adam(0.05), losses.CompoundLoss([losses.DiceLoss(from_logits=True)]))
    x = rng.normal(size=(8, 6, 6, 1)).astype("float32")
    history = model.fit(x, (x > 0).astype("float32"), epochs=5, batch_size=4, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]


def test_per_pixel_sample_weight_weights_each_sample_by_its_mean(rng):
    y = (rng.random((2, 4, 4, 1)) > 0.5).astype("float32")
    p = rng.random((2, 4, 4, 1)).astype("float32")
    w = rng.uniform(0, 3, (2, 4, 4)).astype("float32")
    per_sample = [numpy_overlap(losses.DiceLoss, y[b : b + 1], p[b : b + 1]) for b in range(2)]
    expected = np.mean(np.array(per_sample) * w.mean(axis=(1, 2)))
    assert float(losses.DiceLoss()(y, p, sample_weight=w)) == pytest.approx(expected, rel=1e-5)


# --- CompoundLoss -------------------------------------------------------------------------------------------


def _bce(y, p):
    return -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))


@pytest.mark.parametrize(
    "part",
    ["binary_crossentropy", "BinaryCrossentropy", keras.losses.BinaryCrossentropy, keras.losses.binary_crossentropy],
)
def test_compound_takes_keras_identifiers(rng, part):
    y = (rng.random((2, 5, 5, 1)) > 0.5).astype("float32")
    p = rng.uniform(0.05, 0.95, (2, 5, 5, 1)).astype("float32")
    compound = losses.CompoundLoss([part, losses.DiceLoss()], [0.5, 2.0])
    expected = 0.5 * _bce(y, p) + 2.0 * numpy_overlap(losses.DiceLoss, y, p)
    assert float(compound(y, p)) == pytest.approx(expected, rel=1e-4)
    clone = keras.losses.deserialize(keras.losses.serialize(compound))
    assert float(clone(y, p)) == pytest.approx(expected, rel=1e-4) and clone.weights == [0.5, 2.0]


def test_compound_calls_parts_with_their_own_reduction_and_sample_weight(rng):
    y = (rng.random((2, 5, 5, 1)) > 0.5).astype("float32")
    p = rng.uniform(0.05, 0.95, (2, 5, 5, 1)).astype("float32")
    w = rng.uniform(0.5, 5, (2, 5, 5)).astype("float32")
    summed = keras.losses.BinaryCrossentropy(reduction="sum")
    compound = losses.CompoundLoss([summed, losses.JaccardLoss()])
    ce = -(y * np.log(p) + (1 - y) * np.log(1 - p))[..., 0]
    per_sample = np.array([numpy_overlap(losses.JaccardLoss, y[b : b + 1], p[b : b + 1]) for b in range(2)])
    expected = np.sum(w * ce) + np.mean(per_sample * w.mean(axis=(1, 2)))
    assert float(compound(y, p, sample_weight=w)) == pytest.approx(expected, rel=1e-4)


def test_compound_with_sparse_parts_and_void(rng):
    labels, probs = _camvid_like(rng)
    compound = losses.CompoundLoss(
        [keras.losses.SparseCategoricalCrossentropy(ignore_class=4), losses.DiceLoss(ignore_class=4)]
    )
    keep = labels != 4
    picked = np.take_along_axis(probs, np.minimum(labels, 3)[..., None], axis=-1)[..., 0]
    one_hot = np.eye(4, dtype="float32")[np.minimum(labels, 3)]
    expected = -np.log(picked)[keep].mean() + numpy_overlap(losses.DiceLoss, one_hot, probs, keep.astype("float32"))
    assert float(compound(labels[..., None], probs)) == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize(
    "args, error, message",
    [
        (([losses.DiceLoss()], [1.0, 2.0]), ValueError, "1 losses but 2 weights"),
        (([losses.DiceLoss(), "mse"], [1.0, float("nan")]), ValueError, "finite and >= 0"),
        (([losses.DiceLoss(), "mse"], [1.0, -1.0]), ValueError, "finite and >= 0"),
        (([losses.DiceLoss(), "mse"], [0.0, 0.0]), ValueError, "at least one of them > 0"),
        (([losses.DiceLoss()], ["heavy"]), TypeError, "weights must be numbers"),
        (([], None), ValueError, "at least one loss"),
        ((losses.DiceLoss(),), TypeError, "wrap a single loss in a list"),
        (("binary_crossentropy",), TypeError, "wrap a single loss in a list"),
        ((["no_such_loss"],), ValueError, "cannot interpret the loss 'no_such_loss'.*binary_crossentropy"),
        (([3.0],), TypeError, "3.0 is not a loss"),
    ],
)
def test_compound_refuses_bad_arguments(args, error, message):
    with pytest.raises(error, match=message):
        losses.CompoundLoss(*args)


def test_compound_refuses_a_reduction_it_would_ignore():
    with pytest.raises(ValueError, match="set the reduction on each part"):
        losses.CompoundLoss([losses.DiceLoss()], reduction="sum")


def test_overlap_config_round_trip():
    loss = losses.JaccardJ2Loss(epsilon=1e-3, per_sample=False, from_logits=True, sparse_labels=True, ignore_class=11)
    clone = keras.losses.deserialize(keras.losses.serialize(loss))
    assert clone.get_config() == loss.get_config()
    assert (clone.epsilon, clone.from_logits, clone.sparse_labels, clone.ignore_class) == (1e-3, True, True, 11)
