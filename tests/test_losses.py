import keras
import numpy as np
import pytest

from kfcn import losses
from kfcn.analysis.gradients import input_gradient
from tests.layer_testing import to_numpy

pytestmark = pytest.mark.backend


# The seed's formulas, for one sample and one channel.
def seed_j(y, p):
    i = np.sum(y * p)
    return 1 - i / (np.sum(y) + np.sum(p) - i)


def seed_j2(y, p, eps):
    i = np.sum(y * p)
    return 1 - i / (np.sum(y**2) + np.sum(p**2) - i + eps)


def seed_dice(y, p):
    return 1 - 2 * np.sum(y * p) / (np.sum(y) + np.sum(p))


def _pair(rng, shape):
    y = (rng.random(shape) > 0.6).astype("float32")
    p = rng.random(shape).astype("float32")
    return y, p


def test_batch_one_channel_one_equals_seed_formulas(rng):
    y, p = _pair(rng, (1, 16, 12, 1))
    assert float(losses.JaccardLoss()(y, p)) == pytest.approx(seed_j(y, p), rel=1e-5)
    assert float(losses.JaccardJ2Loss(epsilon=1e-3)(y, p)) == pytest.approx(seed_j2(y, p, 1e-3), rel=1e-5)
    assert float(losses.DiceLoss()(y, p)) == pytest.approx(seed_dice(y, p), rel=1e-5)


def test_reduction_per_channel_then_batch(rng):
    y, p = _pair(rng, (3, 8, 8, 4))
    expected = np.mean([[seed_j2(y[b, ..., c], p[b, ..., c], 1e-7) for c in range(4)] for b in range(3)])
    assert float(losses.JaccardJ2Loss()(y, p)) == pytest.approx(expected, rel=1e-5)


def test_batch_reduction_takes_one_ratio(rng):
    y, p = _pair(rng, (3, 8, 8, 1))
    assert float(losses.DiceLoss(per_sample=False)(y, p)) == pytest.approx(seed_dice(y, p), rel=1e-5)


def test_rank3_masks_are_one_channel(rng):
    y, p = _pair(rng, (2, 8, 8, 1))
    assert float(losses.JaccardLoss()(y[..., 0], p)) == pytest.approx(float(losses.JaccardLoss()(y, p)))


def test_sample_weight_weights_samples(rng):
    y, p = _pair(rng, (2, 8, 8, 1))
    per = [seed_dice(y[b], p[b]) for b in range(2)]
    weighted = float(losses.DiceLoss()(y, p, sample_weight=np.array([1.0, 0.0])))
    assert weighted == pytest.approx(per[0] / 2, rel=1e-5)


@pytest.mark.parametrize("loss", [losses.JaccardLoss(), losses.JaccardJ2Loss(), losses.DiceLoss()])
def test_empty_masks_are_finite_and_documented(loss):
    empty = np.zeros((1, 8, 8, 1), "float32")
    some = np.full((1, 8, 8, 1), 0.3, "float32")
    both_empty = float(loss(empty, empty))
    false_positive = float(loss(empty, some))
    assert np.isfinite(both_empty) and np.isfinite(false_positive)
    if isinstance(loss, losses.JaccardJ2Loss):
        assert both_empty == pytest.approx(1.0) and false_positive == pytest.approx(1.0)
    else:
        assert both_empty == pytest.approx(0.0) and false_positive == pytest.approx(1.0)


def test_j2_has_no_gradient_on_empty_target_but_compound_has():
    empty = np.zeros((1, 4, 4, 1), "float32")
    logits = np.full((1, 4, 4, 1), 0.5, "float32")
    j2_grad = _prediction_gradient(losses.JaccardJ2Loss(), empty, logits)
    assert np.all(np.isfinite(j2_grad)) and np.allclose(j2_grad, 0.0)
    compound = losses.CompoundLoss([losses.JaccardJ2Loss(), keras.losses.BinaryCrossentropy()])
    assert np.all(_prediction_gradient(compound, empty, logits) > 0)


def test_batch_reduction_punishes_false_positives_on_empty_sample():
    y = np.zeros((2, 4, 4, 1), "float32")
    y[0, :2] = 1.0  # sample 0 has an object, sample 1 is empty
    p = np.full((2, 4, 4, 1), 0.5, "float32")
    grad = _prediction_gradient(losses.JaccardJ2Loss(per_sample=False), y, p)
    assert np.all(grad[1] > 0), "false positives on the empty sample must raise the loss"


def _prediction_gradient(loss, y, p):
    return input_gradient(lambda v: loss(y, v), p)


def test_mismatched_shapes_are_named():
    with pytest.raises(ValueError, match=r"target shape \(2, 8, 8, 1\) does not match.*sparse_labels=True"):
        losses.DiceLoss(sparse_labels=False)(np.zeros((2, 8, 8, 1)), np.zeros((2, 8, 8, 3), "float32"))
    with pytest.raises(ValueError, match="does not match"):
        losses.JaccardLoss()(np.zeros((2, 8, 9, 1)), np.zeros((2, 8, 8, 1), "float32"))


