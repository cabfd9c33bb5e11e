"""Synthetic galaxies: Sérsic profiles, and bulge + disk images for multi-output regression.

A Sérsic profile (Sérsic 1963) has surface brightness I(r) = I_e exp(-b_n ((r / r_e)^(1/n) - 1)),
r being the elliptical radius, r_e the half-light radius and b_n the constant that puts half
of the light inside r_e (the solution of P(2n, b_n) = 1/2, P the regularised lower
incomplete gamma function). n = 4 is de Vaucouleurs' bulge, n = 1 an exponential disk. The
total light of an ellipse of axis ratio q is 2 pi n q r_e^2 I_e e^(b_n) Gamma(2n) / b_n^(2n), so a
profile is set by its total flux.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special


def sersic_b(index):
    """b_n: the Sérsic constant that puts half of the light inside the half-light radius.

    Example:
    >>> round(sersic_b(1.0), 4), round(sersic_b(4.0), 4)  # the exponential disk, de Vaucouleurs
    (1.6783, 7.6692)
    """
    if not index > 0:
        raise ValueError(f"The Sérsic index must be positive; got {index!r}.")
    return float(special.gammaincinv(2 * index, 0.5))


def sersic_image(shape, center, radius, index, total_flux, axis_ratio=1.0, angle=0.0, oversample=8):
    """(H, W) float32 image of one Sérsic profile, each pixel its integrated light.

    Each pixel averages `oversample` x `oversample` sub-pixel samples; the 5 x 5 pixels
    around the centre, where an n = 4 profile is steepest, take 8 times as many per side.

    Args:
        shape: (height, width).
        center: (row, col) of the centre, in pixels (pixel centres at integers).
        radius: half-light radius r_e along the major axis, pixels.
        index: Sérsic index n (4: bulge, 1: disk).
        total_flux: the profile's total light over the whole plane (the image holds
            less when the profile reaches beyond it).
        axis_ratio: minor / major axis, in (0, 1].
        angle: position angle of the major axis, radians from the column axis.
        oversample: sub-pixels per side.

    Example:
    >>> disk = sersic_image((64, 64), (32, 32), radius=6, index=1, total_flux=100.0)
    >>> round(float(disk.sum()))  # the rest lies beyond the image
    100
    """
    if not 0 < axis_ratio <= 1:
        raise ValueError(f"axis_ratio is minor / major, in (0, 1]; got {axis_ratio!r}.")
    if radius <= 0:
        raise ValueError(f"The half-light radius must be positive; got {radius!r}.")
    b = sersic_b(index)
    norm = 2 * math.pi * index * axis_ratio * radius**2 * math.exp(b) * math.gamma(2 * index) / b ** (2 * index)
    profile = {"center": center, "radius": radius, "index": index, "b": b, "q": axis_ratio, "angle": angle}
    image = _pixel_light(range(shape[0]), range(shape[1]), oversample, **profile)
    rows = range(max(0, round(center[0]) - 2), min(shape[0], round(center[0]) + 3))
    cols = range(max(0, round(center[1]) - 2), min(shape[1], round(center[1]) + 3))
    if len(rows) and len(cols):
        image[rows.start : rows.stop, cols.start : cols.stop] = _pixel_light(rows, cols, 8 * oversample, **profile)
    return (image * (total_flux / norm)).astype("float32")


def _pixel_light(rows, cols, oversample, center, radius, index, b, q, angle):
    """Mean of the unit-I_e profile over sub-pixel samples of the pixels `rows` x `cols`."""
    offsets = (np.arange(oversample) + 0.5) / oversample - 0.5
    y = (np.asarray(rows, dtype="float64")[:, None] + offsets).ravel() - center[0]
    x = (np.asarray(cols, dtype="float64")[:, None] + offsets).ravel() - center[1]
    y, x = np.meshgrid(y, x, indexing="ij")
    major = x * math.cos(angle) + y * math.sin(angle)
    minor = -x * math.sin(angle) + y * math.cos(angle)
    r = np.sqrt(major**2 + (minor / q) ** 2)
    light = np.exp(-b * ((r / radius) ** (1.0 / index) - 1.0))
    return light.reshape(len(rows), oversample, len(cols), oversample).mean(axis=(1, 3))


def bulge_disk_galaxy(shape=(64, 64), seed=None, noise=0.01):
    """A random galaxy: a de Vaucouleurs bulge (n = 4) plus an exponential disk (n = 1).

    Sizes, fluxes, ellipticities, angles and a small offset of the centre are drawn at
    random; the disk is larger and flatter than the bulge. Gaussian noise of std `noise`
    (in units of the image's peak) is added to the sum.

    Returns:
        `(image (H, W, 1), components (H, W, 2))` float32: the noisy sum, and the clean
        bulge (channel 0) and disk (channel 1). Their sums are the components' fluxes.

    Example:
    >>> image, components = bulge_disk_galaxy(seed=0)
    >>> image.shape, components.shape
    ((64, 64, 1), (64, 64, 2))
    """
    rng = np.random.default_rng(seed)
    height, width = shape
    center = (height / 2 - 0.5 + rng.uniform(-2, 2), width / 2 - 0.5 + rng.uniform(-2, 2))
    side = min(shape)
    disk_radius = rng.uniform(0.08, 0.18) * side
    bulge = sersic_image(
        shape,
        center,
        radius=rng.uniform(0.15, 0.5) * disk_radius,
        index=4.0,
        total_flux=rng.uniform(0.2, 1.0),
        axis_ratio=rng.uniform(0.6, 1.0),
        angle=rng.uniform(0, math.pi),
    )
    disk = sersic_image(
        shape,
        center,
        radius=disk_radius,
        index=1.0,
        total_flux=rng.uniform(0.5, 2.0),
        axis_ratio=rng.uniform(0.25, 1.0),
        angle=rng.uniform(0, math.pi),
    )
    components = np.stack([bulge, disk], axis=-1)
    clean = components.sum(-1)
    image = clean + rng.normal(0.0, noise * float(clean.max()), clean.shape)
    return image[..., None].astype("float32"), components.astype("float32")
