"""Density maps from dot annotations, for counting by regression (Lempitsky & Zisserman 2010)."""

from __future__ import annotations

import numpy as np

from kfcn.arguments import is_integer


def density_map(points, shape, sigma=2.0):
    """A map whose integral over any region is the number of objects in it.

    Each dot becomes a Gaussian of standard deviation `sigma` pixels, truncated at
    4σ and at the image border and renormalised there, so the map sums to exactly
    the number of dots, also for dots near the border.

    Args:
        points: (N, 2) array of (row, column) dot positions (float or int), inside
            the image (0 <= row <= height - 1, 0 <= column <= width - 1); N may be 0.
        shape: (height, width) of the map.
        sigma: Gaussian width in pixels, > 0.

    Returns:
        (height, width) float32 density map.

    Raises:
        ValueError: for `sigma <= 0`, points not of shape (N, 2) or not finite, and
            points outside the image (clip or drop them first: a dot outside the image
            has no place in its map, and dropping it silently would change the count).

    Example:
    >>> d = density_map([(0, 0), (10, 12)], (20, 30), sigma=2.0)
    >>> round(float(d.sum()), 4)
    2.0
    """
    height, width = _check_shape(shape)
    if isinstance(sigma, (bool, np.bool_)) or not (np.isscalar(sigma) and np.isfinite(sigma) and sigma > 0):
        raise ValueError(f"density_map: sigma must be a positive number of pixels, got {sigma!r}.")
    density = np.zeros((height, width), dtype="float64")
    try:
        points = np.asarray(points, dtype="float64")
    except (TypeError, ValueError):  # ragged lists, non-numbers
        points = None
    if points is not None and points.size == 0:
        points = points.reshape(0, 2)
    if points is None or points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(
            "density_map: points must be an (N, 2) array of (row, column) positions, got "
            f"{'a ragged or non-numeric list' if points is None else f'shape {points.shape}'}. "
            "For (x, y) pairs, swap the columns: points[:, ::-1]."
        )
    if not np.all(np.isfinite(points)):
        raise ValueError("density_map: points contain NaN or infinite coordinates; drop those dots first.")
    outside = (points[:, 0] < 0) | (points[:, 0] > height - 1) | (points[:, 1] < 0) | (points[:, 1] > width - 1)
    if np.any(outside):
        raise ValueError(
            f"{int(outside.sum())} dot(s) lie outside the {height}x{width} image, e.g. {points[outside][0]}. "
            "Points are (row, column) with 0 <= row <= height - 1; drop or clip those dots first."
        )
    radius = int(np.ceil(4 * sigma))
    for row, col in points:
        top, bottom = max(int(row) - radius, 0), min(int(row) + radius + 1, height)
        left, right = max(int(col) - radius, 0), min(int(col) + radius + 1, width)
        rows = np.arange(top, bottom)[:, None] - row
        cols = np.arange(left, right)[None, :] - col
        kernel = np.exp(-(rows**2 + cols**2) / (2 * sigma**2))
        density[top:bottom, left:right] += kernel / kernel.sum()
    return density.astype("float32")


def _check_shape(shape):
    if isinstance(shape, np.ndarray):
        shape = shape.tolist()
    pair = isinstance(shape, (tuple, list)) and len(shape) == 2
    if not (pair and all(is_integer(side) and side > 0 for side in shape)):
        raise ValueError(f"density_map: shape must be (height, width), two positive ints, got {shape!r}.")
    return int(shape[0]), int(shape[1])


def dots_from_image(dot_image, color=(255, 0, 0)):
    """(row, col) positions of pure-colour dots, as in the VGG cells annotations.

    Example:
    >>> image = np.zeros((4, 4, 3), np.uint8); image[1, 2] = (255, 0, 0)
    >>> dots_from_image(image).tolist()
    [[1, 2]]
    """
    dot_image = np.asarray(dot_image)
    return np.argwhere(np.all(dot_image[..., :3] == np.asarray(color), axis=-1))


def dot_mask(label, source="label"):
    """Where the dots of a dot-annotation image are: a 0/1 mask, one 1 per annotated object.

    One rule, whatever the file: a colour image (three or more channels that differ
    somewhere, e.g. the VGG cells' `NNNdots.png`) marks a dot with a pure red
    (255, 0, 0) pixel, as `dots_from_image` reads it; a single-channel or grey image
    (every channel equal) marks a dot with any non-zero pixel. A colour image with
    non-black pixels that are not pure red is refused: its dots cannot be told from
    its other marks. An alpha channel is ignored.

    Args:
        label: (H, W), (H, W, 1) or (H, W, C >= 3) array of the annotation image.
        source: the file's name, for the error message.

    Returns:
        (H, W) uint8 mask, 1 at each dot (`np.argwhere(mask)` gives the (row, column) dots).

    Raises:
        ValueError: for a colour image whose non-black pixels are not all pure red, or
            an array of another shape.

    Example:
    >>> dots = np.zeros((3, 4, 3), np.uint8); dots[1, 2] = (255, 0, 0)
    >>> np.argwhere(dot_mask(dots)).tolist(), np.argwhere(dot_mask(np.eye(2) * 7)).tolist()
    ([[1, 2]], [[0, 0], [1, 1]])
    """
    label = np.asarray(label)
    if label.ndim == 3 and label.shape[-1] in (2, 4):  # grey + alpha, RGB + alpha
        label = label[..., :-1]
    if label.ndim == 3 and label.shape[-1] == 1:
        label = label[..., 0]
    if label.ndim == 3 and label.shape[-1] == 3 and np.all(label == label[..., :1]):
        label = label[..., 0]  # grey stored as RGB
    if label.ndim == 2:
        return (label != 0).astype(np.uint8)
    if label.ndim != 3 or label.shape[-1] != 3:
        raise ValueError(
            f"Dot annotation {source} has shape {label.shape}; dot images are single-channel (a non-zero pixel "
            "a dot) or RGB (a pure red pixel a dot)."
        )
    red = np.all(label == np.asarray((255, 0, 0), label.dtype), axis=-1)
    other = np.any(label != 0, axis=-1) & ~red
    if np.any(other):
        row, column = np.argwhere(other)[0]
        raise ValueError(
            f"Dot annotation {source} is a colour image with {int(other.sum())} non-black pixel(s) that are not "
            f"pure red (255, 0, 0), e.g. {label[row, column].tolist()} at row {row}, column {column}: a dot is "
            "either a pure red pixel of an RGB image or a non-zero pixel of a single-channel one. Keep only the "
            "red dots (black elsewhere), or save the dots as a single-channel image."
        )
    return red.astype(np.uint8)


def density_from_mask(mask, sigma=2.0):
    """The density map of a dot mask (`dot_mask`): `density_map` of its non-zero pixels.

    What `kfcn train --label-mode density` trains towards; `random_crop_pipeline(target_map=...)`
    computes it once per full image, before cropping, so a dot near a crop's edge is
    shared between the crops that hold its Gaussian.

    Args:
        mask: (H, W) array, non-zero at each dot.
        sigma: Gaussian width in pixels, > 0.

    Returns:
        (H, W) float32 map that sums to the number of dots.

    Example:
    >>> mask = np.zeros((9, 9), np.uint8); mask[4, 4] = mask[0, 8] = 1
    >>> round(float(density_from_mask(mask, sigma=1.5).sum()), 4)
    2.0
    """
    mask = np.asarray(mask)
    if mask.ndim == 3 and mask.shape[-1] == 1:
        mask = mask[..., 0]
    return density_map(np.argwhere(mask != 0), mask.shape[:2], sigma=sigma)