def test_pixel_weighted_crossentropy(rng):
    # The U-Net loss is Keras' cross-entropy with a (B, H, W) sample_weight.
    y = (rng.random((2, 5, 6, 1)) > 0.5).astype("float32")
    p = rng.uniform(0.05, 0.95, (2, 5, 6, 1)).astype("float32")
    w = rng.uniform(0.5, 10, (2, 5, 6)).astype("float32")
    ce = -(y * np.log(p) + (1 - y) * np.log(1 - p))[..., 0]
    expected = np.sum(w * ce) / w.size
    actual = float(keras.losses.BinaryCrossentropy()(y, p, sample_weight=w))
    assert actual == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize(
    "loss",
    [
        losses.JaccardLoss(per_sample=False),
        losses.JaccardJ2Loss(epsilon=1e-3),
        losses.DiceLoss(),
        losses.CompoundLoss([losses.DiceLoss(), keras.losses.BinaryCrossentropy()], [1.0, 2.0]),
    ],
)
def test_serialization_round_trip(rng, loss):
    y, p = _pair(rng, (2, 6, 6, 1))
    clone = keras.losses.deserialize(keras.losses.serialize(loss))
    assert float(clone(y, p)) == pytest.approx(float(loss(y, p)))


def test_compound_is_weighted_sum(rng):
    y, p = _pair(rng, (2, 6, 6, 1))
    bce = keras.losses.BinaryCrossentropy()
    compound = losses.CompoundLoss([losses.JaccardJ2Loss(), bce], [1.0, 0.5])
    expected = float(losses.JaccardJ2Loss()(y, p)) + 0.5 * float(bce(y, p))
    assert float(compound(y, p)) == pytest.approx(expected, rel=1e-5)


def test_trains_with_model_fit(rng):
    inputs = keras.Input((8, 8, 1))
    outputs = keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid")(inputs)
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.Adam(0.05), losses.JaccardJ2Loss())
    x = rng.normal(size=(8, 8, 8, 1)).astype("float32")
    y = (x > 0).astype("float32")
    history = model.fit(x, y, epochs=10, batch_size=4, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert np.isfinite(to_numpy(model.predict(x, verbose=0))).all()


def test_void_pixels_are_ignored_by_sparse_crossentropy(rng):
    # The CamVid recipe: labels as the crop pipeline yields them (float, (B, H, W, 1)), void = 3.
    labels = rng.integers(0, 4, (2, 6, 6, 1)).astype("float32")
    probs = rng.dirichlet(np.ones(3), (2, 6, 6)).astype("float32")
    loss = keras.losses.SparseCategoricalCrossentropy(ignore_class=3)
    keep = labels[..., 0] != 3
    picked = np.take_along_axis(probs, np.minimum(labels, 2).astype(int), axis=-1)[..., 0]
    expected = -np.log(picked)[keep].mean()  # the mean over the non-void pixels only
    assert float(loss(labels, probs)) == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize("ignore_class", [None, 3])
def test_sparse_cross_entropy_is_the_weighted_mean_over_the_pixels_it_keeps(rng, ignore_class):
    labels = rng.integers(0, 3 if ignore_class is None else 4, (2, 6, 5, 1)).astype("float32")
    probs = rng.dirichlet(np.ones(3), (2, 6, 5)).astype("float32")
    weights = rng.uniform(0.5, 2, (2, 6, 5)).astype("float32")
    keep = labels[..., 0] != (-1 if ignore_class is None else ignore_class)
    picked = np.take_along_axis(probs, np.minimum(labels, 2).astype(int), axis=-1)[..., 0]
    expected = (-np.log(picked) * weights)[keep].sum() / keep.sum()
    loss = losses.SparseCrossEntropy(ignore_class=ignore_class)
    assert float(loss(labels, probs, sample_weight=weights)) == pytest.approx(expected, rel=1e-5)
    clone = keras.losses.deserialize(keras.losses.serialize(loss))
    assert float(clone(labels, probs, sample_weight=weights)) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("name", ["ce", "ce+j2"])
def test_kfcn_train_s_multi_class_losses_train_a_segmentation_map_on_every_backend(rng, name):
    # Keras 3.15's sparse cross-entropy on 4-D maps fails in PyTorch's backward ("grad_input must be contiguous").
    from kfcn.training import segmentation_loss

    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(3, 3, padding="same", activation="softmax")(inputs))
    model.compile(keras.optimizers.Adam(0.05), segmentation_loss(name, num_classes=3, ignore_class=3))
    x = rng.normal(size=(4, 8, 8, 3)).astype("float32")
    y = np.where(rng.random((4, 8, 8, 1)) < 0.1, 3, np.argmax(x, axis=-1)[..., None]).astype("float32")
    history = model.fit(x, y, epochs=5, batch_size=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all() and history.history["loss"][-1] < history.history["loss"][0]
