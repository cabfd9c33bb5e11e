"""Fixed-size random crops from images of any size, for `model.fit`."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from kfcn.arguments import check_integer, is_integer
from kfcn.data.augment import AUGMENTATIONS, PairedAugmenter, check_value_range
from kfcn.layers import FRAME_INPUT_NAME
from kfcn.names import IMAGE_INPUT_NAME


def random_crop_pipeline(
    dataset,
    crop_size,
    batch_size=2,
    augment=None,
    weight_map=None,
    target_map=None,
    seed=None,
    shuffle_buffer=64,
    repeat=True,
    one_hot=None,
    coordinate_frame=False,
    cache=True,
    value_range=(0, 255),
):
    """Turns `(image, label)` pairs of any sizes into batches of aligned random crops.

    The seed's recipe: train on fixed-size crops, as large as memory allows, with a
    small batch. Each element gets one random crop window, applied to the image,
    the label and the weight map alike, then the paired augmentation. Images smaller
    than the crop are padded by reflection (the label and weights too); an image less
    than half the crop size cannot be reflected and raises an error that names the sizes.

    The stream is a pure function of `seed` and the position in it: crop `i` draws its
    window and augmentation from `(seed, i)`, and each pass over the images is
    shuffled with `seed` (and TensorFlow's global seed, which `keras.utils.set_random_seed`
    sets). Give `model.fit` the callback
    `ResumeCropStream(batches)` and every epoch starts at batch `epoch * steps_per_epoch`,
    so a run resumed by `keras.callbacks.BackupAndRestore` (or with `initial_epoch=`)
    sees the same batches as an uninterrupted run.

    Images are raw pixel values (e.g. 0-255, as `folder_dataset` returns them); the
    pipeline never rescales them.

    Args:
        dataset: a `tf.data.Dataset` of `(image (H, W, C), label (H, W, 1))`
            (from `folder_dataset`, TFDS, or your own). Labels are class indices
            0..K-1 (a raw 0/255 mask is refused where it would give wrong targets:
            `one_hot=` and `weight_map="unet"`), or float maps for regression.
        crop_size: positive int or `(height, width)`.
        batch_size: crops per batch (1, 2, 4 are typical for large crops).
        augment: None, "geometric", "elastic", "intensity", "full" (see
            `kfcn.data.augment.PairedAugmenter`), or a callable
            `(image, maps, seed) -> (image, maps)` where maps stacks label and weights.
        weight_map: None, "unet" (`unet_weight_map` with its defaults, for 0/1
            masks), or a callable `label (H, W) ndarray -> weights (H, W)`; computed
            once per full image (and cached), then cropped with it.
        target_map: None, or a callable `label (H, W) int ndarray -> target (H, W)`
            that replaces the label by a float map (e.g. a density map from a dot
            annotation, `kfcn train --label-mode density`); computed once per full image
            (and cached) like `weight_map`, then cropped and augmented as the label is.
        seed: int for a reproducible stream (shuffling, crops, augmentation).
        shuffle_buffer: images in the shuffle buffer (0 for no shuffling).
        repeat: repeat forever (use `steps_per_epoch` in `fit`); False gives one pass,
            the same crops at every iteration (e.g. for validation).
        one_hot: None (labels as float class values, for sigmoid outputs or sparse
            cross-entropy) or the number of classes K (one-hot labels, for
            Dice/Jaccard); labels must then lie in 0..K-1.
        coordinate_frame: also yield the crop's frame `(top, left, height, width)` as
            input "coordinate_frame", for models with `coordinate_channels=True`.
        cache: cache the decoded images (and weight maps) in memory.
        value_range: `(low, high)`, the range of the raw pixel values ((0, 255) for
            8-bit, (0, 65535) for 16-bit images); used only by the intensity
            augmentation, whose brightness shift and noise are fractions of it.

    Returns:
        A dataset of `(x, y)` or `(x, y, sample_weight)` batches: x `(B, h, w, C)` (or
        a dict with "image" and "coordinate_frame"), y `(B, h, w, 1)` or
        `(B, h, w, one_hot)`, sample_weight `(B, h, w)`.

    Raises:
        ValueError: for sizes or counts that are not positive integers, an unknown
            `augment` or `weight_map`, or a dataset that is not `(image, label)` pairs.
        tf.errors.InvalidArgumentError: while iterating, for an image with NaN or
            infinite pixels, labels outside 0..K-1 (`one_hot=K`) or 0/1
            (`weight_map="unet"`), or an image too small for the crop.

    Example:
    >>> images = tf.data.Dataset.from_tensors((tf.zeros((40, 30, 1)), tf.zeros((40, 30, 1), tf.int32)))
    >>> batches = random_crop_pipeline(images, 16, batch_size=2, augment="geometric", seed=0)
    >>> x, y = next(iter(batches))
    >>> tuple(x.shape), tuple(y.shape)
    ((2, 16, 16, 1), (2, 16, 16, 1))
    """
    crop_h, crop_w = _crop_size(crop_size)
    batch_size = _positive_int(batch_size, "batch_size")
    one_hot = None if one_hot is None else _positive_int(one_hot, "one_hot")
    shuffle_buffer = _positive_int(shuffle_buffer, "shuffle_buffer", allow_zero=True)
    value_range = check_value_range(value_range)
    _check_pairs(dataset)
    augmenter = _augmenter(augment, value_range)
    if seed is not None:
        seed = check_integer("seed", seed, minimum=0, accepted="a non-negative int or None (a random stream)")
    base_seed = tf.constant(int(np.random.randint(0, 2**31 - 1)) if seed is None else int(seed), tf.int64)
    images = _full_images(dataset, one_hot, weight_map, target_map, cache)
    elements, position = _indexed_stream(images, repeat, shuffle_buffer, base_seed, batch_size)

    def crop_one(index, element):
        image, maps = element
        element_seed = tf.stack([base_seed, index])
        crop_seed, augment_seed = tf.unstack(tf.random.experimental.stateless_split(element_seed, 2))
        image, maps, frame = _random_crop(image, maps, crop_h, crop_w, crop_seed)
        if augmenter is not None:
            image, maps = augmenter(image, maps, augment_seed)
        image = tf.ensure_shape(image, (crop_h, crop_w, image.shape[-1]))
        label = tf.ensure_shape(maps[..., :1], (crop_h, crop_w, 1))
        if one_hot:
            label = tf.one_hot(tf.cast(tf.round(label[..., 0]), tf.int32), one_hot)
        x = {IMAGE_INPUT_NAME: image, FRAME_INPUT_NAME: frame} if coordinate_frame else image
        if weight_map is not None:
            return x, label, tf.ensure_shape(maps[..., 1], (crop_h, crop_w))
        return x, label

    batches = elements.map(crop_one, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    batches = batches.batch(batch_size, drop_remainder=repeat).prefetch(tf.data.AUTOTUNE)
    if repeat:
        batches._kfcn_stream_position = position
    return batches


def _augmenter(augment, value_range):
    if isinstance(augment, str):
        return PairedAugmenter(augment, value_range=value_range)
    if augment is None or callable(augment):
        return augment
    raise ValueError(f"`augment` must be None, a callable or one of {AUGMENTATIONS}; got {augment!r}.")


def _full_images(dataset, one_hot, weight_map, target_map, cache):
    """The checked float `(image, maps)` pairs, maps stacking the label (or its target map) and the weights,
    each computed once per full image."""
    max_label = one_hot - 1 if one_hot else 1 if weight_map == "unet" else None
    images = dataset.map(_checked_float_pair(max_label, one_hot), num_parallel_calls=tf.data.AUTOTUNE)
    if target_map is not None:
        if not callable(target_map):
            raise ValueError(f"`target_map` must be None or a callable label -> target map; got {target_map!r}.")
        if weight_map is not None:
            raise ValueError("`target_map` and `weight_map` do not combine: weights are computed from class labels.")
        images = images.map(_per_image_map(target_map, replace_label=True), num_parallel_calls=tf.data.AUTOTUNE)
    if weight_map is not None:
        images = images.map(_weight_map_fn(weight_map), num_parallel_calls=tf.data.AUTOTUNE)
    return images.cache() if cache else images


def _indexed_stream(images, repeat, shuffle_buffer, base_seed, batch_size):
    """`(elements, position)`: `(i, (image, maps))` with i the crop's index in the stream, and the variable
    that ResumeCropStream sets to the batch a new iterator starts at (None without `repeat`)."""
    # Shuffling the repeated stream with a fixed seed (not reshuffled per iterator) makes the
    # image order a function of the seed alone, whichever iterator reads it (Keras peeks once).
    stream = images.repeat() if repeat else images
    if shuffle_buffer:
        stream = stream.shuffle(shuffle_buffer, seed=int(base_seed), reshuffle_each_iteration=False)
    if not repeat:
        return stream.enumerate(), None
    # The first batch of each new iterator is read from `position` when the iterator starts;
    # crop i takes its randomness from (seed, i).
    position = tf.Variable(tf.constant(0, tf.int64), trainable=False, name="crop_stream_position")

    def stream_from(first_batch):
        first = first_batch * batch_size
        return tf.data.Dataset.zip(tf.data.Dataset.range(first, tf.int64.max), stream.skip(first))

    return tf.data.Dataset.range(1).map(lambda _: position.read_value()).flat_map(stream_from), position


class ResumeCropStream(keras.callbacks.Callback):
    """Starts each epoch of `model.fit` at batch `epoch * steps_per_epoch` of a crop stream.

    `random_crop_pipeline` streams are a pure function of (seed, position). Without
    this callback a resumed run (`keras.callbacks.BackupAndRestore`, or `fit` with
    `initial_epoch=`) would start the stream at its first batch again and so train on
    other crops than an uninterrupted run; with it, the run resumed at epoch e reads
    exactly the batches the uninterrupted run read from epoch e on. (BackupAndRestore
    resumes at the start of the last saved epoch, also with `save_freq` in steps.)

    Args:
        batches: the dataset `random_crop_pipeline(..., repeat=True)` returned.

    Example:
    >>> pairs = tf.data.Dataset.from_tensors((tf.zeros((20, 20, 1)), tf.zeros((20, 20, 1), tf.int32)))
    >>> batches = random_crop_pipeline(pairs, 8, batch_size=2, seed=0)
    >>> callbacks = [keras.callbacks.BackupAndRestore("backup_dir"), ResumeCropStream(batches)]
    >>> # model.fit(batches, epochs=10, steps_per_epoch=50, callbacks=callbacks)
    """

    def __init__(self, batches):
        super().__init__()
        self._position = getattr(batches, "_kfcn_stream_position", None)
        if self._position is None:
            raise ValueError(
                "ResumeCropStream takes the dataset returned by kfcn.data.random_crop_pipeline(..., repeat=True) "
                f"itself (not one derived from it); got {type(batches).__name__}."
            )

    def on_epoch_begin(self, epoch, logs=None):
        steps = self.params.get("steps") if self.params else None
        if not steps:
            raise ValueError("ResumeCropStream needs `steps_per_epoch` in model.fit (the crop stream is infinite).")
        self._position.assign(epoch * steps)


def _positive_int(value, name, allow_zero=False):
    if not is_integer(value):
        raise ValueError(f"`{name}` must be an integer, got {value!r} ({type(value).__name__}); e.g. {name}=64.")
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"`{name}` must be {'>= 0' if allow_zero else 'positive'}, got {value}.")
    return int(value)


def _crop_size(crop_size):
    if np.ndim(crop_size) == 0:  # int, NumPy integer (and floats or strings, refused by _positive_int)
        crop_size = (crop_size, crop_size)
    if np.ndim(crop_size) != 1 or len(crop_size) != 2:
        raise ValueError(f"`crop_size` must be an integer or a (height, width) pair of integers, got {crop_size!r}.")
    return tuple(_positive_int(side, "crop_size") for side in crop_size)


def _check_pairs(dataset):
    if not isinstance(dataset, tf.data.Dataset):
        raise ValueError(
            f"random_crop_pipeline takes a tf.data.Dataset of (image, label) pairs, got {type(dataset).__name__}. "
            "Use kfcn.data.folder_dataset, or tf.data.Dataset.from_tensor_slices / from_generator."
        )
    spec = dataset.element_spec
    if not isinstance(spec, tuple) or len(spec) not in (2, 3) or any(part.shape.rank not in (3, None) for part in spec):
        raise ValueError(
            "random_crop_pipeline needs a dataset of (image (H, W, C), label (H, W, 1)) pairs; got elements "
            f"{spec}. Add a channel axis with image[..., None] for 2-D arrays."
        )


def _checked_float_pair(max_label, one_hot):
    if one_hot:
        problem = f"one_hot={one_hot} needs labels in 0..{one_hot - 1}"
    else:
        problem = "weight_map='unet' needs 0/1 masks"
    label_message = (
        f"random_crop_pipeline: {problem}, but a label holds other values (a raw 0/255 mask?). Load masks "
        "with kfcn.data.folder_dataset(..., label_mode='binary'), or map labels to class indices (labels // 255)."
    )

    def convert(image, label, *weights):
        image = tf.debugging.assert_all_finite(
            tf.cast(image, tf.float32),
            "random_crop_pipeline: an image has NaN or infinite pixel values; fix or drop it "
            "(kfcn.data.load_pair names such files)",
        )
        maps = tf.cast(label, tf.float32)
        if max_label is not None:
            checks = [
                tf.debugging.assert_non_negative(maps, message=label_message),
                tf.debugging.assert_less_equal(maps, float(max_label), message=label_message),
            ]
            with tf.control_dependencies(checks):
                maps = tf.identity(maps)
        if weights:
            maps = tf.concat([maps, tf.cast(weights[0], tf.float32)[..., None]], axis=-1)
        return image, maps

    return convert


def _weight_map_fn(weight_map):
    if weight_map == "unet":
        from kfcn.data.weight_map import unet_weight_map

        def compute(label):
            return unet_weight_map(label, instances=False).astype("float32")

    elif callable(weight_map):

        def compute(label):
            return np.asarray(weight_map(label), dtype="float32")

    else:
        raise ValueError(f"`weight_map` must be None, 'unet' or a callable; got {weight_map!r}.")
    return _per_image_map(compute, replace_label=False)


def _per_image_map(compute, replace_label):
    """A tf.data map that computes `compute(label (H, W) int32) -> (H, W)` once per full image, as NumPy, and
    appends it to the maps (weights) or puts it in the label's place (targets)."""

    def apply(image, maps):
        values = tf.numpy_function(
            lambda m: np.asarray(compute(m[..., 0].astype("int32")), dtype="float32"), [maps], tf.float32
        )
        values = tf.reshape(values, tf.shape(maps)[:2])[..., None]
        return image, values if replace_label else tf.concat([maps, values], axis=-1)

    return apply


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
