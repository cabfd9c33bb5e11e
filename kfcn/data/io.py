"""Image reading, re-exported from `kfcn.image_io` (which needs no TensorFlow)."""

from kfcn.image_io import IMAGE_SUFFIXES, as_float32, convert_channels, list_images, read_image

__all__ = ["IMAGE_SUFFIXES", "as_float32", "convert_channels", "list_images", "read_image"]
