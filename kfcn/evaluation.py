"""Scores of a model's predictions against ground truth: segmentation, counting, restoration.

NumPy and scikit-image only (no TensorFlow): every function takes one predicted map and
its ground truth as arrays and returns a dict of plain floats, so `kfcn evaluate` can
print them and write them as JSON. A score that is undefined for an image (the Jaccard
index of a class absent from both maps, the Rand error of an image without any object)
is NaN; `mean_scores` leaves NaN out of its means.

Segmentation follows the ISBI 2012 challenge (Arganda-Carreras et al. 2015, "Crowdsourcing
the creation of image segmentation algorithms for connectomics"): the adapted Rand error
and the variation of information compare *segments* — for a membrane-style binary label
(1 = cell interior) the connected components of the interior — so a one-pixel gap in a
membrane that merges two cells costs much. The truth's membrane is left out of the score.
What becomes of the *predicted* membrane pixels is a convention (`border=`):
"singletons" (the default) makes each its own one-pixel segment, as the SNEMI3D / ISBI
scoring script does, so a membrane drawn thicker than the truth costs a little (split
pixels); "thin" gives each to the nearest predicted cell, as the challenge's later
"thinned" V_rand / V_info did, so a thick membrane costs nothing. A gap that joins two
cells is a merge either way. The challenge reported the Rand error at the best threshold
of the probability map; `best_rand_error` searches a small grid.
"""

from __future__ import annotations

import math

import numpy as np
from skimage import measure, metrics, segmentation

from kfcn.arguments import is_integer
from kfcn.arrays import one_channel

BORDERS = ("singletons", "thin")
RAND_THRESHOLDS = tuple(float(t) for t in np.round(np.linspace(0.1, 0.9, 17), 2))


def _finite(array, what):
    array = np.asarray(array)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"The {what} holds NaN or infinite values; a score of it would mean nothing.")
    return array


def _two_d(label, what="label"):
    return one_channel(label, f"The {what}")


def _check_probability(probability):
    probability = _finite(probability, "prediction").astype("float64")
    if probability.ndim == 2:
        probability = probability[..., None]
    if probability.ndim != 3:
        raise ValueError(f"The prediction must be (H, W, channels); got shape {probability.shape}.")
    if probability.min() < -1e-3 or probability.max() > 1 + 1e-3:
        raise ValueError(
            f"The prediction's values lie in [{probability.min():g}, {probability.max():g}], not in [0, 1]: the "
            "model gives logits or values, not probabilities. Score a model with a sigmoid/softmax head "
            "(build it with logits=False)."
        )
    return probability


def predicted_classes(probability, num_classes=2, threshold=0.5):
    """Class map of a probability map: `p > threshold` for one channel, else the argmax.

    Args:
        probability: (H, W, C) probabilities; C = 1 (sigmoid) or C = `num_classes` (softmax).
        num_classes: the number of classes K.
        threshold: foreground threshold of a one-channel map.

    Returns:
        (H, W) int64 class indices 0..K-1.

    Raises:
        ValueError: for a channel count that is neither 1 (with K = 2) nor K.

    Example:
    >>> predicted_classes(np.array([[[0.2], [0.7]]])).tolist()
    [[0, 1]]
    >>> predicted_classes(np.array([[[0.1, 0.6, 0.3]]]), num_classes=3).tolist()
    [[1]]
    """
    probability = _check_probability(probability)
    channels = probability.shape[-1]
    if channels == 1 and num_classes == 2:
        return (probability[..., 0] > threshold).astype("int64")
    if channels != num_classes:
        raise ValueError(
            f"The model gives {channels} output channel(s) but the labels have {num_classes} classes; a model "
            f"for {num_classes} classes has {num_classes} softmax channels (or 1 sigmoid channel for 2 classes). "
            "Check --num-classes / --label-mode or the model."
        )
    return probability.argmax(-1).astype("int64")


