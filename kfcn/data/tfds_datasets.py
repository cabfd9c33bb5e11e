"""TensorFlow Datasets builders that read local files: no download, ever.

Importing this module registers two builders with `tfds`:

- `isbi2012_membranes`: the ISBI 2012 slices. By default the 25-slice copy kfcn ships;
  point `manual_dir` at a folder with `images/` and `labels/` for the full set.
- `image_label_folder`: any folder laid out as `<split>/images` and `<split>/labels`
  (CamVid's `train/`, `val/`), pairs matched by file name, given as `manual_dir`.

Example (offline):

    import tensorflow_datasets as tfds
    import kfcn.data.tfds_datasets  # registers the builders
    ds = tfds.load("isbi2012_membranes", split="train", data_dir="~/tensorflow_datasets")
    config = tfds.download.DownloadConfig(manual_dir="path/to/camvid")
    camvid = tfds.load("image_label_folder", split="val",
                       download_and_prepare_kwargs={"download_config": config})

Examples are dicts `{"image": uint8 (H, W, C), "label": uint8 (H, W, 1), "name": str}`
with the label values as stored (0/255 masks, class indices); `as_pairs` turns them
into the `(image, label)` pairs of `kfcn.data.folder_dataset`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from kfcn.data.folder import pair_files
from kfcn.image_io import read_image
from kfcn.samples import isbi2012_dir


def _features(channels):
    return tfds.features.FeaturesDict(
        {
            "image": tfds.features.Image(shape=(None, None, channels), dtype=np.uint8),
            "label": tfds.features.Image(shape=(None, None, 1), dtype=np.uint8),
            "name": tfds.features.Text(),
        }
    )


def _examples(image_dir, label_dir):
    for image_path, label_path in pair_files(image_dir, label_dir):
        image, label = read_image(image_path, palette_indices=False), read_image(label_path)
        if image.shape[:2] != label.shape[:2]:
            raise ValueError(f"{image_path} and {label_path} differ in size: {image.shape} vs {label.shape}.")
        yield (
            image_path.stem,
            {"image": image.astype(np.uint8), "label": label.astype(np.uint8), "name": image_path.stem},
        )


def _manual_root(dl_manager, default=None):
    try:
        manual = Path(dl_manager.manual_dir)
    except AssertionError:  # tfds asserts when no manual folder was given
        manual = None
    if manual is not None and manual.is_dir() and any(manual.iterdir()):
        return manual
    if default is None:
        raise ValueError(
            "This dataset reads local files only: pass download_config=tfds.download.DownloadConfig("
            "manual_dir='path/to/folder') with <split>/images and <split>/labels inside."
        )
    return default


class Isbi2012Membranes(tfds.core.GeneratorBasedBuilder):
    """ISBI 2012 EM membrane segmentation slices (512x512 grayscale, labels 255 = interior)."""

    VERSION = tfds.core.Version("1.0.0")
    MANUAL_DOWNLOAD_INSTRUCTIONS = "A folder with images/ and labels/ (same file names); default: kfcn's copy."

    def _info(self):
        return self.dataset_info_from_configs(features=_features(1), supervised_keys=("image", "label"))

    def _split_generators(self, dl_manager):
        root = _manual_root(dl_manager, default=isbi2012_dir())
        return {"train": _examples(root / "images", root / "labels")}

    def _generate_examples(self, *args):  # pragma: no cover - generators are built above
        raise NotImplementedError


class ImageLabelFolder(tfds.core.GeneratorBasedBuilder):
    """Any `<split>/images` + `<split>/labels` folder of RGB images, e.g. CamVid."""

    VERSION = tfds.core.Version("1.0.0")
    MANUAL_DOWNLOAD_INSTRUCTIONS = "A folder with <split>/images and <split>/labels sub-folders."

    def _info(self):
        return self.dataset_info_from_configs(features=_features(3), supervised_keys=("image", "label"))

    def _split_generators(self, dl_manager):
        root = _manual_root(dl_manager)
        splits = {p.name: p for p in sorted(root.iterdir()) if (p / "images").is_dir() and (p / "labels").is_dir()}
        if not splits:
            raise ValueError(f"{root} has no <split>/images and <split>/labels sub-folders.")
        return {name: _examples(path / "images", path / "labels") for name, path in splits.items()}

    def _generate_examples(self, *args):  # pragma: no cover
        raise NotImplementedError


def as_pairs(dataset, binary=True):
    """Maps TFDS examples to `(image float32 raw pixel values, label int32)` pairs for `random_crop_pipeline`.

    The image keeps its stored values (0-255), as `folder_dataset` does; with `binary`,
    the label becomes 0/1 (any non-zero value is foreground), else it is kept as stored.

    Example:
    >>> white = tf.fill((2, 2, 1), tf.constant(255, tf.uint8))
    >>> example = {"image": white, "label": white}
    >>> image, label = next(iter(as_pairs(tf.data.Dataset.from_tensors(example))))
    >>> float(image[0, 0, 0]), int(label[0, 0, 0])
    (255.0, 1)
    """

    def convert(example):
        label = tf.cast(example["label"], tf.int32)
        if binary:
            label = tf.cast(label > 0, tf.int32)
        return tf.cast(example["image"], tf.float32), label

    return dataset.map(convert, num_parallel_calls=tf.data.AUTOTUNE)
