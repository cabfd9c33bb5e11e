"""Synthetic touching objects: ellipses that overlap, for instance segmentation.

`touching_ellipses` draws bright elliptical blobs that mostly touch or overlap one another
(each new ellipse is, more often than not, placed against one already drawn), so that a
foreground / background segmentation merges them: telling them apart needs their shapes
(the concave notches where two ellipses meet), not an edge, since the image shows none
between touching objects. `three_class_labels` turns the instance map into the 3-class
target (background, interior, boundary) of the "touching objects -> instances" recipe: a
network learns the boundary band, and a watershed grows the interiors back into whole
objects (`kfcn.instances.instances_from_probabilities`).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from kfcn.arguments import check_integer, is_integer
from kfcn.arrays import one_channel

TOUCH_PROBABILITY = 0.8  # how often a new ellipse is placed against an existing one
TOUCH_DISTANCE = (0.65, 0.95)  # centres' distance, in units of the sum of the two mean radii
OBJECT_BRIGHTNESS = (160.0, 200.0)  # each object's mean grey level: close, so no edge between them
BACKGROUND_BRIGHTNESS = 40.0
BLUR_SIGMA = 1.5  # pixels


def touching_ellipses(shape=(128, 128), count=(8, 16), seed=None, noise=0.05, radius=(6.0, 12.0), min_size=20):
    """A random image of touching and overlapping ellipses, and its instance map.

    `count` ellipses (semi-major axis drawn from `radius`, axis ratio from [0.6, 1], any
    angle) are painted one after another, a later one taking the pixels it shares with
    earlier ones. Four in five are placed against a random earlier ellipse (their
    centres 0.65-0.95 of the sum of their mean radii apart), the rest anywhere in the
    image; no centre comes closer to another than 0.65 of that sum, so overlaps stay
    partial (an ellipse that finds no room in 20 tries is left out). The part
    of an object cut off from its largest piece by a later one becomes background, and
    objects left with fewer than `min_size` pixels are dropped; ids are then 1..K in
    drawing order. The image: each object a slightly different grey level (160-200) with
    a smooth texture, on a dark uneven background (about 40), blurred (sigma 1.5 px),
    plus Gaussian noise, clipped to 0-255. Touching objects meet without any edge.

    Args:
        shape: (height, width).
        count: number of ellipses drawn, an int or a range `(low, high)` (both included);
            fewer may remain (see `min_size`).
        seed: None, an int or a `np.random.Generator`.
        noise: noise std as a fraction of the 8-bit range (0.05: about 13 grey levels).
        radius: `(low, high)` range of the semi-major axis, pixels.
        min_size: the fewest pixels an object keeps; smaller ones are dropped.

    Returns:
        `(image, instances)`: (H, W, 1) float32 raw pixel values in [0, 255], and
        (H, W) int32 object ids (0 = background, 1..K objects).

    Example:
    >>> image, instances = touching_ellipses((64, 64), count=6, seed=0)
    >>> image.shape, image.dtype.name, instances.shape, instances.dtype.name
    ((64, 64, 1), 'float32', (64, 64), 'int32')
    >>> ids = np.unique(instances)
    >>> bool(ids[0] == 0 and np.array_equal(ids[1:], np.arange(1, len(ids))))  # consecutive ids
    True
    """
    height, width = _check_shape(shape)
    low, high = _check_count(count)
    min_radius, max_radius = _check_radius(radius)
    if not (np.isfinite(noise) and noise >= 0):
        raise ValueError(f"touching_ellipses: `noise` is a std in units of the 8-bit range, >= 0; got {noise!r}.")
    min_size = check_integer("min_size", min_size, minimum=1, meaning="a pixel count", caller="touching_ellipses")
    rng = np.random.default_rng(seed)

    rows, cols = np.mgrid[0:height, 0:width].astype("float64")
    instances = np.zeros((height, width), dtype="int32")
    centres, mean_radii = [], []
    for _ in range(int(rng.integers(low, high + 1))):
        major = rng.uniform(min_radius, max_radius)
        minor = major * rng.uniform(0.6, 1.0)
        centre = _place(rng, (height, width), centres, mean_radii, math.sqrt(major * minor))
        if centre is None:
            continue
        angle = rng.uniform(0, math.pi)
        along = (cols - centre[1]) * math.cos(angle) + (rows - centre[0]) * math.sin(angle)
        across = -(cols - centre[1]) * math.sin(angle) + (rows - centre[0]) * math.cos(angle)
        instances[(along / major) ** 2 + (across / minor) ** 2 <= 1] = len(centres) + 1
        centres.append(centre)
        mean_radii.append(math.sqrt(major * minor))
    instances = _clean(instances, min_size)
    return _render(instances, rng, noise), instances


def three_class_labels(instances, boundary_width=2):
    """The 3-class target of an instance map: 0 background, 1 interior, 2 boundary.

    An object pixel is boundary when a pixel of another label (another object or the
    background) lies within `boundary_width` pixels of it (Euclidean distance); every
    other object pixel is interior. Beyond the image's edge the nearest pixel repeats,
    so an object cut by the edge has no boundary there.

    Args:
        instances: (H, W) (or (H, W, 1)) non-negative integer ids, 0 = background.
        boundary_width: the band's width in pixels, an int >= 1.

    Returns:
        (H, W) int32 class map.

    Example:
    >>> instances = np.array([[0, 1, 1, 1, 2, 2, 2]])
    >>> three_class_labels(instances, boundary_width=1)  # the image's edge is no boundary
    array([[0, 2, 1, 2, 2, 1, 1]], dtype=int32)
    """
    boundary_width = check_integer(
        "boundary_width", boundary_width, minimum=1, meaning="a width in pixels", caller="three_class_labels"
    )
    instances = one_channel(instances, "three_class_labels: the instance map")
    if not np.issubdtype(instances.dtype, np.integer) or (instances.size and instances.min() < 0):
        raise ValueError("three_class_labels expects non-negative integer instance ids (0 = background).")
    offsets = np.arange(-boundary_width, boundary_width + 1)
    disc = offsets[:, None] ** 2 + offsets[None, :] ** 2 <= boundary_width**2
    highest = ndimage.maximum_filter(instances, footprint=disc, mode="nearest")
    lowest = ndimage.minimum_filter(instances, footprint=disc, mode="nearest")
    classes = (instances > 0).astype("int32")
    classes[(instances > 0) & ((highest != instances) | (lowest != instances))] = 2
    return classes


def _check_shape(shape):
    if len(shape) != 2 or not all(is_integer(side) and side >= 8 for side in shape):
        raise ValueError(f"touching_ellipses: `shape` is (height, width), ints >= 8; got {shape!r}.")
    return int(shape[0]), int(shape[1])


def _check_count(count):
    low, high = (count, count) if np.ndim(count) == 0 else tuple(count)
    if not all(is_integer(n) for n in (low, high)) or not 1 <= low <= high:
        raise ValueError(
            f"touching_ellipses: `count` is an int >= 1 or a range (low, high), 1 <= low <= high: {count!r}."
        )
    return int(low), int(high)


def _check_radius(radius):
    low, high = (float(r) for r in radius)
    if not (np.isfinite(high) and 0 < low <= high):
        raise ValueError(
            f"touching_ellipses: `radius` is a range (low, high) of pixels, 0 < low <= high; got {radius!r}."
        )
    return low, high


def _place(rng, shape, centres, mean_radii, mean_radius, tries=20):
    """A centre inside the image, mostly against an earlier ellipse, never deep inside one (None: no room)."""
    for _ in range(tries):
        if centres and rng.uniform() < TOUCH_PROBABILITY:
            j = int(rng.integers(len(centres)))
            distance = (mean_radii[j] + mean_radius) * rng.uniform(*TOUCH_DISTANCE)
            direction = rng.uniform(0, 2 * math.pi)
            centre = (centres[j][0] + distance * math.sin(direction), centres[j][1] + distance * math.cos(direction))
        else:
            centre = (rng.uniform(0, shape[0] - 1), rng.uniform(0, shape[1] - 1))
        inside = all(0 <= c <= side - 1 for c, side in zip(centre, shape))
        apart = all(
            math.dist(centre, other) >= TOUCH_DISTANCE[0] * (radius + mean_radius)
            for other, radius in zip(centres, mean_radii)
        )
        if inside and apart:
            return centre
    return None


def _clean(instances, min_size):
    """Keeps each object's largest piece, drops objects under `min_size` pixels, relabels 1..K."""
    cleaned = np.zeros_like(instances)
    kept = 0
    for k in np.unique(instances[instances > 0]):
        pieces, found = ndimage.label(instances == k)
        if found > 1:
            largest = 1 + int(np.argmax(np.bincount(pieces.ravel())[1:]))
            pieces = pieces == largest
        if np.count_nonzero(pieces) >= min_size:
            kept += 1
            cleaned[pieces > 0] = kept
    return cleaned


def _smooth_field(rng, shape, sigma):
    """Smooth random field of unit std."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    return field / max(float(field.std()), 1e-12)


def _render(instances, rng, noise):
    """Grey levels for the objects, a textured background, blur, noise; (H, W, 1) float32 in [0, 255]."""
    brightness = np.concatenate([[BACKGROUND_BRIGHTNESS], rng.uniform(*OBJECT_BRIGHTNESS, instances.max())])
    image = brightness[instances] * (1 + 0.06 * _smooth_field(rng, instances.shape, 3.0))
    image += 8.0 * _smooth_field(rng, instances.shape, 12.0)  # uneven illumination
    image = ndimage.gaussian_filter(image, BLUR_SIGMA)
    image += rng.normal(0.0, noise * 255.0, instances.shape)
    return np.clip(image, 0, 255).astype("float32")[..., None]
