"""kfcn.evaluation against hand-worked cases and formulas written out here (NumPy only, any backend)."""

import math

import numpy as np
import pytest

from kfcn.evaluation import (
    best_rand_error,
    confusion_matrix,
    confusion_scores,
    counting_scores,
    data_range,
    errors_near_edges,
    isbi2012_original_scores,
    mean_scores,
    pixel_errors_by_edge_distance,
    rand_and_vi,
    restoration_scores,
    segmentation_scores,
    segments,
)


def as_probability(mask, high=0.9, low=0.1):
    return np.where(np.asarray(mask, bool), high, low)[..., None]


def test_binary_scores_by_hand():
    # truth: 6 foreground pixels; prediction: 4 of them plus 2 false ones -> TP 4, FP 2, FN 2, TN 8.
    label = np.zeros((4, 4), int)
    label[0, :] = label[1, :2] = 1
    predicted = np.zeros((4, 4), bool)
    predicted[0, :] = predicted[3, :2] = True
    scores = segmentation_scores(as_probability(predicted), label)
    assert scores["pixel_error"] == pytest.approx(4 / 16)
    assert scores["dice"] == pytest.approx(2 * 4 / (2 * 4 + 2 + 2))
    assert scores["jaccard"] == pytest.approx(4 / (4 + 2 + 2))
    background_iou = 8 / (8 + 2 + 2)
    assert scores["mean_iou"] == pytest.approx((4 / 8 + background_iou) / 2)
    assert scores["class_accuracy"] == pytest.approx((8 / 10 + 4 / 6) / 2)


def test_two_channel_softmax_equals_one_sigmoid_channel(rng):
    label = (rng.random((12, 12)) > 0.5).astype(int)
    foreground = rng.random((12, 12))
    one = segmentation_scores(foreground[..., None], label)
    two = segmentation_scores(np.stack([1 - foreground, foreground], -1), label)
    assert one == pytest.approx(two, nan_ok=True)


def test_threshold_moves_the_foreground():
    label = np.array([[1, 1, 0, 0]])
    probability = np.array([[0.9, 0.4, 0.3, 0.1]])[..., None]
    assert segmentation_scores(probability, label)["pixel_error"] == 0.25
    assert segmentation_scores(probability, label, threshold=0.35)["pixel_error"] == 0.0


def test_index_scores_by_hand_and_the_ignore_class_counts_nowhere(rng):
    label = np.array([[0, 0, 1, 1, 2, 2, 7, 7]])
    predicted = np.array([0, 1, 1, 1, 2, 0, 2, 0])
    probability = np.eye(3)[predicted][None]
    scores = segmentation_scores(probability, label, "index", num_classes=3, ignore_class=7)
    # kept pixels: truth 0 0 1 1 2 2 / predicted 0 1 1 1 2 0
    iou = [1 / 3, 2 / 3, 1 / 2]  # class 0: TP 1, FP 1, FN 1; class 1: TP 2, FP 1; class 2: TP 1, FN 1
    assert scores["jaccard_per_class"] == pytest.approx(iou)
    assert scores["dice_per_class"] == pytest.approx([2 * i / (1 + i) for i in iou])
    assert scores["mean_iou"] == pytest.approx(np.mean(iou))
    assert scores["class_accuracy"] == pytest.approx(np.mean([1 / 2, 1, 1 / 2]))
    assert scores["pixel_error"] == pytest.approx(2 / 6)
    # Whatever is predicted where the label says 7 changes nothing.
    other = probability.copy()
    other[0, 6:] = np.eye(3)[[1, 1]]
    again = segmentation_scores(other, label, "index", 3, ignore_class=7)
    assert again.keys() == scores.keys()
    for key in scores:
        np.testing.assert_allclose(again[key], scores[key], err_msg=key)


