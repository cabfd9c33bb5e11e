"""Density maps from dot annotations, for counting by regression (Lempitsky & Zisserman 2010)."""

from __future__ import annotations

import numpy as np


def density_map(points, shape, sigma=2.0):
    """A map whose integral over any region is the number of objects in it.

    Each dot becomes a Gaussian of standard deviation `sigma` pixels, truncated at
    4σ and at the image border and renormalised there, so the map sums to exactly
    the number of dots, also for dots near the border.

    Args:
        points: (N, 2) array of (row, column) dot positions (float or int).
        shape: (height, width) of the map.
        sigma: Gaussian width in pixels.

    Returns:
        (height, width) float32 density map.

    Example:
    >>> d = density_map([(0, 0), (10, 12)], (20, 30), sigma=2.0)
    >>> round(float(d.sum()), 4)
    2.0
    """
    height, width = shape
    density = np.zeros((height, width), dtype="float64")
    points = np.asarray(points, dtype="float64").reshape(-1, 2)
    outside = (points[:, 0] < 0) | (points[:, 0] > height - 1) | (points[:, 1] < 0) | (points[:, 1] > width - 1)
    if np.any(outside):
        raise ValueError(
            f"{int(outside.sum())} dot(s) lie outside the {height}x{width} image, e.g. {points[outside][0]}."
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


def dots_from_image(dot_image, color=(255, 0, 0)):
    """(row, col) positions of pure-colour dots, as in the VGG cells annotations.

    Example:
    >>> image = np.zeros((4, 4, 3), np.uint8); image[1, 2] = (255, 0, 0)
    >>> dots_from_image(image).tolist()
    [[1, 2]]
    """
    dot_image = np.asarray(dot_image)
    return np.argwhere(np.all(dot_image[..., :3] == np.asarray(color), axis=-1))
