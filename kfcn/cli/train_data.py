"""The data of a `kfcn train` run: image/label (or dot) pairs as tf.data datasets, the random crop
batches with their augmentation and pixel weights, the validation batches, and the fixed batches on
which `--precise-bn` recomputes the batch-norm statistics.
"""

from __future__ import annotations

import math

from kfcn.cli.train_options import BIT_DEPTH_FLAG, pixel_range


def class_weight_values(config, train):
    """The class weights a run applies (a list of `num_classes` floats, the ignore class 0), or None.

    Explicit weights as given; "median-frequency" (and its square root) from the training
    pairs' labels only (`kfcn.training.median_frequency_weights`), unless a resumed run
    recorded them.
    """
    choice = config["class_weights"]
    if choice == "none":
        return None
    if config.get("class_weight_values") is not None:
        return [float(weight) for weight in config["class_weight_values"]]
    if choice in ("median-frequency", "sqrt-median-frequency"):
        from kfcn.training import median_frequency_weights

        labels = (label.numpy()[..., 0] for _, label in train)
        power = 0.5 if choice.startswith("sqrt") else 1.0
        weights = median_frequency_weights(labels, config["num_classes"], config["ignore_class"], power)
    else:
        weights = list(choice)
    ignore = config["ignore_class"]
    return [0.0 if index == ignore else float(weight) for index, weight in enumerate(weights)]


def data_pairs(config, channels=None):
    """(training pairs, validation pairs or None, channels) as tf.data datasets of raw images and int labels."""
    from kfcn.data import folder_dataset

    label_args = (config["label_mode"], config["num_classes"], config["ignore_class"])
    read_folders = _dot_pairs if config["label_mode"] == "density" else folder_dataset
    if config["tfds"]:
        import tensorflow_datasets as tfds

        from kfcn.data.tfds_datasets import as_pairs

        def load(split):
            try:
                dataset = tfds.load(config["tfds"], split=split, data_dir=config["tfds_dir"])
            except Exception as error:  # TFDS raises many kinds (not found, not prepared, bad split)
                raise ValueError(f"TFDS {config['tfds']!r} split {split!r}: {' '.join(str(error).split())}") from None
            dtype = dataset.element_spec["image"].dtype
            if dtype.name != "uint8" and config["input_range"] is None:
                raise ValueError(
                    f"TFDS {config['tfds']!r} images are {dtype.name}, not 8-bit: give their raw pixel range with "
                    f"{BIT_DEPTH_FLAG} (e.g. 0,65535 for 16-bit images)."
                )
            return as_pairs(dataset, binary=config["label_mode"] == "binary")

        train = load(config["split"])
        validation = load(config["val_split"]) if config["val_split"] else None
    else:
        train = read_folders(config["images"], config["labels"], *label_args, channels=channels)
        validation = None
        if config["val_images"]:
            validation = read_folders(config["val_images"], config["val_labels"], *label_args, channels=channels)
    if validation is None and config["val_fraction"] > 0 and not config["val_split"]:
        count = sum(1 for _ in train)
        held_out = math.ceil(count * config["val_fraction"])
        if held_out >= count:
            raise ValueError(
                f"{count} training image(s) leave none for training after holding out {held_out} for validation; "
                "add images, give --val-images/--val-labels, or pass --val-fraction 0."
            )
        train, validation = train.take(count - held_out), train.skip(count - held_out)
    image, _ = next(iter(train))
    return train, validation, int(image.shape[-1])


