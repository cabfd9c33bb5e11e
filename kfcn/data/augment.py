"""Paired augmentation for tf.data: the same geometric transform on image and label maps.

Geometry acts on the image and, through the same random draw, on the label maps
(label, and weight map when present), which are resampled with nearest neighbours
only, so class values are never interpolated. Intensity changes touch the image only.

Every random draw is stateless, derived from the pipeline's seed and the sample's
position in the stream, so a seeded pipeline gives the same crops on every run even
with parallel `map`. That is why the small rotations and zooms are done here, with the
same coordinate sampler as the elastic deformation, rather than with Keras'
`RandomRotation`/`RandomZoom`: those draw from a stateful seed generator, whose order
under a parallel tf.data `map` is not reproducible.
"""

from __future__ import annotations

import math

import tensorflow as tf

AUGMENTATIONS = ("geometric", "elastic", "intensity", "full")


def check_value_range(value_range):
    """`(low, high)` as floats; raises a ValueError naming the fix unless low < high.

    Example:
    >>> check_value_range((0, 255))
    (0.0, 255.0)
    """
    try:
        low, high = (float(value) for value in value_range)
    except (TypeError, ValueError):
        low = high = None
    if low is None or not low < high:
        raise ValueError(
            f"`value_range` must be (low, high) with low < high: the range of the raw pixel values, e.g. (0, 255) "
            f"for 8-bit or (0, 65535) for 16-bit images; got {value_range!r}."
        )
    return low, high


def _stateless_uniform(seed, shape=(), minval=0.0, maxval=1.0, dtype=tf.float32):
    return tf.random.stateless_uniform(shape, seed=seed, minval=minval, maxval=maxval, dtype=dtype)


def flips_and_rot90(image, maps, seed):
    """Random horizontal/vertical flip and a random multiple of 90° (square crops only for 90°/270°).

    Example:
    >>> image, maps = flips_and_rot90(tf.zeros((8, 8, 1)), tf.ones((8, 8, 1)), tf.constant([0, 1]))
    >>> tuple(image.shape), float(tf.reduce_min(maps))
    ((8, 8, 1), 1.0)
    """
    seeds = tf.random.experimental.stateless_split(seed, 3)
    stacked = tf.concat([image, maps], axis=-1)
    stacked = tf.cond(_stateless_uniform(seeds[0]) < 0.5, lambda: tf.reverse(stacked, [1]), lambda: stacked)
    stacked = tf.cond(_stateless_uniform(seeds[1]) < 0.5, lambda: tf.reverse(stacked, [0]), lambda: stacked)
    square = tf.equal(tf.shape(stacked)[0], tf.shape(stacked)[1])
    k = tf.where(square, _stateless_uniform(seeds[2], (), 0, 4, tf.int32), 0)
    stacked = tf.image.rot90(stacked, k)
    channels = image.shape[-1]
    return stacked[..., :channels], stacked[..., channels:]


def horizontal_flip(image, maps, seed):
    """A left-right mirror of image and maps together, with probability 1/2: for scenes that have an up and a
    down (road scenes such as CamVid), where vertical flips and turns would show what never occurs.

    Example:
    >>> image = tf.reshape(tf.range(4.0), (1, 4, 1))
    >>> rows = {tuple(horizontal_flip(image, image, tf.constant([0, s]))[0].numpy().ravel().tolist()) for s in range(8)}
    >>> sorted(rows)
    [(0.0, 1.0, 2.0, 3.0), (3.0, 2.0, 1.0, 0.0)]
    """
    stacked = tf.concat([image, maps], axis=-1)
    stacked = tf.cond(_stateless_uniform(seed) < 0.5, lambda: tf.reverse(stacked, [1]), lambda: stacked)
    channels = image.shape[-1]
    return stacked[..., :channels], stacked[..., channels:]


def elastic_deformation(image, maps, seed, grid=3, sigma=10.0):
    """The U-Net paper's elastic deformation: random displacements on a coarse grid.

    Displacement vectors are drawn from N(0, sigma) pixels on a `grid` x `grid` grid,
    interpolated bicubically to every pixel; the image is resampled bilinearly, the
    label maps with nearest neighbours, with reflection at the border.

    Example:
    >>> labels = tf.cast(tf.random.uniform((32, 32, 1)) > 0.5, tf.float32)
    >>> _, warped = elastic_deformation(tf.zeros((32, 32, 1)), labels, tf.constant([1, 2]))
    >>> sorted(set(warped.numpy().ravel().tolist())) in ([0.0, 1.0], [0.0], [1.0])  # never interpolated
    True
    """
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    coarse = tf.random.stateless_normal((1, grid, grid, 2), seed=seed, stddev=sigma)
    displacement = tf.image.resize(coarse, (height, width), method="bicubic")[0]
    rows, cols = _pixel_grid(height, width)
    return _resample(image, maps, rows + displacement[..., 0], cols + displacement[..., 1])


def rotate_and_zoom(image, maps, seed, max_angle=0.05 * 2 * math.pi, max_zoom=0.1):
    """A random rotation in [-max_angle, max_angle] (radians) and scale in 1 ± max_zoom about the centre.

    Example:
    >>> image, maps = rotate_and_zoom(tf.ones((16, 16, 3)), tf.zeros((16, 16, 2)), tf.constant([3, 4]))
    >>> tuple(image.shape), tuple(maps.shape)
    ((16, 16, 3), (16, 16, 2))
    """
    seeds = tf.random.experimental.stateless_split(seed, 2)
    angle = _stateless_uniform(seeds[0], (), -max_angle, max_angle)
    scale = _stateless_uniform(seeds[1], (), 1 - max_zoom, 1 + max_zoom)
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    rows, cols = _pixel_grid(height, width)
    centre_row = (tf.cast(height, tf.float32) - 1) / 2
    centre_col = (tf.cast(width, tf.float32) - 1) / 2
    dy, dx = rows - centre_row, cols - centre_col
    cos, sin = tf.cos(angle) / scale, tf.sin(angle) / scale
    return _resample(image, maps, centre_row + cos * dy - sin * dx, centre_col + sin * dy + cos * dx)