def test_whole_set_scores_pool_the_pixels_of_every_image():
    """Summed confusion matrices give CamVid's scores over the set, not the mean of per-image scores."""
    first = np.array([[90, 10, 0], [0, 0, 0], [0, 0, 0]])  # an image of class 0
    second = np.array([[0, 0, 0], [0, 1, 1], [0, 0, 2]])  # a few pixels of classes 1 and 2
    scores = confusion_scores(first + second)
    iou = [90 / 100, 1 / 12, 2 / 3]  # class 1: TP 1, FP 10, FN 1; class 2: TP 2, FP 1
    assert scores["iou_per_class"] == pytest.approx(iou)
    assert scores["mean_iou"] == pytest.approx(np.mean(iou))
    assert scores["global_accuracy"] == pytest.approx(93 / 104)
    assert scores["class_accuracy"] == pytest.approx(np.mean([0.9, 0.5, 1.0]))
    assert scores["pixels_per_class"] == [100, 2, 2]
    per_image = np.nanmean([confusion_scores(first)["mean_iou"], confusion_scores(second)["mean_iou"]])
    # The mean over images differs: image 1 scores class 1 IoU 0 (10 false pixels), image 2 has no class 0.
    assert per_image == pytest.approx(((0.9 + 0) / 2 + (1 / 2 + 2 / 3) / 2) / 2)
    ignored = confusion_scores(first + second, ignore_class=1)
    assert np.isnan(ignored["iou_per_class"][1]) and ignored["mean_iou"] == pytest.approx(np.mean([0.9, 2 / 3]))
    with pytest.raises(ValueError, match="square"):
        confusion_scores(np.zeros((2, 3)))


def _brute_force_isbi2012(probabilities, labels, threshold):
    """1 - F of interior pixels and of foreground-restricted Rand pairs, counted pair by pair."""
    from scipy import ndimage

    hits = predicted = true = pair_hits = pair_predicted = pair_true = 0
    for probability, label in zip(probabilities, labels):
        interior = probability > threshold
        hits, predicted, true = hits + np.sum(interior & (label == 1)), predicted + interior.sum(), true + label.sum()
        cells, _ = ndimage.label(label)  # 4-connected
        parts, _ = ndimage.label(interior)
        pixels = list(zip(*np.nonzero(cells)))  # the truth's cells only
        for a in range(len(pixels)):
            for b in range(a + 1, len(pixels)):
                same_true = cells[pixels[a]] == cells[pixels[b]]
                same_predicted = parts[pixels[a]] != 0 and parts[pixels[a]] == parts[pixels[b]]
                pair_hits += same_true and same_predicted
                pair_predicted += same_predicted
                pair_true += same_true
    return 1 - 2 * hits / (predicted + true), 1 - 2 * pair_hits / (pair_predicted + pair_true)


def test_isbi2012_original_scores_equal_a_pair_by_pair_count(rng):
    """The challenge's original pixel and Rand errors (1 - the best F-score, counts summed over the
    stack), against counting every pair of pixels of two small random slices."""
    labels = [(rng.random((9, 11)) > 0.3).astype(int) for _ in range(2)]
    labels[0][4, :] = 0  # a membrane across: two cells at least
    probabilities = [np.clip(label * 0.6 + rng.random(label.shape) * 0.5, 0, 1) for label in labels]
    thresholds = (0.3, 0.5, 0.7)
    scores = isbi2012_original_scores(probabilities, labels, thresholds)
    by_threshold = {t: _brute_force_isbi2012(probabilities, labels, t) for t in thresholds}
    assert scores["pixel_error"] == pytest.approx(min(pixel for pixel, _ in by_threshold.values()))
    assert scores["rand_error"] == pytest.approx(min(rand for _, rand in by_threshold.values()))
    assert by_threshold[scores["rand_threshold"]][1] == pytest.approx(scores["rand_error"])
    perfect = isbi2012_original_scores([label.astype(float) for label in labels], labels, thresholds)
    assert perfect["pixel_error"] == 0 and perfect["rand_error"] == 0
    with pytest.raises(ValueError, match="one label per probability map"):
        isbi2012_original_scores(probabilities, labels[:1])