def confusion_matrix(predicted, label, num_classes, ignore_class=None):
    """Counts `[true class, predicted class]` over the pixels whose label is not `ignore_class`.

    Example:
    >>> confusion_matrix(np.array([0, 1, 1, 0]), np.array([0, 1, 0, 5]), 2, ignore_class=5).tolist()
    [[1, 1], [0, 1]]
    """
    predicted, label = np.asarray(predicted).ravel(), np.asarray(label).ravel()
    if predicted.shape != label.shape:
        raise ValueError(f"Prediction ({predicted.size} px) and label ({label.size} px) differ in size.")
    keep = label != ignore_class if ignore_class is not None else np.ones(label.shape, bool)
    unknown = sorted(set(np.unique(label[keep]).tolist()) - set(range(num_classes)))
    if unknown:
        hint = " A 0/255 mask needs labels // 255 (or label_mode='binary' in load_pair)." if 255 in unknown else ""
        raise ValueError(
            f"The label has values {unknown[:8]} outside the classes 0..{num_classes - 1}"
            f"{f' and ignore_class {ignore_class}' if ignore_class is not None else ''}.{hint}"
        )
    pairs = label[keep].astype("int64") * num_classes + predicted[keep].astype("int64")
    return np.bincount(pairs, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def confusion_scores(confusion, ignore_class=None):
    """The scores of a confusion matrix: of one image, or of a whole set as one matrix summed over its images.

    Summed over a set, this is how CamVid results are reported (SegNet, Badrinarayanan et al.
    2015; FCN, Long et al. 2015): "global accuracy" is the fraction of all the set's labelled
    pixels predicted right, "class_accuracy" the mean over classes of each class's recall, and
    "mean_iou" the mean over classes of TP / (TP + FP + FN), each class counted over every
    pixel of the set. That differs from the mean over images of per-image scores, where a class
    seen in a few pixels of one image weighs as much as a whole image of road.

    A class absent from both truth and prediction has NaN IoU and Dice (and NaN accuracy when
    absent from the truth) and is left out of the means; `ignore_class`, when it is one of the
    matrix's classes, is NaN everywhere.

    Args:
        confusion: (K, K) counts `[true class, predicted class]` (`confusion_matrix`, or their sum).
        ignore_class: a class index whose row and column are no class of the scores.

    Returns:
        A dict: "pixel_error", "global_accuracy", "class_accuracy", "mean_iou" (floats) and
        "iou_per_class", "dice_per_class", "accuracy_per_class", "pixels_per_class" (lists).

    Example:
    >>> scores = confusion_scores(np.array([[3, 1], [0, 4]]))
    >>> scores["global_accuracy"], scores["iou_per_class"], scores["class_accuracy"]
    (0.875, [0.75, 0.8], 0.875)
    """
    confusion = np.asarray(confusion, dtype="float64")
    if confusion.ndim != 2 or confusion.shape[0] != confusion.shape[1]:
        raise ValueError(f"A confusion matrix is square (K, K); got shape {confusion.shape}.")
    num_classes = confusion.shape[0]
    true_positive = np.diag(confusion)
    in_truth, in_prediction = confusion.sum(1), confusion.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = true_positive / (in_truth + in_prediction - true_positive)
        dice = 2 * true_positive / (in_truth + in_prediction)
        accuracy = true_positive / in_truth
    if ignore_class is not None and 0 <= ignore_class < num_classes:  # an ignored class has no score
        iou[ignore_class] = dice[ignore_class] = accuracy[ignore_class] = math.nan
    total = confusion.sum()
    correct = float(true_positive.sum() / total) if total else math.nan
    return {
        "pixel_error": 1 - correct,
        "global_accuracy": correct,
        "class_accuracy": _nanmean(accuracy),
        "mean_iou": _nanmean(iou),
        "iou_per_class": [float(v) for v in iou],
        "dice_per_class": [float(v) for v in dice],
        "accuracy_per_class": [float(v) for v in accuracy],
        "pixels_per_class": [int(v) for v in in_truth],
    }


def rand_and_vi(predicted_segments, true_segments):
    """Adapted Rand error and variation of information (split, merge) of two segmentations.

    scikit-image's `adapted_rand_error` (the SNEMI3D / ISBI 2012 definition: 1 − the
    F-score of the Rand precision and recall) and `variation_of_information`; pixels
    labelled 0 in the truth (membrane, background) are left out of both, as in the
    challenge. `vi_split` = H(prediction | truth) (over-segmentation), `vi_merge` =
    H(truth | prediction) (under-segmentation), in bits. NaN if the truth has no segment.

    Args:
        predicted_segments, true_segments: (H, W) integer segment ids (0 = none in the truth).

    Example:
    >>> truth = np.array([[1, 1, 0, 2, 2]])
    >>> rand_and_vi(truth, truth)["adapted_rand_error"]
    0.0
    >>> rand_and_vi(np.array([[1, 1, 1, 1, 1]]), truth)["adapted_rand_error"]  # merged: precision 1/3, recall 1
    0.5
    """
    predicted, truth = _two_d(predicted_segments, "prediction"), _two_d(true_segments, "truth")
    if predicted.shape != truth.shape:
        raise ValueError(f"The prediction {predicted.shape} and the truth {truth.shape} differ in shape.")
    if not np.any(truth != 0):
        return {"adapted_rand_error": math.nan, "vi_split": math.nan, "vi_merge": math.nan}
    with np.errstate(invalid="ignore", divide="ignore"):  # segments of one pixel only: 0/0, NaN
        error, _, _ = metrics.adapted_rand_error(truth, predicted, ignore_labels=(0,))
        split, merge = metrics.variation_of_information(truth, predicted, ignore_labels=(0,))
    return {"adapted_rand_error": float(error), "vi_split": float(split), "vi_merge": float(merge)}


def segments(mask, border=None):
    """Connected components (4-connected) of a foreground mask: 1..N inside.

    4-connectivity, so that two cells touching only diagonally through a thin membrane
    stay two. The background (membrane) is, by `border`: None: 0 (for a truth, whose 0 is
    left out of the scores); "singletons": one new segment per pixel; "thin": the
    nearest component's (membranes thinned to nothing).

    Example:
    >>> segments(np.array([[1, 0, 1], [0, 1, 0]])).tolist()
    [[1, 0, 2], [0, 3, 0]]
    >>> segments(np.array([[1, 1, 0, 0, 1]]), "singletons").tolist()
    [[1, 1, 3, 4, 2]]
    >>> segments(np.array([[1, 1, 0, 0, 1]]), "thin").tolist()
    [[1, 1, 1, 2, 2]]
    """
    labels = measure.label(_two_d(mask, "mask") != 0, connectivity=1, background=0)
    background = labels == 0
    if border == "singletons":
        labels[background] = labels.max() + 1 + np.arange(np.count_nonzero(background))
    elif border == "thin" and not background.all():
        labels = segmentation.expand_labels(labels, distance=sum(labels.shape))
    elif border not in (None, "thin"):
        raise ValueError(f"border must be None, 'singletons' or 'thin'; got {border!r}.")
    return labels


def best_rand_error(probability, label, thresholds=RAND_THRESHOLDS, border="singletons"):
    """The lowest adapted Rand error over thresholds of a foreground probability map.

    The segments of the prediction are the connected components of `probability >
    threshold`, its membrane pixels treated as `border` says (see `segments`); those of
    the truth, of `label == 1` (ISBI: 1 = cell interior), its membrane left out. The
    ISBI 2012 challenge ranked entries by this best value.

    Args:
        probability: (H, W) or (H, W, 1) foreground probability.
        label: (H, W) or (H, W, 1) 0/1 mask.
        thresholds: the thresholds tried.
        border: "singletons" or "thin" (see the module docstring).

    Returns:
        `{"adapted_rand_error": lowest error, "threshold": the threshold that gave it}`.

    Example:
    >>> label = np.array([[1, 1, 0, 1, 1]])
    >>> probability = np.array([[0.9, 0.9, 0.4, 0.9, 0.9]])  # the membrane is unsure
    >>> best_rand_error(probability, label, thresholds=(0.3, 0.5))
    {'adapted_rand_error': 0.0, 'threshold': 0.5}
    >>> best_rand_error(probability, np.zeros((1, 5), int))  # no cell in the label: nothing to compare
    {'adapted_rand_error': nan, 'threshold': nan}
    """
    probability = _check_probability(probability)
    if probability.shape[-1] != 1:
        raise ValueError(f"best_rand_error takes a one-channel foreground probability; got {probability.shape}.")
    truth = segments(_binary_label(label))
    best = {"adapted_rand_error": math.nan, "threshold": math.nan}
    for threshold in thresholds:
        predicted = segments(probability[..., 0] > threshold, border)
        error = rand_and_vi(predicted, truth)["adapted_rand_error"]
        if math.isnan(error):  # not computable (e.g. no cell in the label): no threshold is "best"
            continue
        if math.isnan(best["adapted_rand_error"]) or error < best["adapted_rand_error"]:
            best = {"adapted_rand_error": error, "threshold": float(threshold)}
    return best


def edge_distance(label):
    """Each pixel's distance to the nearest pixel of the other class in a 0/1 label, in pixels.

    Euclidean, between pixel centres (`scipy.ndimage.distance_transform_edt`): 1 for a pixel
    that touches the other class side by side, sqrt(2) across a corner; infinite everywhere in
    a label of one class, which has no edge.

    Example:
    >>> edge_distance(np.array([[0, 0, 1, 1, 1]])).tolist()
    [[2.0, 1.0, 1.0, 2.0, 3.0]]
    """
    from scipy import ndimage

    truth = _binary_label(label).astype(bool)
    if truth.all() or not truth.any():
        return np.full(truth.shape, np.inf)
    return np.where(truth, ndimage.distance_transform_edt(truth), ndimage.distance_transform_edt(~truth))


def _check_tolerance(tolerance):
    if (
        isinstance(tolerance, bool)
        or not isinstance(tolerance, (int, float, np.integer, np.floating))
        or not (tolerance >= 0 and math.isfinite(tolerance))
    ):
        raise ValueError(f"An edge tolerance is a distance in pixels, 0 or more; got {tolerance!r}.")


def errors_near_edges(predicted, label, tolerance):
    """The wrong pixels of a 0/1 prediction that an edge drawn within `tolerance` px of its place explains.

    A wrong pixel is near an edge when the class it was given lies within `tolerance` px of it in
    the label, and its true class lies within `tolerance` px of it in the prediction (distances
    as `edge_distance` measures them): the two maps have the same edge there, a few pixels apart.
    The rule is the same for both classes. For membrane labels (ISBI 2012: 1 = cell interior) a
    membrane drawn thicker, thinner or a pixel aside is near; a membrane invented inside a cell
    (no true membrane close) or missed (no predicted membrane close: a gap, unless the gap is
    shorter than about twice `tolerance`) is not.

    Example:
    >>> label = np.array([[0, 0, 1, 1, 1, 1, 1, 1]])
    >>> predicted = np.array([[0, 0, 0, 1, 1, 1, 0, 1]])  # the edge one pixel aside; a far 0 in the cells
    >>> errors_near_edges(predicted, label, 1).astype(int).tolist()
    [[0, 0, 1, 0, 0, 0, 0, 0]]
    """
    predicted = _two_d(predicted, "prediction")
    if not set(np.unique(predicted).tolist()) <= {0, 1}:
        raise ValueError(
            "errors_near_edges takes a 0/1 prediction (classes, not probabilities); threshold a probability map "
            "first: probability > 0.5."
        )
    predicted, truth = predicted.astype(bool), _binary_label(label).astype(bool)
    if predicted.shape != truth.shape:
        raise ValueError(f"The prediction {predicted.shape} and the label {truth.shape} differ in size.")
    _check_tolerance(tolerance)
    near = (edge_distance(truth.astype("int64")) <= tolerance) & (edge_distance(predicted.astype("int64")) <= tolerance)
    return (predicted != truth) & near


def pixel_errors_by_edge_distance(probability, label, threshold=0.5, tolerances=(1, 2, 3)):
    """How much of a binary segmentation's pixel error is edges drawn a few pixels off, and how much is not.

    Splits the wrong pixels by `errors_near_edges`: for each tolerance k, the error left once every
    wrong pixel that an edge drawn within k px explains is forgiven. For membrane labels (ISBI 2012:
    1 = cell interior) that separates membranes drawn at another width or place than the annotation's
    from membranes invented (`false_background_beyond_...`: predicted 0 where the label says 1) or
    missed (`false_foreground_beyond_...`).

    Args:
        probability: (H, W) or (H, W, 1) foreground probability, or (H, W, 2) two-class softmax.
        label: (H, W) or (H, W, 1) 0/1 mask (1 = foreground).
        threshold: foreground where `probability > threshold`.
        tolerances: distances in pixels, each giving the `..._beyond_{k}px` scores.

    Returns:
        Fractions of all pixels: `pixel_error`; `false_foreground` (predicted 1, label 0) and
        `false_background` (predicted 0, label 1), which sum to it; `predicted_foreground` and
        `true_foreground`; and, for each k, `pixel_error_beyond_{k}px` (the wrong pixels no edge within
        k px explains) with its two parts `false_foreground_beyond_{k}px` and `false_background_beyond_{k}px`,
        and `edge_band_{k}px` (the pixels within k px of an edge of the label, right or wrong).

    Example:
    >>> label = np.array([[0, 0, 1, 1, 1, 1, 1, 1]])
    >>> probability = np.array([[0.2, 0.2, 0.2, 0.9, 0.9, 0.9, 0.2, 0.9]])  # edge one pixel off; a far 0
    >>> errors = pixel_errors_by_edge_distance(probability, label, tolerances=(1,))
    >>> errors["pixel_error"], errors["pixel_error_beyond_1px"], errors["false_background_beyond_1px"]
    (0.25, 0.125, 0.125)
    """
    if np.asarray(probability).size == 0 or np.asarray(label).size == 0:
        raise ValueError("The prediction or the label is empty: there is no pixel to score.")
    probability = _check_probability(probability)
    if probability.shape[-1] not in (1, 2):
        raise ValueError(
            "pixel_errors_by_edge_distance takes a foreground probability (one sigmoid channel, or a two-class "
            f"softmax whose channel 1 is the foreground); got shape {probability.shape}."
        )
    truth = _binary_label(label).astype(bool)
    predicted = probability[..., -1] > threshold
    if predicted.shape != truth.shape:
        raise ValueError(f"The prediction {predicted.shape} and the label {truth.shape} differ in size.")
    for tolerance in tolerances:
        _check_tolerance(tolerance)
    wrong = predicted != truth
    scores = {
        "pixel_error": float(wrong.mean()),
        "false_foreground": float((predicted & ~truth).mean()),
        "false_background": float((~predicted & truth).mean()),
        "predicted_foreground": float(predicted.mean()),
        "true_foreground": float(truth.mean()),
    }
    band = edge_distance(truth.astype("int64"))
    for tolerance in tolerances:
        far = wrong & ~errors_near_edges(predicted.astype("int64"), truth.astype("int64"), tolerance)
        scores[f"pixel_error_beyond_{tolerance:g}px"] = float(far.mean())
        scores[f"false_foreground_beyond_{tolerance:g}px"] = float((far & predicted).mean())
        scores[f"false_background_beyond_{tolerance:g}px"] = float((far & ~predicted).mean())
        scores[f"edge_band_{tolerance:g}px"] = float((band <= tolerance).mean())
    return scores


def isbi2012_original_scores(probabilities, labels, thresholds=RAND_THRESHOLDS):
    """A stack's "pixel error" and "Rand error" as the ISBI 2012 challenge first ranked entries.

    These are the scores of the challenge's leaderboard from 2012 until its 2015 revision,
    and the ones the U-Net paper reports (Ronneberger et al. 2015, Table 1: pixel error
    0.0611, Rand error 0.0382, warping error 0.000353). Both are *1 - the maximal F-score*
    over thresholds, with true and false positives summed over the slices of the stack
    (Fiji's `trainableSegmentation.metrics` `PixelError` and `RandError`, used by the
    challenge's scoring script), so neither is the fraction of misclassified pixels:

    - "pixel_error": 1 - the F-score (Dice) of the cell interior (the label's 1) at the best
      threshold.
    - "rand_error": 1 - the F-score of the foreground-restricted Rand index at the best
      threshold: pairs of pixels of the truth's cells (its membrane left out), "positive"
      when in one segment (4-connected components); a predicted membrane pixel is in no
      segment, as "singletons" in `segments` (Fiji leaves the prediction's zero component out
      of the pairs). Pairs are counted within a slice, with Fiji's n (n - 1) / 2.

    For a set too large to hold, sum `isbi2012_original_counts` over its images and pass the
    sum to `isbi2012_scores_from_counts`.

    Args:
        probabilities: a stack (S, H, W) or (S, H, W, 1), or a list of (H, W[, 1]) maps, of
            interior probabilities.
        labels: the matching 0/1 masks (1 = cell interior).
        thresholds: the thresholds searched (the challenge's script used a grid of 0.1 steps).

    Returns:
        `{"pixel_error", "pixel_threshold", "rand_error", "rand_threshold"}`.

    Example:
    >>> label = np.array([[1, 1, 0, 1, 1]])
    >>> scores = isbi2012_original_scores([np.array([[0.9, 0.9, 0.6, 0.9, 0.9]])], [label], thresholds=(0.5, 0.7))
    >>> scores["pixel_error"], scores["rand_error"], scores["rand_threshold"]
    (0.0, 0.0, 0.7)
    """
    if len(probabilities) != len(labels) or not len(labels):
        raise ValueError(f"Give one label per probability map; got {len(probabilities)} maps and {len(labels)} labels.")
    counts = sum(isbi2012_original_counts(p, label, thresholds) for p, label in zip(probabilities, labels))
    return isbi2012_scores_from_counts(counts, thresholds)


def isbi2012_original_counts(probability, label, thresholds=RAND_THRESHOLDS):
    """One image's counts behind `isbi2012_original_scores`, one row per threshold: interior
    pixels right, predicted, true; pixel pairs in one segment in both, in the prediction, in
    the truth. Sum them over a set.

    Example:
    >>> isbi2012_original_counts(np.array([[0.9, 0.2, 0.9]]), np.array([[1, 1, 0]]), (0.5,)).tolist()
    [[1.0, 2.0, 2.0, 0.0, 0.0, 1.0]]
    """
    probability = _check_probability(probability)
    if probability.shape[-1] == 2:  # a two-class softmax: channel 1 is the interior
        probability = probability[..., 1:]
    if probability.shape[-1] != 1:
        raise ValueError(f"The ISBI 2012 scores take a one-channel interior probability; got {probability.shape}.")
    truth = _binary_label(label)
    if probability.shape[:2] != truth.shape:
        raise ValueError(f"The prediction {probability.shape[:2]} and its label {truth.shape} differ in size.")
    cells = segments(truth)
    rows = []
    for threshold in thresholds:
        interior = probability[..., 0] > threshold
        pixels = [np.sum(interior & (truth == 1)), interior.sum(), truth.sum()]
        rows.append([*pixels, *_foreground_rand_pairs(cells, segments(interior))])
    return np.array(rows, dtype="float64")


def isbi2012_scores_from_counts(counts, thresholds=RAND_THRESHOLDS):
    """`isbi2012_original_scores` from the sum of `isbi2012_original_counts` over a set."""
    best = {"pixel_error": math.nan, "pixel_threshold": math.nan, "rand_error": math.nan, "rand_threshold": math.nan}
    for threshold, row in zip(thresholds, np.asarray(counts, dtype="float64")):
        for kind, (hits, predicted, true) in (("pixel", row[:3]), ("rand", row[3:])):
            error = 1 - 2 * hits / (predicted + true) if predicted + true else math.nan
            if not math.isnan(error) and (math.isnan(best[f"{kind}_error"]) or error < best[f"{kind}_error"]):
                best[f"{kind}_error"], best[f"{kind}_threshold"] = float(error), float(threshold)
    return best


def _foreground_rand_pairs(truth, predicted):
    """(pairs in one segment in both, in one predicted segment, in one true segment) over the
    pixels of the truth's segments; predicted 0 (membrane) is in no segment."""
    keep = truth > 0
    true_ids, predicted_ids = truth[keep].astype("int64"), predicted[keep].astype("int64")
    table = np.unique(true_ids * (predicted_ids.max() + 1) + predicted_ids, return_counts=True)
    joint_predicted = table[0] % (predicted_ids.max() + 1)
    both = table[1][joint_predicted > 0]
    in_predicted = np.bincount(predicted_ids)[1:]
    in_true = np.bincount(true_ids)[1:]

    def pairs(counts):
        counts = counts.astype("float64")
        return float(np.sum(counts * (counts - 1) / 2))

    return np.array([pairs(both), pairs(in_predicted), pairs(in_true)])


def _binary_label(label):
    label = _two_d(label)
    values = np.unique(label)
    if not set(values.tolist()) <= {0, 1}:
        raise ValueError(
            f"A binary label holds 0 and 1; got values {values[:8].tolist()}. Read masks with "
            "load_pair(label_mode='binary'), or pass labels // 255 for a 0/255 mask."
        )
    return label


def _classified(probability, label, label_mode, num_classes, ignore_class, threshold):
    """(probability, predicted classes, label, K) of one image, checked as `segmentation_scores` says."""
    label = _two_d(label)
    if label_mode == "binary":
        if ignore_class is not None:
            raise ValueError("ignore_class needs label_mode='index' (a binary label holds only 0 and 1).")
        num_classes = 2
        label = _binary_label(label)
        probability = _check_probability(probability)
        if probability.shape[-1] == 2:  # a two-class softmax: channel 1 is the foreground
            probability = probability[..., 1:]
    elif label_mode == "index":
        if not is_integer(num_classes) or num_classes < 2:
            raise ValueError(f"label_mode='index' needs num_classes >= 2; got {num_classes!r}.")
    else:
        raise ValueError(f"label_mode must be 'binary' or 'index'; got {label_mode!r}.")
    predicted = predicted_classes(probability, num_classes, threshold)
    if predicted.shape != label.shape:
        raise ValueError(f"The prediction {predicted.shape} and the label {label.shape} differ in size.")
    return probability, predicted, label, num_classes


def segmentation_confusion(probability, label, label_mode="binary", num_classes=None, ignore_class=None, threshold=0.5):
    """The confusion matrix of one image's prediction, classified as `segmentation_scores` classifies it.

    Sum it over a set and pass the sum to `confusion_scores` for the whole set's scores.

    Example:
    >>> segmentation_confusion(np.array([[[0.9], [0.2], [0.1]]]), np.array([[1, 1, 0]])).tolist()
    [[1, 0], [1, 1]]
    """
    _, predicted, label, num_classes = _classified(probability, label, label_mode, num_classes, ignore_class, threshold)
    return confusion_matrix(predicted, label, num_classes, ignore_class)


def segmentation_scores(
    probability,
    label,
    label_mode="binary",
    num_classes=None,
    ignore_class=None,
    threshold=0.5,
    thresholds=None,
    border="singletons",
):
    """Pixel error, Dice, Jaccard, mIoU, class-average accuracy, adapted Rand error and VI of one image.

    Binary (membrane-style, as ISBI 2012: 1 = cell interior): the foreground is `p >
    threshold`; "dice" and "jaccard" are those of the foreground class; the Rand error and
    the VI compare the connected components of predicted and true foreground (`segments`,
    predicted membrane as `border` says), and "rand_error_best" is `best_rand_error` over
    `thresholds`.
    Index: K classes; "dice" and "jaccard" are means over the classes ("dice_per_class",
    "jaccard_per_class" hold each); the Rand error and the VI compare the class maps.
    Pixels labelled `ignore_class` count nowhere. mIoU and class-average accuracy average
    over the classes present in the truth or the prediction (in the truth, for accuracy).

    Args:
        probability: (H, W, C) model output: probabilities (sigmoid or softmax).
        label: (H, W) or (H, W, 1) class indices (0/1 for binary).
        label_mode: "binary" or "index".
        num_classes: number of classes K for "index" (2 for "binary").
        ignore_class: for "index", a label value excluded from every score.
        threshold: foreground threshold of a one-channel output.
        thresholds: thresholds searched for the best Rand error (binary; default
            `RAND_THRESHOLDS`).
        border: binary: predicted membrane pixels as "singletons" or "thin" (module docstring).

    Returns:
        A dict of floats (lists of floats per class for "index").

    Raises:
        ValueError: for non-finite or non-probability predictions, channel counts that do
            not match the classes, label values outside the classes.

    Example:
    >>> label = np.array([[1, 1, 0, 0]])
    >>> scores = segmentation_scores(np.array([[[0.9], [0.2], [0.1], [0.1]]]), label)
    >>> scores["pixel_error"], round(scores["dice"], 4), round(scores["jaccard"], 4)
    (0.25, 0.6667, 0.5)
    """
    probability, predicted, label, num_classes = _classified(
        probability, label, label_mode, num_classes, ignore_class, threshold
    )
    pooled = confusion_scores(confusion_matrix(predicted, label, num_classes, ignore_class), ignore_class)
    scores = {key: pooled[key] for key in ("pixel_error", "mean_iou", "class_accuracy")}
    jaccard, dice = pooled["iou_per_class"], pooled["dice_per_class"]
    if label_mode == "binary":
        scores.update(dice=float(dice[1]), jaccard=float(jaccard[1]))
        scores.update(rand_and_vi(segments(predicted, border), segments(label)))
        best = best_rand_error(probability, label, RAND_THRESHOLDS if thresholds is None else thresholds, border)
        scores.update(rand_error_best=best["adapted_rand_error"], rand_best_threshold=best["threshold"])
    else:
        scores.update(
            dice=_nanmean(dice),
            jaccard=_nanmean(jaccard),
            dice_per_class=dice,
            jaccard_per_class=jaccard,
        )
        # Class maps as segments: shift by one so that class 0 is a segment and 0 marks ignored pixels.
        truth = label.astype("int64") + 1
        if ignore_class is not None:
            truth[label == ignore_class] = 0
        scores.update(rand_and_vi(predicted + 1, truth))
    return scores


def counting_scores(density, true_count):
    """Predicted count (the sum of a density map) against the true count.

    Args:
        density: (H, W) or (H, W, 1) predicted density map (Lempitsky & Zisserman 2010).
        true_count: the number of objects (e.g. `len(kfcn.data.dots_from_image(dots))`).

    Returns:
        `{"predicted_count", "true_count", "absolute_error", "relative_error"}`;
        relative error = |predicted − true| / true, NaN for an image without objects.
        Their means over images are the MAE and the mean relative error.

    Example:
    >>> counting_scores(np.full((4, 5), 0.5), 8)
    {'predicted_count': 10.0, 'true_count': 8, 'absolute_error': 2.0, 'relative_error': 0.25}
    """
    density = _two_d(_finite(density, "density map"), "density map (one channel)")
    predicted = float(density.sum(dtype="float64"))
    error = abs(predicted - true_count)
    return {
        "predicted_count": predicted,
        "true_count": int(true_count),
        "absolute_error": error,
        "relative_error": error / true_count if true_count else math.nan,
    }


def data_range(target):
    """The value range PSNR and SSIM measure against: the dtype's full range for integer images
    (255 for 8-bit, 65535 for 16-bit), else the target's max − min.

    Example:
    >>> data_range(np.zeros((2, 2), np.uint8)), data_range(np.array([0.5, 2.0]))
    (255.0, 1.5)
    """
    target = np.asarray(target)
    if np.issubdtype(target.dtype, np.integer):
        info = np.iinfo(target.dtype)
        return float(info.max) - float(min(info.min, 0))
    spread = float(np.max(target) - np.min(target))
    if spread == 0:
        raise ValueError("The target image is constant: PSNR and SSIM need a value range; pass data_range.")
    return spread


def restoration_scores(prediction, target, range_of_values=None):
    """PSNR (dB) and SSIM of a restored image against its clean target, in the target's units.

    Both are raw pixel values (the model must output the target's units). PSNR is
    infinite for an exact restoration. SSIM uses scikit-image's default 7x7 window.

    Args:
        prediction: (H, W, C) model output.
        target: (H, W, C) clean image as stored (its dtype sets the range, see `data_range`).
        range_of_values: override of `data_range(target)`.

    Raises:
        ValueError: for differing shapes or channels, images under 7x7, non-finite
            values, or a [0, 1] prediction for a target of raw integer pixels.

    Example:
    >>> target = np.tile(np.arange(16, dtype=np.uint8) * 16, (16, 1))[..., None]
    >>> scores = restoration_scores(target.astype("float32") + 5, target)
    >>> round(scores["psnr"], 2), round(scores["ssim"], 3)  # 10 log10(255² / 5²)
    (34.15, 0.999)
    """
    prediction = _finite(prediction, "prediction").astype("float64")
    target_array = np.asarray(target)
    if target_array.ndim == 2:
        target_array = target_array[..., None]
    if prediction.ndim == 2:
        prediction = prediction[..., None]
    if prediction.shape != target_array.shape:
        raise ValueError(
            f"The prediction has shape {prediction.shape} but the target {target_array.shape}: a restoration model "
            "must give the target's size and channels (check the model and the label folder)."
        )
    if min(target_array.shape[:2]) < 7:
        raise ValueError(f"SSIM needs images of at least 7x7 pixels; got {target_array.shape[:2]}.")
    if np.issubdtype(target_array.dtype, np.integer) and target_array.max() > 1 and prediction.max() <= 1:
        raise ValueError(
            f"The prediction lies in [{prediction.min():g}, {prediction.max():g}] but the targets are raw pixels up "
            f"to {target_array.max()}: the model outputs [0, 1] values. Train it on raw-pixel targets, or compare "
            "it against targets scaled the same way."
        )
    span = data_range(target_array) if range_of_values is None else float(range_of_values)
    clean = _finite(target_array, "target").astype("float64")
    with np.errstate(divide="ignore"):  # an exact restoration: infinite PSNR
        psnr = metrics.peak_signal_noise_ratio(clean, prediction, data_range=span)
    return {
        "psnr": float(psnr),
        "ssim": float(metrics.structural_similarity(clean, prediction, data_range=span, channel_axis=-1)),
    }


def _nanmean(values):
    values = np.asarray(values, dtype="float64")
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else math.nan


def mean_scores(rows):
    """Means over images of each score (element-wise for per-class lists), NaN left out.

    Example:
    >>> mean_scores([{"a": 1.0, "b": [1.0, float("nan")]}, {"a": float("nan"), "b": [3.0, 2.0]}])
    {'a': 1.0, 'b': [2.0, 2.0]}
    """
    means = {}
    for key in rows[0]:
        values = np.array([row[key] for row in rows], dtype="float64")
        if values.ndim == 1:
            means[key] = _nanmean(values)
        else:
            means[key] = [_nanmean(column) for column in values.T]
    return means
