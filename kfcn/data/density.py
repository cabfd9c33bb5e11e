"""Density maps from dot annotations, for counting by regression (Lempitsky & Zisserman 2010)."""

from __future__ import annotations

import numpy as np


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
    if not (np.isscalar(sigma) and np.isfinite(sigma) and sigma > 0):
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
    try:
        height, width = (int(size) for size in shape)
        valid = all(int(size) == size for size in shape) and height > 0 and width > 0
    except (TypeError, ValueError):
        valid = False
    if not valid:
        raise ValueError(f"density_map: shape must be (height, width) with positive integers, got {shape!r}.")
    return height, width


def dots_from_image(dot_image, color=(255, 0, 0)):
    """(row, col) positions of pure-colour dots, as in the VGG cells annotations.

    Example:
    >>> image = np.zeros((4, 4, 3), np.uint8); image[1, 2] = (255, 0, 0)
    >>> dots_from_image(image).tolist()
    [[1, 2]]
    """
    dot_image = np.asarray(dot_image)
    return np.argwhere(np.all(dot_image[..., :3] == np.asarray(color), axis=-1))