def _dot_pairs(image_dir, label_dir, *label_args, channels=None):
    """(raw float32 image, dot mask uint8 (H, W, 1)) pairs of two folders, every file read and checked up front
    (`kfcn.data.density.dot_mask` says which pixels are dots); `folder_dataset`'s checks on the images."""
    import numpy as np
    import tensorflow as tf

    from kfcn.data.density import dot_mask
    from kfcn.data.folder import pair_files
    from kfcn.image_io import ChannelConversions, as_float32, common_dtype, convert_channels, read_image

    pairs = pair_files(image_dir, label_dir)
    common_dtype([image for image, _ in pairs])
    conversions, arrays = ChannelConversions(), []
    for image_path, label_path in pairs:
        image = read_image(image_path, palette_indices=False)
        if channels is not None and image.shape[-1] != channels:
            image = convert_channels(image, channels, image_path, conversions)
        image = as_float32(image)
        dots = read_image(label_path, palette_indices=False)
        if image.shape[:2] != dots.shape[:2]:
            raise ValueError(
                f"Image {image_path} is {image.shape[1]}x{image.shape[0]} but its dot annotation {label_path} is "
                f"{dots.shape[1]}x{dots.shape[0]}: an image and its dots must have the same size."
            )
        if not np.all(np.isfinite(image)):
            raise ValueError(f"Image {image_path} has NaN or infinite pixel values; fix or exclude the file.")
        if arrays and image.shape[-1] != arrays[0][0].shape[-1]:
            raise ValueError(
                f"{image_path} has {image.shape[-1]} channel(s) but {pairs[0][0]} has {arrays[0][0].shape[-1]}: a "
                "model takes one channel count."
            )
        arrays.append((image, dot_mask(dots, label_path)[..., None]))
    conversions.warn()
    signature = (
        tf.TensorSpec((None, None, arrays[0][0].shape[-1]), tf.float32),
        tf.TensorSpec((None, None, 1), tf.uint8),
    )
    return tf.data.Dataset.from_generator(lambda: iter(arrays), output_signature=signature)


def density_targets(config):
    """The pipeline's `target_map`: a dot mask -> its density map (`--density-sigma`), once per image."""
    import functools

    from kfcn.data.density import density_from_mask

    return functools.partial(density_from_mask, sigma=float(config["density_sigma"]))


def with_density_targets(dataset, target_map):
    """Whole-image (image, density map) pairs from (image, dot mask) pairs, for validation."""
    import tensorflow as tf

    def convert(image, mask):
        density = tf.numpy_function(lambda m: target_map(m[..., 0]), [mask], tf.float32)
        return image, tf.reshape(density, tf.shape(mask)[:2])[..., None]

    return dataset.map(convert)


def validation_batches(validation, multiple, replicas=1):
    """Whole validation images, cropped at the bottom/right to a size the model takes, one per batch.

    On several devices each batch holds its image once per device, so that the batch
    splits evenly; every score and the mean loss are unchanged by the repetition. The
    dataset's length is declared: Keras warns "Your input ran out of data" at the end of a
    first evaluation over a dataset of unknown length.
    """
    import tensorflow as tf

    def crop(image, label):
        height = tf.shape(image)[0] // multiple * multiple
        width = tf.shape(image)[1] // multiple * multiple
        return image[:height, :width], tf.cast(label[:height, :width], tf.float32)

    def repeat(image, label):
        return tf.repeat(image[None], replicas, axis=0), tf.repeat(label[None], replicas, axis=0)

    count = sum(1 for _ in validation)
    return validation.map(crop).map(repeat).cache().apply(tf.data.experimental.assert_cardinality(count))


def held_out_description(config, validation):
    """One line saying which images score the epochs (and so pick model.keras)."""
    if validation is None:
        return "no validation data: model.keras is the epoch with the best training score"
    if config["val_images"]:
        return f"validation: the images in {config['val_images']}"
    if config["tfds"]:
        return (
            f"validation: TFDS {config['tfds']} split {config['val_split'] or 'the last files of ' + config['split']}"
        )
    from kfcn.data.folder import pair_files

    names = [image.name for image, _ in pair_files(config["images"], config["labels"])]
    held_out = names[len(names) - math.ceil(len(names) * config["val_fraction"]) :]
    shown = ", ".join(held_out[:8]) + (", ..." if len(held_out) > 8 else "")
    return f"validation: {len(held_out)} held-out image(s), the last {config['val_fraction']:.0%} by name: {shown}"


