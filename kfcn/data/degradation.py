"""Synthetic degraded/clean pairs for restoration training (deblurring, denoising, upscaling)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from kfcn.arguments import check_integer


def degrade(image, blur_sigma=(0.5, 2.0), noise_std=(0.0, 0.05), downsample=1, seed=None):
    """Returns `(degraded, clean)`: blur with a random kernel, optional downsampling, noise.

    The blur kernel is an anisotropic Gaussian with random widths in `blur_sigma` and a
    random orientation; downsampling by an integer factor averages blocks and then
    replicates back to the input size (so input and target keep the same size, as an
    image-to-image network needs); noise is Gaussian with a random std in `noise_std`.

    Args:
        image: (H, W) or (H, W, C) image, raw pixel values or any float scale.
        blur_sigma: (min, max) Gaussian std in pixels, or None for no blur.
        noise_std: (min, max) noise std in the image's own units (the default suits
            [0, 1] images: multiply by 255 for raw 8-bit pixels), or None for no noise.
        downsample: integer factor (1 for none).
        seed: int or numpy Generator for reproducibility.

    Returns:
        `(degraded, clean)`, float32, both of the input's shape.

    Example:
    >>> clean = np.zeros((32, 32)); clean[16, 16] = 1.0
    >>> degraded, target = degrade(clean, noise_std=None, seed=0)
    >>> bool(degraded[16, 16] < 1.0), bool(np.isclose(degraded.sum(), 1.0, atol=1e-3))
    (True, True)
    """
    downsample = check_integer(
        "downsample", downsample, minimum=1, meaning="an integer factor, 1 for none", caller="degrade"
    )
    for name, bounds in (("blur_sigma", blur_sigma), ("noise_std", noise_std)):
        if bounds is not None and (len(tuple(bounds)) != 2 or not 0 <= bounds[0] <= bounds[1]):
            raise ValueError(f"degrade: `{name}` is (min, max) with 0 <= min <= max, or None; got {bounds!r}.")
    rng = np.random.default_rng(seed)
    clean = np.asarray(image, dtype="float32")
    if not np.all(np.isfinite(clean)):
        raise ValueError("degrade: the image contains NaN or infinite values.")
    degraded = clean.astype("float64")
    squeeze = degraded.ndim == 2
    if squeeze:
        degraded = degraded[..., None]
    if blur_sigma is not None:
        kernel = _random_gaussian_kernel(rng, *blur_sigma)
        degraded = np.stack(
            [ndimage.convolve(degraded[..., c], kernel, mode="reflect") for c in range(degraded.shape[-1])], -1
        )
    if downsample > 1:
        height, width = degraded.shape[:2]
        h, w = height // downsample * downsample, width // downsample * downsample
        blocks = degraded[:h, :w].reshape(h // downsample, downsample, w // downsample, downsample, -1).mean((1, 3))
        upsampled = np.repeat(np.repeat(blocks, downsample, 0), downsample, 1)
        degraded = np.pad(upsampled, ((0, height - h), (0, width - w), (0, 0)), mode="edge")
    if noise_std is not None:
        degraded = degraded + rng.normal(0.0, rng.uniform(*noise_std), degraded.shape)
    if squeeze:
        degraded = degraded[..., 0]
    return degraded.astype("float32"), clean


def _random_gaussian_kernel(rng, min_sigma, max_sigma):
    sigma_a, sigma_b = rng.uniform(min_sigma, max_sigma, 2)
    theta = rng.uniform(0, np.pi)
    radius = int(np.ceil(3 * max(sigma_a, sigma_b)))
    y, x = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    u = np.cos(theta) * x + np.sin(theta) * y
    v = -np.sin(theta) * x + np.cos(theta) * y
    kernel = np.exp(-(u**2) / (2 * sigma_a**2) - v**2 / (2 * sigma_b**2))
    return kernel / kernel.sum()
