"""Reading images and label maps from disk with clear errors (NumPy only: no TensorFlow)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")


def read_image(path, palette_indices=True):
    """Reads a PNG, TIFF (8/16-bit, incl. multi-page first page), JPEG or BMP as (H, W, C) raw pixel values.

    The array keeps the file's dtype and values (0-255 for 8-bit, 0-65535 for 16-bit).

    Palette PNGs are returned as their palette indices (class-index labels) when
    `palette_indices` is True.

    Raises:
        ValueError: naming the file, if it cannot be read.

    Example:
    >>> import tempfile, os
    >>> from PIL import Image
    >>> path = os.path.join(tempfile.mkdtemp(), "x.png")
    >>> Image.fromarray(np.zeros((4, 6), np.uint8)).save(path)
    >>> read_image(path).shape
    (4, 6, 1)
    """
    path = Path(path)
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            array = tifffile.imread(path, key=0)
        else:
            from PIL import Image

            with Image.open(path) as image:
                if image.mode == "P" and not palette_indices:
                    image = image.convert("RGB")
                array = np.asarray(image)
    except Exception as error:  # PIL and tifffile raise many types for corrupt files
        raise ValueError(f"Cannot read image file {path}: {error}. Is it a valid, complete image?") from error
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3:
        raise ValueError(f"{path}: expected a 2-D image with optional channels, got an array of shape {array.shape}.")
    return array


def as_float32(image):
    """Returns the image as float32 raw pixel values: the numbers stored in the file, not rescaled.

    kfcn never rescales images: 8-bit pixels stay 0-255, 16-bit pixels 0-65535; the
    model carries its own input scaling (`input_range=` of the model builders).

    Example:
    >>> as_float32(np.array([[0, 65535]], np.uint16)).tolist()
    [[0.0, 65535.0]]
    """
    return np.asarray(image).astype("float32")


def list_images(folder):
    """Image files of a folder keyed by file stem, sorted; two files with one stem (`a.png`, `a.tif`) raise.

    Example:
    >>> from kfcn.samples import isbi2012_dir
    >>> list(list_images(isbi2012_dir() / "images"))[:2]
    ['slice_00', 'slice_01']
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"Folder {folder} does not exist.")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"Folder {folder} has no image files ({', '.join(IMAGE_SUFFIXES)}).")
    by_stem = {}
    for path in files:
        if path.stem in by_stem:
            raise ValueError(
                f"Folder {folder} has two files named {path.stem!r}: {by_stem[path.stem].name} and {path.name}. "
                "Files pair by name without extension; remove or rename one of them."
            )
        by_stem[path.stem] = path
    return by_stem


def convert_channels(image, channels, path="image"):
    """Converts an (H, W, C) float image to 1 (luma) or 3 (RGB) channels; alpha is dropped.

    Example:
    >>> convert_channels(np.ones((2, 2, 3), "float32"), 1).shape
    (2, 2, 1)
    """
    if image.shape[-1] == channels:
        return image
    if channels == 1 and image.shape[-1] in (3, 4):
        return (image[..., :3] @ np.array([0.299, 0.587, 0.114], "float32"))[..., None]
    if channels == 3 and image.shape[-1] == 1:
        return np.repeat(image, 3, axis=-1)
    if channels == 3 and image.shape[-1] == 4:
        return image[..., :3]
    raise ValueError(f"{path}: cannot convert {image.shape[-1]} channels to {channels}.")