def test_confusion_matrix_is_a_bincount():
    truth = np.array([0, 0, 1, 2, 2, 2])
    predicted = np.array([0, 1, 1, 2, 0, 2])
    expected = np.zeros((3, 3), int)
    for t, p in zip(truth, predicted):
        expected[t, p] += 1
    np.testing.assert_array_equal(confusion_matrix(predicted, truth, 3), expected)


def test_rand_error_of_a_merge_and_a_split_by_hand():
    # skimage counts ordered pairs: sum n² - n.
    two_cells = np.array([[1, 1, 0, 2, 2]])
    merged = rand_and_vi(np.array([[1, 1, 1, 1, 1]]), two_cells)  # precision 4/12, recall 1: F = 1/2
    assert merged["adapted_rand_error"] == pytest.approx(0.5)
    assert merged["vi_split"] == pytest.approx(0.0) and merged["vi_merge"] == pytest.approx(1.0)  # 1 bit
    one_cell = np.array([[1, 1, 1, 1]])
    split = rand_and_vi(np.array([[1, 1, 2, 2]]), one_cell)  # precision 1, recall 4/12: F = 1/2
    assert split["adapted_rand_error"] == pytest.approx(0.5)
    assert split["vi_split"] == pytest.approx(1.0) and split["vi_merge"] == pytest.approx(0.0)
    assert rand_and_vi(np.array([[5, 5, 0, 9, 9]]), two_cells)["adapted_rand_error"] == 0.0  # ids are arbitrary


@pytest.mark.parametrize("border", ["singletons", "thin"])
def test_rand_error_punishes_a_membrane_gap_that_pixel_error_forgives(border):
    # Two cells of 16x8 px left and right of a membrane in column 8; merging them costs about 1/3.
    label = np.ones((16, 17), int)
    label[:, 8] = 0
    gap = label.copy()
    gap[7, 8] = 1  # one pixel of the membrane missed: the cells merge
    thick = label.copy()
    thick[:, 7:10] = 0  # a membrane 3 px thick: pixel errors, but the same two cells
    gap_scores = segmentation_scores(as_probability(gap), label, border=border)
    thick_scores = segmentation_scores(as_probability(thick), label, border=border)
    assert gap_scores["pixel_error"] < thick_scores["pixel_error"]
    assert gap_scores["adapted_rand_error"] > 0.3 and gap_scores["vi_merge"] > 0.5
    assert thick_scores["vi_merge"] == pytest.approx(0.0)
    # Singletons: 16 of each cell's 128 pixels split off, pairs kept (112² - 112) / (128² - 128).
    recall = (112**2 - 112) / (128**2 - 128)
    expected = 1 - 2 * recall / (1 + recall) if border == "singletons" else 0.0
    assert thick_scores["adapted_rand_error"] == pytest.approx(expected)


def test_segments_are_four_connected_and_borders_become_singletons_or_the_nearest_cell():
    diagonal = np.array([[1, 0], [0, 1]])
    assert segments(diagonal).max() == 2
    mask = np.array([[1, 0, 0, 0, 0, 0, 1]])
    assert segments(mask, "singletons").tolist() == [[1, 3, 4, 5, 6, 7, 2]]
    assert segments(mask, "thin").tolist() in ([[1, 1, 1, 1, 2, 2, 2]], [[1, 1, 1, 2, 2, 2, 2]])
    assert segments(np.zeros((2, 2)), "thin").tolist() == [[0, 0], [0, 0]]  # no cell to grow


def test_best_rand_error_finds_the_threshold_that_closes_the_membrane():
    label = np.ones((8, 9), int)
    label[:, 4] = 0
    probability = np.full((8, 9), 0.9)
    probability[:, 4] = 0.2
    probability[3, 4] = 0.6  # an unsure membrane pixel: at 0.5 the cells merge, at 0.7 they do not
    at_half = segmentation_scores(probability[..., None], label)
    best = best_rand_error(probability, label, thresholds=(0.5, 0.7))
    assert at_half["adapted_rand_error"] > 0.3
    assert best == {"adapted_rand_error": 0.0, "threshold": 0.7}
    assert at_half["rand_error_best"] == 0.0  # the default grid holds 0.7 too