def _pixel_grid(height, width):
    rows = tf.cast(tf.range(height), tf.float32)[:, None] + tf.zeros((1, width))
    cols = tf.cast(tf.range(width), tf.float32)[None, :] + tf.zeros((height, 1))
    return rows, cols


def _resample(image, maps, rows, cols):
    return _bilinear(image, rows, cols), _nearest(maps, rows, cols)


def _reflect(coordinate, size):
    size = tf.cast(size, tf.float32)
    period = 2.0 * (size - 1.0)
    coordinate = tf.math.floormod(coordinate, tf.maximum(period, 1.0))
    return tf.where(coordinate > size - 1.0, period - coordinate, coordinate)


def _gather(values, rows, cols):
    return tf.gather_nd(values, tf.stack([rows, cols], axis=-1))


def _nearest(values, rows, cols):
    shape = tf.shape(values)
    rows = tf.cast(tf.round(_reflect(rows, shape[0])), tf.int32)
    cols = tf.cast(tf.round(_reflect(cols, shape[1])), tf.int32)
    return _gather(values, rows, cols)


def _bilinear(values, rows, cols):
    shape = tf.shape(values)
    rows, cols = _reflect(rows, shape[0]), _reflect(cols, shape[1])
    top, left = tf.floor(rows), tf.floor(cols)
    dy, dx = (rows - top)[..., None], (cols - left)[..., None]
    top, left = tf.cast(top, tf.int32), tf.cast(left, tf.int32)
    bottom = tf.minimum(top + 1, shape[0] - 1)
    right = tf.minimum(left + 1, shape[1] - 1)
    upper = _gather(values, top, left) * (1 - dx) + _gather(values, top, right) * dx
    lower = _gather(values, bottom, left) * (1 - dx) + _gather(values, bottom, right) * dx
    return upper * (1 - dy) + lower * dy


def intensity(image, seed, brightness=0.1, contrast=0.2, noise=0.02, value_range=(0, 255)):
    """Random brightness, contrast and Gaussian noise on the image only.

    `image` holds raw pixel values; `brightness` (the largest shift) and `noise` (the
    noise's standard deviation) are fractions of the pixel range `value_range`, so the
    same recipe fits 8-bit (0, 255), 16-bit (0, 65535) and [0, 1] images. `contrast`
    scales the deviations from the mean by a factor in 1 ± contrast. An amount of 0 skips that change.

    Example:
    >>> shifted = intensity(tf.fill((4, 4, 1), 128.0), tf.constant([0, 0]), contrast=0.0, noise=0.0)
    >>> bool(tf.reduce_all(tf.abs(shifted - 128.0) <= 0.1 * 255))
    True
    """
    low, high = value_range
    scale = float(high) - float(low)
    seeds = tf.random.experimental.stateless_split(seed, 3)
    if brightness:
        image = tf.image.stateless_random_brightness(image, brightness * scale, seeds[0])
    if contrast:
        image = tf.image.stateless_random_contrast(image, 1 - contrast, 1 + contrast, seeds[1])
    if noise:
        image = image + tf.random.stateless_normal(tf.shape(image), seeds[2], stddev=noise * scale)
    return image


class PairedAugmenter:
    """Applies a named augmentation recipe to `(image, maps)` with a per-sample seed.

    Recipes: "geometric" (flips, 90° rotations, rotations by up to `rotation` of a
    turn and zooms by up to `zoom`),
    "elastic" (geometric plus the elastic deformation), "intensity" (image only),
    "full" (all of them). `value_range` is the range of the raw pixel values, used
    only by the intensity changes (see `intensity`).

    Example:
    >>> augmenter = PairedAugmenter("geometric")
    >>> image, maps = augmenter(tf.zeros((8, 8, 1)), tf.zeros((8, 8, 1)), tf.constant([1, 2]))
    >>> tuple(image.shape)
    (8, 8, 1)
    """

    def __init__(self, recipe, rotation=0.05, zoom=0.1, elastic_sigma=10.0, value_range=(0, 255)):
        if recipe not in AUGMENTATIONS:
            raise ValueError(f"`augment` must be None, a callable or one of {AUGMENTATIONS}; got {recipe!r}.")
        self.value_range = check_value_range(value_range)
        self.recipe = recipe
        self.geometric = recipe in ("geometric", "elastic", "full")
        self.elastic = recipe in ("elastic", "full")
        self.intensity = recipe in ("intensity", "full")
        self.max_angle = rotation * 2 * math.pi
        self.zoom = zoom
        self.elastic_sigma = elastic_sigma

    def __call__(self, image, maps, seed):
        seeds = tf.random.experimental.stateless_split(seed, 4)
        if self.geometric:
            image, maps = flips_and_rot90(image, maps, seeds[0])
            if self.max_angle or self.zoom:
                image, maps = rotate_and_zoom(image, maps, seeds[1], self.max_angle, self.zoom)
        if self.elastic:
            image, maps = elastic_deformation(image, maps, seeds[2], sigma=self.elastic_sigma)
        if self.intensity:
            image = intensity(image, seeds[3], value_range=self.value_range)
        return image, maps