def check_image_sizes(config):
    """Every training image takes the crop (reflection padding reaches about twice a side), checked
    from the files' headers before any work; a TFDS dataset is checked as it streams."""
    if not config["images"]:
        return
    from PIL import Image

    from kfcn.data.folder import pair_files

    crop = config["crop"]
    for image_path, _ in pair_files(config["images"], config["labels"]):
        try:
            with Image.open(image_path) as image:
                width, height = image.size
        except OSError:
            continue  # the pipeline's reader names unreadable files
        if 2 * min(height - 1, width - 1) + 1 < crop:
            raise ValueError(
                f"{image_path} ({width}x{height}) is too small for --crop {crop}: reflection padding reaches at "
                f"most {2 * min(height - 1, width - 1) + 1} px. Use --crop {max(1, 2 * min(height, width) - 1)} "
                "or less (a size the model takes), or leave the small images out."
            )


def _augmentation(name):
    """--augment as random_crop_pipeline takes it: None, a PairedAugmenter recipe or a kfcn.data.augment function."""
    from kfcn.data.augment import flips_and_rot90, horizontal_flip

    return {"none": None, "flips": flips_and_rot90, "hflip": horizontal_flip}.get(name, name)


def pixel_weights(config, train):
    """`(class weights or None, the crop pipeline's weight_map)`: the U-Net border map, or per-class
    weights (recorded in config.json, so a resumed run reads the same ones back)."""
    from kfcn.training import class_weight_map

    weight_map = None if config["weight_map"] == "none" else config["weight_map"]
    weights = class_weight_values(config, train)
    if weights is not None:
        config["class_weight_values"] = weights
        weight_map = class_weight_map(weights, config["ignore_class"])
    return weights, weight_map


def _augmentation_range(config, model):
    """The pixel range intensity augmentation scales with: the model's, else the data's where it matters."""
    from kfcn.inference import input_range

    value_range = input_range(model)
    if value_range is None:  # a model without input scaling: the data's range, where augmentation needs one
        value_range = pixel_range(config) if config["augment"] in ("intensity", "full") else (0, 255)
    return value_range


def crop_batches(config, model, train, weight_map, target_map):
    from kfcn.data import random_crop_pipeline

    return random_crop_pipeline(
        train,
        config["crop"],
        batch_size=config["batch"],
        augment=_augmentation(config["augment"]),
        weight_map=weight_map,
        target_map=target_map,
        seed=config["seed"],
        value_range=_augmentation_range(config, model),
    )


def statistics_batches(config, model, train, option="precise_bn"):
    """--precise-bn N (or --final-precise-bn N, `option`): the N batches of training crops (augmented as in
    training, from a stream of their own seed) on which the batch-norm statistics are recomputed; the same
    batches each epoch, each resume and at the end (the first N of one stream, whichever option asks)."""
    count = config[option]
    if not count:
        return None
    from kfcn.data import random_crop_pipeline

    check_statistics_option(config, model, option)
    crops = random_crop_pipeline(
        train,
        config["crop"],
        batch_size=config["batch"],
        augment=_augmentation(config["augment"]),
        seed=config["seed"] + 1,  # not the training crops' stream, which stays as it was
        cache=False,  # only the N batches are kept
        value_range=_augmentation_range(config, model),
    )
    return crops.map(lambda x, *_: x).take(count).cache()


def check_statistics_option(config, model, option):
    """Refuses --precise-bn N or --final-precise-bn N (`option`, N > 0) where there are no statistics to recompute
    or they cannot be recomputed."""
    from kfcn.batch_norm import batch_norm_layers

    count, flag = config[option], f"--{option.replace('_', '-')}"
    if not count:
        return
    if not batch_norm_layers(model):
        raise ValueError(
            f"{flag} {count}: {model.name} has no batch-normalisation layer that training updates, so there are no "
            f"statistics to recompute; leave {flag} at 0."
        )
    if config["devices"] == "all":
        raise ValueError(
            f"{flag} recomputes the statistics on one device; it does not combine with --devices all yet. "
            "Drop one of them."
        )
