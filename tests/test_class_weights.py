"""Class weights: SegNet's median-frequency rule by hand, the per-pixel map, and the weighted loss of one batch."""

import numpy as np
import pytest

from kfcn.training import class_weight_map, median_frequency_weights, segmentation_loss


def test_median_frequency_weights_by_hand_with_an_ignore_class_and_an_absent_class():
    # Three 2 x 3 images (6 px each), classes 0..3, 9 ignored; class 3 appears nowhere.
    labels = [
        np.array([[0, 0, 0], [0, 1, 9]]),  # class 0: 4 px, class 1: 1 px
        np.array([[1, 1, 2], [2, 2, 2]]),  # class 1: 2 px, class 2: 4 px
        np.array([[0, 0, 9], [9, 9, 9]]),  # class 0: 2 px
    ]
    # f_c = pixels of c / pixels of the images holding c (void pixels count in the image sizes):
    f0, f1, f2 = 6 / 12, 3 / 12, 4 / 6  # 0.5, 0.25, 0.667; median 0.5
    expected = [0.5 / f0, 0.5 / f1, 0.5 / f2, 0.0]  # 1, 2, 0.75, absent 0
    weights = median_frequency_weights(labels, num_classes=4, ignore_class=9)
    assert weights.dtype == np.float32 and weights.shape == (4,)
    np.testing.assert_allclose(weights, expected, rtol=1e-6)
    # The same labels read as a generator, once.
    np.testing.assert_allclose(median_frequency_weights(iter(labels), 4, 9), expected, rtol=1e-6)


def test_an_ignore_class_among_the_classes_gets_weight_0_and_stays_out_of_the_median():
    labels = [np.array([[0, 0, 1, 2]]), np.array([[2, 2, 2, 2]])]  # 0 is void here
    f1, f2 = 1 / 4, 5 / 8
    median = (f1 + f2) / 2
    np.testing.assert_allclose(
        median_frequency_weights(labels, 3, ignore_class=0), [0.0, median / f1, median / f2], rtol=1e-6
    )


def test_median_frequency_weights_refuse_labels_that_are_not_classes():
    with pytest.raises(ValueError, match=r"label values \[5\].*num_classes"):
        median_frequency_weights([np.array([[0, 5]])], 3)
    with pytest.raises(ValueError, match="no pixel of any class"):
        median_frequency_weights([np.full((2, 2), 3)], 3, ignore_class=3)


def test_the_weight_map_gives_each_pixel_its_class_weight_and_0_to_the_ignore_class():
    to_weights = class_weight_map([0.5, 2.0, 1.0], ignore_class=3)
    np.testing.assert_array_equal(to_weights(np.array([[0, 1], [2, 3]])), [[0.5, 2.0], [1.0, 0.0]])
    assert to_weights(np.array([[1, 0]], np.int32)).dtype == np.float32
    np.testing.assert_array_equal(class_weight_map([1.0, 2.0], ignore_class=0)(np.array([0, 1])), [0.0, 2.0])
    for wrong in ([], [1.0, -1.0], [np.nan, 1.0]):
        with pytest.raises(ValueError, match="one finite, non-negative weight per class"):
            class_weight_map(wrong)


@pytest.mark.tensorflow_only(reason="tf.data pipelines")
def test_the_crop_pipeline_carries_the_class_weights_into_a_weighted_cross_entropy():
    import tensorflow as tf

    from kfcn.data import random_crop_pipeline

    weights, void = [0.5, 2.0, 1.0], 3
    label = np.array([[0, 1, 2, 3], [1, 1, 0, 3], [2, 0, 1, 1], [3, 2, 2, 0]], np.int32)[..., None]
    pairs = tf.data.Dataset.from_tensors((tf.zeros((4, 4, 1)), tf.constant(label)))
    # A crop the size of the image, no augmentation: the batch is the image itself.
    batches = random_crop_pipeline(
        pairs, 4, batch_size=1, weight_map=class_weight_map(weights, ignore_class=void), seed=0
    )
    _, y, sample_weight = next(iter(batches))
    expected_map = np.take(weights + [0.0], label[..., 0])
    np.testing.assert_array_equal(sample_weight[0], expected_map)
    np.testing.assert_array_equal(y[0], label)

    probabilities = np.random.default_rng(0).dirichlet(np.ones(3), size=(1, 4, 4)).astype("float32")
    loss = segmentation_loss("ce", num_classes=3, ignore_class=void)
    got = float(loss(y, probabilities, sample_weight=sample_weight))
    # Keras' reduction: the weighted sum over the non-void pixels, divided by their number.
    kept = label[..., 0] != void
    picked = np.take_along_axis(probabilities[0], np.where(kept, label[..., 0], 0)[..., None], -1)[..., 0]
    by_hand = (expected_map * -np.log(picked))[kept].sum() / kept.sum()
    assert got == pytest.approx(by_hand, rel=1e-5)
