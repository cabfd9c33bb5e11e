"""Instances from probabilities, and the instance F1, against hand-made maps and a brute-force IoU."""

import itertools
import math

import numpy as np
import pytest

import kfcn
from kfcn.instances import instance_f1, instances_from_foreground, instances_from_probabilities


def _brute_force_matches(predicted, true, iou):
    """Matches counted from every pair's IoU, one object pair at a time."""
    matches = 0
    for p, t in itertools.product(np.unique(predicted[predicted > 0]), np.unique(true[true > 0])):
        intersection = np.count_nonzero((predicted == p) & (true == t))
        union = np.count_nonzero((predicted == p) | (true == t))
        matches += intersection / union > iou
    return matches


def _two_touching_discs():
    """True instances of two overlapping discs, and one-hot-ish 3-class probabilities drawn by hand."""
    rows, cols = np.mgrid[0:40, 0:48]
    first, second = np.hypot(rows - 20, cols - 15), np.hypot(rows - 20, cols - 31)
    true = np.zeros((40, 48), dtype="int32")
    true[first <= 10] = 1
    true[second <= 10] = 2  # centres 16 apart, radii 10: they overlap, the later disc wins
    classes = np.where(true > 0, 2, 0)  # boundary everywhere on the objects...
    classes[(first <= 7) | (second <= 7)] = 1  # ...but two interiors of radius 7, which do not touch
    probabilities = np.full((40, 48, 3), 0.1)
    probabilities[rows, cols, classes] = 0.8
    return true, probabilities


def test_one_match_and_one_split_object():
    true = np.array([[1, 1, 1, 1, 0, 2, 2, 2, 2]])
    predicted = np.array([[3, 3, 3, 3, 0, 4, 4, 9, 9]])  # object 1 found exactly, object 2 cut in half
    scores = instance_f1(predicted, true)
    assert (scores["true_positives"], scores["false_positives"], scores["false_negatives"]) == (1, 2, 1)
    assert scores["precision"] == pytest.approx(1 / 3) and scores["recall"] == 0.5
    assert scores["f1"] == pytest.approx(2 * (1 / 3) * 0.5 / (1 / 3 + 0.5))
    assert scores["mean_matched_iou"] == 1.0


def test_a_merge_of_two_equal_objects_matches_neither():
    true = np.array([[1, 1, 2, 2]])
    scores = instance_f1(np.array([[1, 1, 1, 1]]), true)  # IoU 0.5 with each: not above 0.5
    assert (scores["true_positives"], scores["false_positives"], scores["false_negatives"]) == (0, 1, 2)
    assert scores["f1"] == 0.0 and math.isnan(scores["mean_matched_iou"])


def test_ids_need_not_match_nor_be_consecutive():
    true = np.array([[1, 1, 0, 2, 2, 0, 3]])
    predicted = np.array([[70, 70, 0, 5, 5, 0, 40]])
    scores = instance_f1(predicted[..., None], true)  # (H, W, 1) is accepted
    assert scores["f1"] == 1.0 and scores["true_objects"] == 3 == scores["predicted_objects"]


def test_empty_maps_give_nan_ratios():
    empty = np.zeros((3, 3), int)
    assert math.isnan(instance_f1(empty, empty)["f1"])
    scores = instance_f1(empty, np.eye(3, dtype=int))
    assert math.isnan(scores["precision"]) and scores["recall"] == 0.0 and scores["f1"] == 0.0


@pytest.mark.parametrize("iou", [0.5, 0.7])
def test_matches_agree_with_a_brute_force_iou(iou):
    rng = np.random.default_rng(0)
    for _ in range(5):
        true = rng.integers(0, 4, (12, 12))
        predicted = true.copy()
        predicted[rng.uniform(size=true.shape) < 0.3] = rng.integers(0, 6)
        scores = instance_f1(predicted, true, iou=iou)
        assert scores["true_positives"] == _brute_force_matches(predicted, true, iou)


def test_watershed_separates_two_touching_discs_that_connected_components_merge():
    true, probabilities = _two_touching_discs()
    instances = instances_from_probabilities(probabilities)
    assert instances.dtype == np.int32 and instances.max() == 2
    np.testing.assert_array_equal(instances > 0, true > 0)  # the boundary band is grown over
    scores = instance_f1(instances, true)
    assert scores["f1"] == 1.0 and scores["mean_matched_iou"] > 0.9

    foreground = np.stack([probabilities[..., 0], probabilities[..., 1:].sum(-1)], axis=-1)
    merged = instances_from_foreground(foreground)
    assert merged.max() == 1 and instance_f1(merged, true)["true_positives"] <= 1  # one object for two


def test_small_seeds_are_ignored_and_unseeded_foreground_becomes_an_object():
    _, probabilities = _two_touching_discs()
    probabilities[15, 23] = [0.1, 0.8, 0.1]  # a one-pixel interior in the band where the discs overlap
    assert instances_from_probabilities(probabilities, min_seed_size=4).max() == 2
    assert instances_from_probabilities(probabilities, min_seed_size=1, min_size=1).max() == 3
    probabilities[2:6, 40:45] = [0.1, 0.1, 0.8]  # a patch of boundary with no interior
    instances = instances_from_probabilities(probabilities)
    assert instances.max() == 3 and np.all(instances[2:6, 40:45] == 3)
    assert instances_from_probabilities(probabilities, min_size=21).max() == 2  # the 20-pixel patch dropped


def test_foreground_components_from_one_sigmoid_channel():
    probability = np.array([[0.9, 0.9, 0.2, 0.6, 0.2, 0.7]])
    np.testing.assert_array_equal(instances_from_foreground(probability, min_size=1), [[1, 1, 0, 2, 0, 3]])
    np.testing.assert_array_equal(instances_from_foreground(probability, min_size=2), [[1, 1, 0, 0, 0, 0]])
    np.testing.assert_array_equal(instances_from_foreground(probability, 0.65, min_size=1), [[1, 1, 0, 0, 0, 2]])


def test_the_module_loads_lazily_from_kfcn():
    assert kfcn.instances.instance_f1 is instance_f1


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match=r"\[0.5, 1\)"):
        instance_f1(np.ones((2, 2), int), np.ones((2, 2), int), iou=0.3)
    with pytest.raises(ValueError, match="same shape"):
        instance_f1(np.ones((2, 2), int), np.ones((2, 3), int))
    with pytest.raises(ValueError, match="integer ids"):
        instance_f1(np.ones((2, 2)), np.ones((2, 2), int))
    with pytest.raises(ValueError, match=">= 0"):
        instance_f1(-np.ones((2, 2), int), np.ones((2, 2), int))
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        instances_from_probabilities(np.ones((4, 4, 2)))
    with pytest.raises(ValueError, match=r"\(H, W, 1\) or \(H, W, 2\)"):
        instances_from_foreground(np.ones((4, 4, 3)))
    with pytest.raises(ValueError, match="NaN"):
        instances_from_probabilities(np.full((4, 4, 3), np.nan))
    with pytest.raises(ValueError, match="min_size"):
        instances_from_probabilities(np.ones((4, 4, 3)), min_size=0)
    with pytest.raises(ValueError, match="threshold"):
        instances_from_foreground(np.ones((4, 4, 1)), threshold=1.5)
