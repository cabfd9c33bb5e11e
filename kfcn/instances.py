"""Instances from a network's probabilities, and the instance F1 score that grades them.

Touching objects merge in a foreground / background segmentation: the connected components
of the foreground (`instances_from_foreground`, the baseline) join every group of touching
objects into one. The 3-class recipe (background, interior, boundary; see
`kfcn.data.three_class_labels`) keeps them apart: the interiors of touching objects do not
touch, so their connected components are one seed per object, and a watershed grows each
seed over the predicted foreground into the boundary band (`instances_from_probabilities`).

`instance_f1` matches predicted to true objects by their intersection over union (IoU):
a pair with IoU > t >= 0.5 is a match, and since two objects that each cover more than half
of their union with a third would overlap, a match is one-to-one (Everingham et al. 2010,
the PASCAL VOC rule; also the cell-segmentation F1 of Caicedo et al. 2019). Unmatched
predictions are false positives, unmatched true objects false negatives, and
F1 = 2 TP / (2 TP + FP + FN).

NumPy, SciPy and scikit-image only (no TensorFlow); every backend can use it.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage import segmentation

from kfcn.arguments import check_integer
from kfcn.arrays import one_channel


def instances_from_probabilities(probabilities, min_size=10, min_seed_size=4):
    """(H, W) instances from 3-class probabilities: interior seeds grown by a watershed.

    Each pixel takes its most likely class (0 background, 1 interior, 2 boundary). The
    connected components (4-connected) of the interior with at least `min_seed_size`
    pixels are the seeds; a watershed on the boundary probability (the seeds flood
    upwards from their low interiors, and meet at the ridge of the boundary band)
    grows them over the foreground (interior or boundary). A piece of foreground that
    no seed reaches becomes an object of its own. Objects under `min_size` pixels are
    dropped, and ids are renumbered 1..K.

    Args:
        probabilities: (H, W, 3) class probabilities (a softmax output).
        min_size: the fewest pixels an object keeps.
        min_seed_size: the fewest pixels a seed needs (smaller ones are noise).

    Returns:
        (H, W) int32 object ids, 0 = background.

    Example:
    >>> classes = np.array([[0, 2, 1, 2, 1, 2, 0]])  # two interiors in one foreground run
    >>> instances_from_probabilities(np.eye(3)[classes], min_size=1, min_seed_size=1)
    array([[0, 1, 1, 1, 2, 2, 0]], dtype=int32)
    """
    probabilities = _probabilities(probabilities, (3,), "instances_from_probabilities")
    min_size = check_integer("min_size", min_size, minimum=1, meaning="a pixel count")
    min_seed_size = check_integer("min_seed_size", min_seed_size, minimum=1, meaning="a pixel count")
    classes = np.argmax(probabilities, axis=-1)
    foreground = classes > 0
    seeds, _ = ndimage.label(classes == 1)
    seeds = _drop_small(seeds, min_seed_size)
    grown = segmentation.watershed(probabilities[..., 2], markers=seeds, mask=foreground)
    unreached, _ = ndimage.label(foreground & (grown == 0))
    grown = np.where(unreached > 0, unreached + grown.max(), grown)
    return _drop_small(grown, min_size)


def instances_from_foreground(probabilities, threshold=0.5, min_size=10):
    """(H, W) instances as connected components of the foreground: the baseline that merges touching objects.

    Args:
        probabilities: (H, W, 2) background / foreground probabilities (a softmax
            output; a pixel is foreground where class 1 is the more likely), or (H, W, 1)
            or (H, W) foreground probability (a sigmoid output, foreground above `threshold`).
        threshold: the foreground threshold of a one-channel probability.
        min_size: the fewest pixels an object keeps; ids are renumbered 1..K.

    Returns:
        (H, W) int32 object ids (4-connected components), 0 = background.

    Example:
    >>> foreground = np.array([[0.9, 0.8, 0.1, 0.7, 0.6, 0.2, 0.9]])
    >>> instances_from_foreground(foreground, min_size=1)
    array([[1, 1, 0, 2, 2, 0, 3]], dtype=int32)
    """
    probabilities = _probabilities(probabilities, (1, 2), "instances_from_foreground")
    min_size = check_integer("min_size", min_size, minimum=1, meaning="a pixel count")
    if probabilities.shape[-1] == 2:
        foreground = probabilities[..., 1] > probabilities[..., 0]
    else:
        if not 0 < threshold < 1:
            raise ValueError(f"instances_from_foreground: `threshold` must lie in (0, 1); got {threshold!r}.")
        foreground = probabilities[..., 0] > threshold
    components, _ = ndimage.label(foreground)
    return _drop_small(components, min_size)


def instance_f1(predicted, true, iou=0.5):
    """Precision, recall and F1 of predicted objects, a match being an IoU above `iou`.

    The IoU of every overlapping pair of objects comes from one contingency table (the
    counts of the pairs of ids that share pixels); id 0 is background in both maps and
    ids need not be consecutive.

    Args:
        predicted: (H, W) (or (H, W, 1)) predicted object ids, 0 = background.
        true: true object ids, the same shape.
        iou: the IoU a match must exceed, in [0.5, 1): from 0.5 on, the matching is
            one-to-one without any assignment step.

    Returns:
        A dict of floats: `precision` (TP / predicted objects), `recall` (TP / true
        objects), `f1`, `mean_matched_iou`, and the counts `true_positives`,
        `false_positives`, `false_negatives`, `predicted_objects`, `true_objects`.
        A ratio with nothing to count (precision without predictions, F1 of two empty
        maps, the mean IoU without matches) is NaN.

    Example:
    >>> true = np.array([[1, 1, 1, 1, 0, 2, 2, 2, 2]])
    >>> predicted = np.array([[5, 5, 5, 0, 0, 7, 7, 8, 8]])  # object 2 split in two halves
    >>> scores = instance_f1(predicted, true)
    >>> scores["true_positives"], scores["false_positives"], scores["false_negatives"]
    (1.0, 2.0, 1.0)
    >>> round(scores["precision"], 3), scores["recall"], scores["f1"]
    (0.333, 0.5, 0.4)
    """
    if not 0.5 <= iou < 1:
        raise ValueError(
            f"instance_f1: `iou` must lie in [0.5, 1); got {iou!r}. Below 0.5 one object can match several, "
            "and the matching would need an assignment step."
        )
    predicted = _instance_map(predicted, "predicted")
    true = _instance_map(true, "true")
    if predicted.shape != true.shape:
        raise ValueError(f"instance_f1: predicted {predicted.shape} and true {true.shape} must have the same shape.")
    predicted_ids, predicted_index = np.unique(predicted, return_inverse=True)
    true_ids, true_index = np.unique(true, return_inverse=True)
    predicted_area = np.bincount(predicted_index.ravel())
    true_area = np.bincount(true_index.ravel())
    pairs, intersection = np.unique(
        true_index.ravel().astype("int64") * len(predicted_ids) + predicted_index.ravel(), return_counts=True
    )
    t, p = np.divmod(pairs, len(predicted_ids))
    objects = (true_ids[t] > 0) & (predicted_ids[p] > 0)
    t, p, intersection = t[objects], p[objects], intersection[objects]
    overlap = intersection / (true_area[t] + predicted_area[p] - intersection)
    matched = overlap[overlap > iou]

    true_positives = len(matched)
    predicted_objects = int(np.count_nonzero(predicted_ids > 0))
    true_objects = int(np.count_nonzero(true_ids > 0))
    false_positives = predicted_objects - true_positives
    false_negatives = true_objects - true_positives
    return {
        "precision": _ratio(true_positives, predicted_objects),
        "recall": _ratio(true_positives, true_objects),
        "f1": _ratio(2 * true_positives, 2 * true_positives + false_positives + false_negatives),
        "mean_matched_iou": float(matched.mean()) if true_positives else float("nan"),
        "true_positives": float(true_positives),
        "false_positives": float(false_positives),
        "false_negatives": float(false_negatives),
        "predicted_objects": float(predicted_objects),
        "true_objects": float(true_objects),
    }


def _ratio(numerator, denominator):
    return numerator / denominator if denominator else float("nan")


def _probabilities(probabilities, channels, caller):
    probabilities = np.asarray(probabilities, dtype="float64")
    if probabilities.ndim == 2 and 1 in channels:
        probabilities = probabilities[..., None]
    if probabilities.ndim != 3 or probabilities.shape[-1] not in channels:
        wanted = " or ".join(f"(H, W, {c})" for c in channels)
        raise ValueError(f"{caller} expects {wanted} probabilities; got shape {probabilities.shape}.")
    if not np.all(np.isfinite(probabilities)):
        raise ValueError(f"{caller}: the probabilities hold NaN or infinite values.")
    return probabilities


def _instance_map(labels, what):
    labels = one_channel(labels, f"instance_f1: the {what} instances")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"instance_f1: the {what} instances must be integer ids, got {labels.dtype}; "
            "turn probabilities into objects first (instances_from_probabilities or instances_from_foreground)."
        )
    if labels.size and labels.min() < 0:
        raise ValueError(f"instance_f1: the {what} instance ids must be >= 0 (0 = background).")
    return labels


def _drop_small(labels, min_size):
    """Zeroes objects under `min_size` pixels and renumbers the rest 1..K (int32)."""
    ids, index, area = np.unique(labels, return_inverse=True, return_counts=True)
    keep = (ids > 0) & (area >= min_size)
    new_ids = np.zeros(len(ids), dtype="int32")
    new_ids[keep] = np.arange(1, np.count_nonzero(keep) + 1)
    return new_ids[index.reshape(labels.shape)]