def test_errors_by_edge_distance_equal_a_pixel_by_pixel_search(rng):
    label = (rng.random((9, 11)) > 0.6).astype(int)
    probability = rng.random((9, 11))
    predicted = (probability > 0.5).astype(int)
    scores = pixel_errors_by_edge_distance(probability, label, tolerances=(1, 1.5, 2))
    wrong = predicted != label
    rows, columns = np.indices(label.shape)

    def distance_to_other_class(mask, row, column):  # by brute force, over every pixel
        other = mask != mask[row, column]
        return np.sqrt((rows[other] - row) ** 2 + (columns[other] - column) ** 2).min() if other.any() else np.inf

    in_label = np.array([[distance_to_other_class(label, r, c) for c in range(11)] for r in range(9)])
    in_prediction = np.array([[distance_to_other_class(predicted, r, c) for c in range(11)] for r in range(9)])
    for tolerance in (1, 1.5, 2):
        # a wrong pixel is forgiven when its predicted class is that close in the label and its true class that
        # close in the prediction
        far = wrong & ((in_label > tolerance) | (in_prediction > tolerance))
        assert np.array_equal(errors_near_edges(predicted, label, tolerance), wrong & ~far)
        assert scores[f"pixel_error_beyond_{tolerance:g}px"] == pytest.approx(far.mean())
        assert scores[f"false_foreground_beyond_{tolerance:g}px"] == pytest.approx(np.mean(far & (predicted == 1)))
        assert scores[f"edge_band_{tolerance:g}px"] == pytest.approx(np.mean(in_label <= tolerance))
    assert scores["pixel_error"] == pytest.approx(wrong.mean())
    assert scores["false_foreground"] + scores["false_background"] == pytest.approx(wrong.mean())
    assert scores["false_foreground"] == pytest.approx(np.mean((probability > 0.5) & (label == 0)))
    softmax = np.stack([1 - probability, probability], axis=-1)  # a two-class softmax: channel 1 is the foreground
    assert pixel_errors_by_edge_distance(softmax, label, tolerances=(1, 1.5, 2)) == pytest.approx(scores)


def test_a_membrane_drawn_thicker_is_near_its_edges_and_a_gap_or_an_invented_one_is_not():
    label = np.ones((9, 15), int)
    label[:, 7] = 0  # a vertical membrane, 1 px wide
    thicker = label.copy()
    thicker[:, 6:9] = 0
    assert errors_near_edges(thicker, label, 1).sum() == 18 == (thicker != label).sum()
    gap = label.copy()
    gap[2:7, 7] = 1  # a 5-px gap: only its two ends have a predicted membrane within 1 px
    assert errors_near_edges(gap, label, 1).astype(int)[:, 7].tolist() == [0, 0, 1, 0, 0, 0, 1, 0, 0]
    invented = label.copy()
    invented[4, 1:4] = 0  # inside the left cell, 3 px and more from the true membrane
    assert not errors_near_edges(invented, label, 2).any()


def test_a_label_of_one_class_has_no_edge_so_every_error_is_far_from_one():
    scores = pixel_errors_by_edge_distance(np.full((4, 4), 0.9), np.zeros((4, 4), int), tolerances=(3,))
    assert scores["pixel_error_beyond_3px"] == scores["pixel_error"] == scores["false_foreground"] == 1.0
    assert scores["edge_band_3px"] == 0.0


def test_rand_error_without_any_true_segment_is_nan():
    assert math.isnan(rand_and_vi(np.ones((3, 3), int), np.zeros((3, 3), int))["adapted_rand_error"])


def test_counting_scores():
    density = np.zeros((10, 10, 1))
    density[2, 3], density[5, 5] = 1.5, 2.0
    assert counting_scores(density, 4) == pytest.approx(
        {"predicted_count": 3.5, "true_count": 4, "absolute_error": 0.5, "relative_error": 0.125}
    )
    assert math.isnan(counting_scores(density, 0)["relative_error"])
    with pytest.raises(ValueError, match="one channel"):
        counting_scores(np.zeros((4, 4, 2)), 1)


