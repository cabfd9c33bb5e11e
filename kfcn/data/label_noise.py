"""Simulated annotation errors: object contours moved in or out by a few pixels.

A human tracing cell outlines misses the true contour by a pixel or three, one way on one
cell and the other way on the next. `perturb_contours` simulates that on a 0/1 mask:
every connected foreground object is eroded or dilated, each by its own random radius.
Used to measure how much an FCN's accuracy depends on exact contours
(`examples/contour_robustness.py`).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from kfcn.arguments import is_integer
from kfcn.arrays import one_channel


def _disk(radius):
    offsets = np.arange(-radius, radius + 1)
    return offsets[:, None] ** 2 + offsets[None, :] ** 2 <= radius**2


def perturb_contours(mask, shift=(1, 3), seed=None):
    """Erodes or dilates each object of a 0/1 mask by its own random 1-3 px (a disk).

    Objects are the 4-connected foreground regions. Each one, independently, is eroded
    or dilated (probability 1/2 each) by a radius drawn uniformly from the integers in
    `shift`. A pixel that two perturbed objects both reach stays background, and where
    two objects come to touch, the pixels of the first along the line where they meet
    become background: objects that were apart stay apart, so where two cells share a
    thin membrane the membrane moves or thins but does not vanish. An object eroded
    away entirely is lost, as a careless annotator would lose it.

    Args:
        mask: (H, W) or (H, W, 1) array of 0 (background, e.g. membrane) and 1 (objects).
        shift: `(smallest, largest)` radius in pixels, integers >= 1.
        seed: an int (or a `numpy.random.Generator`) for a reproducible perturbation.

    Returns:
        The perturbed mask, (H, W) uint8 of 0 and 1 (the input's shape is not kept).

    Raises:
        ValueError: for values other than 0 and 1 (a 0/255 mask: divide it by 255 first)
            or radii that are not integers 1 <= smallest <= largest.

    Example:
    >>> square = np.zeros((11, 11), np.uint8); square[3:8, 3:8] = 1
    >>> moved = perturb_contours(square, shift=(1, 1), seed=0)
    >>> int(square.sum()), int(moved.sum()) in (9, 45)  # eroded to 3x3, or grown by a radius-1 disk
    (25, True)
    """
    mask = one_channel(mask, "perturb_contours: the mask")
    values = np.unique(mask)
    if not np.isin(values, (0, 1)).all():
        hint = " Divide a 0/255 mask by 255 first." if 255 in values else ""
        raise ValueError(f"perturb_contours takes a 0/1 mask; got values {values[:8].tolist()}.{hint}")
    low, high = shift
    if not all(is_integer(r) for r in shift) or not 1 <= low <= high:
        raise ValueError(f"`shift` is (smallest, largest) integer radii with 1 <= smallest <= largest; got {shift!r}.")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    objects, _ = ndimage.label(mask)
    claims = np.zeros(mask.shape, np.int32)  # how many perturbed objects cover each pixel
    moved_objects = []
    for index, window in enumerate(ndimage.find_objects(objects), start=1):
        radius = int(rng.integers(low, high + 1))
        grow = bool(rng.integers(2))
        # The object's bounding box with room for the disk, clipped to the image.
        box = tuple(slice(max(s.start - radius, 0), min(s.stop + radius, size)) for s, size in zip(window, mask.shape))
        padded = np.pad(objects[box] == index, radius, mode="edge")  # the image edge is not a contour
        moved = (ndimage.binary_dilation if grow else ndimage.binary_erosion)(padded, _disk(radius))
        moved = moved[radius:-radius, radius:-radius]
        claims[box] += moved
        moved_objects.append((box, moved))
    owner = np.zeros(mask.shape, np.int32)
    for index, (box, moved) in enumerate(moved_objects, start=1):
        owner[box][moved & (claims[box] == 1)] = index
    # Two objects that now touch are parted by background where they meet: objects stay apart.
    meeting = np.zeros(mask.shape, bool)
    meeting[:-1] |= (owner[:-1] > 0) & (owner[1:] > 0) & (owner[:-1] != owner[1:])
    meeting[:, :-1] |= (owner[:, :-1] > 0) & (owner[:, 1:] > 0) & (owner[:, :-1] != owner[:, 1:])
    return ((owner > 0) & ~meeting).astype(np.uint8)
