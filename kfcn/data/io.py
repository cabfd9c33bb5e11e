"""Image reading, re-exported from `kfcn.image_io` (which needs no TensorFlow)."""

from kfcn.image_io import (
    IMAGE_SUFFIXES,
    ChannelConversions,
    as_float32,
    check_bit_depth,
    common_dtype,
    convert_channels,
    list_images,
    pixel_range,
    read_image,
    read_model_input,
    stored_dtype,
)

__all__ = [
    "IMAGE_SUFFIXES",
    "ChannelConversions",
    "as_float32",
    "check_bit_depth",
    "common_dtype",
    "convert_channels",
    "list_images",
    "pixel_range",
    "read_image",
    "read_model_input",
    "stored_dtype",
]
