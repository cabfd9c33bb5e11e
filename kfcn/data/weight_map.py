"""The U-Net border weight map (Ronneberger et al. 2015, eq. 2)."""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from kfcn.arrays import one_channel


def unet_weight_map(labels, w0=10.0, sigma=5.0, class_weights="balanced", instances=None):
    """w(x) = w_c(x) + w0 · exp(−(d1(x) + d2(x))² / (2σ²)).

    d1 and d2 are the distances to the border of the nearest and the second-nearest
    object, so the weight peaks in the thin background gaps between touching objects
    and forces the network to learn those separating borders. w_c balances the class
    frequencies.

    Args:
        labels: (H, W) array of non-negative integers: a binary 0/1 mask (objects are
            its connected components) or, with `instances=True`, an instance map
            (0 = background, k = object k). Default: an instance map if it has values
            other than 0 and 1. A raw 0/255 mask (0 and one other value) is refused: pass
            `labels // 255` (or load it with `folder_dataset(..., label_mode="binary")`).
        w0: the border weight (10 in the paper).
        sigma: the border width in pixels (about 5 in the paper).
        class_weights: "balanced" (w_c = N / (2 · N_c) for background and objects),
            None (w_c = 1), or a pair `(background, foreground)`.
        instances: whether `labels` holds instance ids (True) or is a 0/1 mask (False); see above.

    Returns:
        (H, W) float32 weights, to feed to `model.fit` as `sample_weight`.

    Example:
    >>> mask = np.zeros((1, 9), int); mask[0, :3] = 1; mask[0, 6:] = 1
    >>> weights = unet_weight_map(mask, w0=10, sigma=5, class_weights=None)
    >>> round(float(weights[0, 4]), 3)  # centre of the gap: d1 = d2 = 2
    8.261
    """
    if not (np.isfinite(w0) and w0 >= 0):
        raise ValueError(f"unet_weight_map: `w0` is the border weight, a number >= 0 (10 in the paper); got {w0!r}.")
    if not (np.isfinite(sigma) and sigma > 0):
        raise ValueError(f"unet_weight_map: `sigma` is the border width in pixels, > 0 (5 in the paper): {sigma!r}.")
    labels = one_channel(labels, "unet_weight_map: the label map")
    _check_labels(labels, instances)
    if instances is None:
        instances = bool(np.any((labels != 0) & (labels != 1)))
    instance_map = labels.astype(np.int64) if instances else ndimage.label(labels > 0)[0]
    foreground = instance_map > 0

    if class_weights is None:
        weights = np.ones(labels.shape, dtype="float64")
    else:
        if class_weights == "balanced":
            total = labels.size
            counts = np.array([np.sum(~foreground), np.sum(foreground)], dtype="float64")
            background_weight, foreground_weight = (total / (2 * np.maximum(counts, 1))).tolist()
        else:
            background_weight, foreground_weight = class_weights
        weights = np.where(foreground, foreground_weight, background_weight).astype("float64")

    if w0 > 0 and len(np.unique(instance_map[foreground])) >= 2:
        weights = weights + w0 * np.exp(-((_two_nearest_distance_sum(instance_map, w0, sigma)) ** 2) / (2 * sigma**2))
    return weights.astype("float32")


# The border term is computed exactly wherever it exceeds this fraction of w0; beyond, it is smaller.
BORDER_TOLERANCE = 1e-9


def _two_nearest_distance_sum(instance_map, w0, sigma):
    """d1 + d2 per pixel: the distances to the nearest and the second-nearest object, where the
    border term can exceed `BORDER_TOLERANCE` x w0 (elsewhere inf, where the term is below it).

    Each object's distance transform covers only its bounding box grown by the reach R at which
    w0 exp(-R^2 / 2 sigma^2) falls to the tolerance: a pixel farther from an object than R has
    d2 > R or d1 > R for it, so d1 + d2 > R and its term is below the tolerance. Cost: the
    objects' windows, not objects x image (one ISBI slice of 136 cells: 2.4 s before).
    """
    reach = int(math.ceil(sigma * math.sqrt(2 * math.log(1 / BORDER_TOLERANCE)))) + 1
    nearest = np.full(instance_map.shape, np.inf)
    second = np.full(instance_map.shape, np.inf)
    for index, box in enumerate(ndimage.find_objects(instance_map)):
        if box is None:  # an id that no pixel carries
            continue
        window = tuple(slice(max(s.start - reach, 0), min(s.stop + reach, size)) for s, size in zip(box, nearest.shape))
        distance = ndimage.distance_transform_edt(instance_map[window] != index + 1)
        near, far = nearest[window], second[window]
        second[window] = np.where(distance < near, near, np.minimum(far, distance))
        nearest[window] = np.minimum(near, distance)
    return nearest + second


def _check_labels(labels, instances):
    if not (np.issubdtype(labels.dtype, np.integer) or np.issubdtype(labels.dtype, np.bool_)):
        if not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels)):
            raise ValueError("unet_weight_map: labels must be integer class or instance ids; got non-integer values.")
    if np.any(labels < 0):
        raise ValueError(f"unet_weight_map: labels must be >= 0; got {labels.min()}.")
    ids = np.unique(labels[labels != 0])
    raw_mask_fix = (
        "For a raw 0/255 mask pass labels // 255, or load it with kfcn.data.folder_dataset(..., label_mode='binary')."
    )
    if instances is False and np.any(ids != 1):
        raise ValueError(
            f"unet_weight_map(instances=False) expects a 0/1 mask; got values {np.unique(labels).tolist()[:5]}. "
            + raw_mask_fix
        )
    if instances is None and len(ids) == 1 and ids[0] != 1:
        raise ValueError(
            f"unet_weight_map: the labels hold 0 and {ids[0]} only: a raw mask, not a 0/1 mask or an instance "
            f"map. {raw_mask_fix} For an instance map with a single object, pass instances=True."
        )
