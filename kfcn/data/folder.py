"""Image/label folders as tf.data datasets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from kfcn.image_io import ChannelConversions, as_float32, common_dtype, convert_channels, list_images, read_image

LABEL_MODES = ("binary", "index")


def load_pair(
    image_path, label_path, label_mode="binary", num_classes=None, ignore_class=None, channels=None, conversions=None
):
    """Reads and checks one image/label pair; returns `(image float32 (H, W, C), label int32 (H, W, 1))`.

    The image holds the raw pixel values as stored in the file (0-255 for 8-bit,
    0-65535 for 16-bit), as float32; kfcn never rescales images (the model carries
    its input scaling). The label holds class indices: 0/1 for "binary". Files are
    read by `kfcn.image_io.read_image` (its table says how alpha, palettes, CMYK and
    multi-page TIFFs are handled).

    Args:
        image_path, label_path: the files.
        label_mode: "binary" (0 = background, any one other value such as 255 or 1 =
            foreground) or "index" (class-index or palette PNG: values are classes).
        num_classes: for "index", the number of classes; values must be below it or
            equal `ignore_class`.
        ignore_class: a label value to keep as is (e.g. CamVid's void, 11).
        channels: convert the image to 1 (grayscale) or 3 (RGB) channels (see
            `kfcn.image_io.convert_channels`).
        conversions: a `kfcn.image_io.ChannelConversions` that records a conversion
            (for one line per run); without one, a conversion is issued as a warning.

    Raises:
        ValueError: naming the file, for unreadable files, sizes that differ, NaN or
            infinite pixel values, or label values outside the declared classes.

    Example:
    >>> from kfcn.samples import isbi2012_dir
    >>> image, label = load_pair(isbi2012_dir() / "images/slice_00.png", isbi2012_dir() / "labels/slice_00.png")
    >>> image.dtype, float(image.max()) > 1, sorted(set(label.ravel().tolist()))  # raw 0-255 pixels
    (dtype('float32'), True, [0, 1])
    """
    image = read_image(image_path, palette_indices=False)
    label = read_image(label_path)
    if image.shape[:2] != label.shape[:2]:
        raise ValueError(
            f"Image {image_path} is {image.shape[1]}x{image.shape[0]} but its label {label_path} is "
            f"{label.shape[1]}x{label.shape[0]}: an image and its label must have the same size."
        )
    if label.shape[-1] != 1:
        if np.all(label == label[..., :1]):
            label = label[..., :1]
        else:
            raise ValueError(
                f"Label {label_path} has {label.shape[-1]} differing channels; labels must be single-channel "
                "class indices, 0/255 masks or palette PNGs."
            )
    if channels is not None and image.shape[-1] != channels:
        image = convert_channels(image, channels, image_path, conversions)
    image = as_float32(image)
    if not np.all(np.isfinite(image)):
        raise ValueError(
            f"Image {image_path} has {int(np.sum(~np.isfinite(image)))} NaN or infinite pixel value(s); "
            "fix or exclude the file (e.g. replace them with np.nan_to_num before saving)."
        )
    values = np.unique(label)
    if label_mode == "binary":
        foreground = values[values != 0]
        if len(foreground) > 1:
            raise ValueError(
                f"Label {label_path} has {len(values)} values ({_listed(values.tolist())}), but a binary mask has 0 "
                "and one foreground value (e.g. 255). Use label_mode='index' with num_classes for several classes."
            )
        label = (label != 0).astype("int32")
    elif label_mode == "index":
        if num_classes is None:
            raise ValueError("label_mode='index' needs num_classes.")
        allowed = set(range(num_classes)) | ({ignore_class} if ignore_class is not None else set())
        unknown = sorted(set(values.tolist()) - allowed)
        if unknown:
            raise ValueError(
                f"Label {label_path} has values {_listed(unknown)} outside the declared classes 0..{num_classes - 1}"
                f"{f' and ignore_class {ignore_class}' if ignore_class is not None else ''}. Fix num_classes "
                "or ignore_class, or the file."
            )
        label = label.astype("int32")
    else:
        raise ValueError(f"`label_mode` must be one of {LABEL_MODES}, got {label_mode!r}.")
    return image, label


def _listed(values, shown=8):
    """`0, 1, 2, ... (250 in all)` for long lists, so that an error stays one readable line."""
    text = ", ".join(map(str, values[:shown]))
    return text if len(values) <= shown else f"{text}, ... ({len(values)} in all)"


def folder_dataset(
    image_dir, label_dir, label_mode="binary", num_classes=None, ignore_class=None, channels=None, verbose=True
):
    """Pairs image and label files by name and returns them as a tf.data dataset.

    Files pair by stem (`slice_00.png` with `slice_00.png` or `slice_00.tif`); images
    may differ in size from one pair to the next. Every pair is read and checked once
    up front (with a progress bar), so a bad file fails here, by name, rather than
    half-way through training; the arrays are then held in memory. The images must share
    one dtype (bit depth): a folder that mixes 8-bit and 16-bit files is refused, naming
    one of each, since a model takes one raw pixel range. Images converted to `channels`
    are reported in one warning, not one per file.

    Args:
        image_dir, label_dir: the folders.
        label_mode, num_classes, ignore_class, channels: see `load_pair`.
        verbose: show a progress bar.

    Returns:
        A `tf.data.Dataset` of `(image float32 (H, W, C) raw pixel values, label int32 (H, W, 1))`.

    Raises:
        ValueError: an image without a label (or the reverse), two files with the same
            name in one folder (`a.png`, `a.tif`), unreadable files, mixed bit depths,
            sizes that differ, NaN or infinite pixels, unknown label values.

    Example:
    >>> from kfcn.samples import isbi2012_dir
    >>> ds = folder_dataset(isbi2012_dir() / "images", isbi2012_dir() / "labels", verbose=False)
    >>> image, label = next(iter(ds))
    >>> tuple(image.shape), tuple(label.shape)
    ((512, 512, 1), (512, 512, 1))
    """
    pairs = pair_files(image_dir, label_dir)
    common_dtype([image for image, _ in pairs])  # from the headers: mixed bit depths fail before any reading
    conversions = ChannelConversions()
    arrays = [
        load_pair(image, label, label_mode, num_classes, ignore_class, channels, conversions)
        for image, label in tqdm(
            pairs, desc=f"reading {Path(image_dir).name}", disable=None if verbose else True, unit="pair"
        )
    ]
    conversions.warn()
    depth = arrays[0][0].shape[-1]
    for (image, _), (path, _) in zip(arrays, pairs):
        if image.shape[-1] != depth:
            raise ValueError(
                f"{path} has {image.shape[-1]} channel(s) but {pairs[0][0]} has {depth}: a model takes one channel "
                "count. Save the files with one (e.g. PIL's Image.convert('L') or 'RGB'), or pass channels=1 or 3 "
                "to convert them as they are read."
            )
    signature = (
        tf.TensorSpec((None, None, depth), tf.float32),
        tf.TensorSpec((None, None, 1), tf.int32),
    )
    return tf.data.Dataset.from_generator(lambda: iter(arrays), output_signature=signature)


def pair_files(image_dir, label_dir):
    """`[(image_path, label_path), ...]` paired by file stem; raises on unpaired files.

    Example:
    >>> from kfcn.samples import isbi2012_dir
    >>> pairs = pair_files(isbi2012_dir() / "images", isbi2012_dir() / "labels")
    >>> len(pairs), pairs[0][0].name, pairs[0][1].name
    (25, 'slice_00.png', 'slice_00.png')
    """
    images, labels = list_images(image_dir), list_images(label_dir)
    unlabelled = sorted(set(images) - set(labels))
    orphans = sorted(set(labels) - set(images))
    if unlabelled:
        raise ValueError(
            f"{len(unlabelled)} image(s) in {image_dir} have no label in {label_dir}: "
            f"{', '.join(str(images[s].name) for s in unlabelled[:5])}. Labels pair with images by file name."
        )
    if orphans:
        raise ValueError(
            f"{len(orphans)} label(s) in {label_dir} have no image in {image_dir}: "
            f"{', '.join(str(labels[s].name) for s in orphans[:5])}."
        )
    return [(images[stem], labels[stem]) for stem in sorted(images)]