def test_restoration_psnr_by_formula_and_ssim_of_identity(rng):
    target = rng.integers(0, 256, (16, 16, 1)).astype(np.uint8)
    noise = rng.normal(0, 6, target.shape)
    prediction = target + noise
    mse = np.mean(noise**2)
    scores = restoration_scores(prediction, target)
    assert scores["psnr"] == pytest.approx(10 * np.log10(255**2 / mse))
    assert 0 < scores["ssim"] < 1
    assert restoration_scores(target.astype("float32"), target)["ssim"] == pytest.approx(1.0)
    assert data_range(np.zeros(1, np.uint16)) == 65535
    sixteen_bit = (target.astype(np.uint16) * 257)[..., 0]
    assert restoration_scores(sixteen_bit + noise[..., 0] * 257, sixteen_bit)["psnr"] == pytest.approx(scores["psnr"])


def test_mean_scores_leave_nan_out():
    rows = [{"a": 1.0, "b": [1.0, math.nan]}, {"a": 3.0, "b": [2.0, 4.0]}, {"a": math.nan, "b": [3.0, 5.0]}]
    assert mean_scores(rows) == {"a": 2.0, "b": [2.0, 4.5]}


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: segmentation_scores(np.full((4, 4, 1), 3.0), np.zeros((4, 4), int)), "logits"),
        (lambda: segmentation_scores(np.full((4, 4, 1), np.nan), np.zeros((4, 4), int)), "NaN"),
        (lambda: segmentation_scores(np.full((4, 4, 1), 0.5), np.full((4, 4), 255)), "labels // 255"),
        (lambda: segmentation_scores(np.full((4, 4, 3), 0.3), np.zeros((4, 4), int)), "3 output channel"),
        (lambda: segmentation_scores(np.full((4, 4, 2), 0.5), np.zeros((4, 4), int), "index", 3), "3 classes"),
        (lambda: segmentation_scores(np.full((4, 4, 3), 0.3), np.full((4, 4), 3), "index", 3), r"\[3\] outside"),
        (lambda: segmentation_scores(np.full((4, 4, 1), 0.5), np.zeros((5, 4), int)), "differ"),
        (lambda: pixel_errors_by_edge_distance(np.full((4, 4, 3), 0.3), np.zeros((4, 4), int)), "two-class"),
        (lambda: pixel_errors_by_edge_distance(np.full((4, 4), 0.5), np.full((4, 4), 255)), "labels // 255"),
        (lambda: pixel_errors_by_edge_distance(np.full((4, 5), 0.5), np.zeros((4, 4), int)), "differ"),
        (lambda: pixel_errors_by_edge_distance(np.zeros((0, 0)), np.zeros((0, 0), int)), "empty"),
        (
            lambda: pixel_errors_by_edge_distance(np.full((4, 4), 0.5), np.ones((4, 4), int), tolerances=(-1,)),
            "0 or more",
        ),
        (lambda: errors_near_edges(np.full((4, 4), 0.3), np.zeros((4, 4), int), 1), "probability > 0.5"),
        (lambda: errors_near_edges(np.zeros((4, 4), int), np.zeros((4, 4), int), "2"), "0 or more"),
        (lambda: restoration_scores(np.zeros((8, 8, 1)), np.zeros((8, 8, 3), np.uint8)), "channels"),
        (lambda: restoration_scores(np.full((8, 8, 1), 0.5), np.full((8, 8, 1), 200, np.uint8)), r"\[0, 1\] values"),
        (lambda: restoration_scores(np.zeros((4, 4, 1)), np.zeros((4, 4, 1), np.uint8)), "7x7"),
    ],
)
def test_bad_inputs_raise_naming_the_problem(call, message):
    with pytest.raises(ValueError, match=message):
        call()
