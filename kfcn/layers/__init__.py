"""kfcn's custom layers, written with `keras.ops` so they run on every backend."""

from kfcn.layers.channel_affine import ChannelAffine
from kfcn.layers.coordinate_channels import FRAME_INPUT_NAME, CoordinateChannels, whole_image_frame
from kfcn.layers.crop_to_match import CropToMatch
from kfcn.layers.input_size_check import InputSizeCheck, size_problem
from kfcn.layers.max_pooling_with_argmax2d import MaxPoolingWithArgmax2D
from kfcn.layers.max_unpooling2d import MaxUnpooling2D

__all__ = [
    "FRAME_INPUT_NAME",
    "ChannelAffine",
    "CoordinateChannels",
    "CropToMatch",
    "InputSizeCheck",
    "MaxPoolingWithArgmax2D",
    "MaxUnpooling2D",
    "size_problem",
    "whole_image_frame",
]
