"""Fixed-size random crops from images of any size, for `model.fit`."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from kfcn.data.augment import PairedAugmenter
from kfcn.layers import FRAME_INPUT_NAME
from kfcn.models.inputs import IMAGE_INPUT_NAME


def random_crop_pipeline(
    dataset,
    crop_size,
    batch_size=2,
    augment=None,
    weight_map=None,
    seed=None,
    shuffle_buffer=64,
    repeat=True,
    one_hot=None,
    coordinate_frame=False,
    cache=True,
):
    """Turns `(image, label)` pairs of any sizes into batches of aligned random crops.

    The seed's recipe: train on fixed-size crops, as large as memory allows, with a
    small batch. Each element gets one random crop window, applied to the image,
    the label and the weight map alike, then the paired augmentation. Images smaller
    than the crop are padded by reflection (the label and weights too); an image less
    than half the crop size cannot be reflected and raises an error that names the sizes.

    Args:
        dataset: a `tf.data.Dataset` of `(image (H, W, C) float, label (H, W, 1))`
            (from `folder_dataset`, TFDS, or your own).
        crop_size: int or `(height, width)`.
        batch_size: crops per batch (1, 2, 4 are typical for large crops).
        augment: None, "geometric", "elastic", "intensity", "full" (see
            `kfcn.data.augment.PairedAugmenter`), or a callable
            `(image, maps, seed) -> (image, maps)` where maps stacks label and weights.
        weight_map: None, "unet" (`unet_weight_map` with its defaults, for binary
            masks), or a callable `label (H, W) ndarray -> weights (H, W)`; computed
            once per full image (and cached), then cropped with it.
        seed: int for a reproducible stream (shuffling, crops, augmentation).
        shuffle_buffer: images in the shuffle buffer (0 for no shuffling).
        repeat: repeat forever (use `steps_per_epoch` in `fit`).
        one_hot: None (labels as float class values, for sigmoid outputs or sparse
            cross-entropy) or the number of classes (one-hot labels, for Dice/Jaccard).
        coordinate_frame: also yield the crop's frame `(top, left, height, width)` as
            input "coordinate_frame", for models with `coordinate_channels=True`.
        cache: cache the decoded images (and weight maps) in memory.

    Returns:
        A dataset of `(x, y)` or `(x, y, sample_weight)` batches: x `(B, h, w, C)` (or
        a dict with "image" and "coordinate_frame"), y `(B, h, w, 1)` or
        `(B, h, w, one_hot)`, sample_weight `(B, h, w)`.

    Example:
    >>> images = tf.data.Dataset.from_tensors((tf.zeros((40, 30, 1)), tf.zeros((40, 30, 1), tf.int32)))
    >>> batches = random_crop_pipeline(images, 16, batch_size=2, augment="geometric", seed=0)
    >>> x, y = next(iter(batches))
    >>> tuple(x.shape), tuple(y.shape)
    ((2, 16, 16, 1), (2, 16, 16, 1))
    """
    crop_h, crop_w = (crop_size, crop_size) if isinstance(crop_size, int) else tuple(crop_size)
    augmenter = PairedAugmenter(augment) if isinstance(augment, str) else augment
    base_seed = int(np.random.randint(0, 2**31 - 1)) if seed is None else int(seed)

    dataset = dataset.map(_as_float_pair, num_parallel_calls=tf.data.AUTOTUNE)
    with_weights = weight_map is not None
    if with_weights:
        dataset = dataset.map(_weight_map_fn(weight_map), num_parallel_calls=tf.data.AUTOTUNE)
    if cache:
        dataset = dataset.cache()
    if shuffle_buffer:
        dataset = dataset.shuffle(shuffle_buffer, seed=base_seed, reshuffle_each_iteration=True)
    if repeat:
        dataset = dataset.repeat()

    def crop_one(index, element):
        image, maps = element
        element_seed = tf.stack([tf.constant(base_seed, tf.int64), index])
        crop_seed, augment_seed = tf.unstack(tf.random.experimental.stateless_split(element_seed, 2))
        image, maps, frame = _random_crop(image, maps, crop_h, crop_w, crop_seed)
        if augmenter is not None:
            image, maps = augmenter(image, maps, augment_seed)
        image = tf.ensure_shape(image, (crop_h, crop_w, image.shape[-1]))
        label = tf.ensure_shape(maps[..., :1], (crop_h, crop_w, 1))
        if one_hot:
            label = tf.one_hot(tf.cast(tf.round(label[..., 0]), tf.int32), one_hot)
        x = {IMAGE_INPUT_NAME: image, FRAME_INPUT_NAME: frame} if coordinate_frame else image
        if with_weights:
            return x, label, tf.ensure_shape(maps[..., 1], (crop_h, crop_w))
        return x, label

    dataset = dataset.enumerate().map(crop_one, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.batch(batch_size, drop_remainder=repeat).prefetch(tf.data.AUTOTUNE)


def _as_float_pair(image, label, *weights):
    maps = tf.cast(label, tf.float32)
    if weights:
        maps = tf.concat([maps, tf.cast(weights[0], tf.float32)[..., None]], axis=-1)
    return tf.cast(image, tf.float32), maps


def _weight_map_fn(weight_map):
    if weight_map == "unet":
        from kfcn.data.weight_map import unet_weight_map

        def compute(label):
            return unet_weight_map(label > 0).astype("float32")

    elif callable(weight_map):

        def compute(label):
            return np.asarray(weight_map(label), dtype="float32")

    else:
        raise ValueError(f"`weight_map` must be None, 'unet' or a callable; got {weight_map!r}.")

    def add_weights(image, maps):
        weights = tf.numpy_function(lambda m: compute(m[..., 0].astype("int32")), [maps], tf.float32)
        weights = tf.reshape(weights, tf.shape(maps)[:2])
        return image, tf.concat([maps, weights[..., None]], axis=-1)

    return add_weights


def _random_crop(image, maps, crop_h, crop_w, seed):
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    big_enough = tf.debugging.assert_greater_equal(
        2 * tf.minimum(height - 1, width - 1) + 1,
        tf.maximum(crop_h, crop_w),
        message=(
            f"An image is too small for {crop_h}x{crop_w} crops: reflection padding needs the image to be at "
            "least about half the crop size. Use smaller crops or resize the small images."
        ),
    )
    with tf.control_dependencies([big_enough]):
        pad_h, pad_w = tf.maximum(crop_h - height, 0), tf.maximum(crop_w - width, 0)
    pad_top, pad_left = pad_h // 2, pad_w // 2
    padding = [[pad_top, pad_h - pad_top], [pad_left, pad_w - pad_left], [0, 0]]
    image = tf.pad(image, padding, mode="REFLECT")
    maps = tf.pad(maps, padding, mode="REFLECT")
    seeds = tf.random.experimental.stateless_split(seed, 2)
    top = tf.random.stateless_uniform((), seeds[0], 0, tf.shape(image)[0] - crop_h + 1, tf.int32)
    left = tf.random.stateless_uniform((), seeds[1], 0, tf.shape(image)[1] - crop_w + 1, tf.int32)
    frame = tf.cast(tf.stack([top - pad_top, left - pad_left, height, width]), tf.float32)
    return (
        image[top : top + crop_h, left : left + crop_w],
        maps[top : top + crop_h, left : left + crop_w],
        frame,
    )
