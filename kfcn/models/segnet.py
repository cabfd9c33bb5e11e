"""SegNet (Badrinarayanan et al. 2015): an encoder-decoder that upsamples with pooling indices."""

from __future__ import annotations

import keras

from kfcn.arguments import check_integer, check_integers
from kfcn.models.blocks import UPSAMPLING, check_choice
from kfcn.models.decoders import skip_decoder
from kfcn.models.encoders import conv_encoder
from kfcn.models.heads import prediction_head, resolve_head
from kfcn.models.inputs import check_input_shape, check_multiple, model_inputs

VGG16_CONVS = (2, 2, 3, 3, 3)


def segnet(
    input_shape=(None, None, 3),
    num_classes=12,
    filters=64,
    depth=5,
    convs_per_level=None,
    kernel_size=3,
    filter_growth=2,
    upsampling="indices",
    batch_norm=True,
    head=None,
    coordinate_channels=False,
    extra_inputs=None,
    input_range=(0, 255),
    logits=False,
    name="segnet",
):
    """Builds SegNet: a VGG16-style encoder whose decoder unpools with the encoder's argmax.

    Each encoder level (2, 2, 3, 3, 3 convolutions at 64, 128, 256, 512, 512 filters,
    with batch normalisation) ends in a 2x2 max pooling that records its argmax; the
    mirrored decoder puts values back at those positions (`kfcn.layers.MaxUnpooling2D`)
    and convolves. Because unpooling restores the exact pre-pooling size, any input
    of at least `2**depth` pixels works, including sizes that become odd on the way
    down (CamVid's 360x480 with 4 or 5 poolings). Upsampling by "transpose" or
    "replicate" is available for comparison; those need multiples of `2**depth`.

    Args:
        input_shape: `(height, width, channels)`; sizes may be None.
        num_classes: output channels.
        filters: filters of the first level; level k has `filters * min(filter_growth**k, 8)`.
        depth: number of poolings (5 in SegNet; SegNet-Basic uses 4).
        convs_per_level: per level, shallowest first (default VGG16's 2, 2, 3, 3, 3).
        kernel_size: of every convolution (3 in SegNet; 7 in SegNet-Basic).
        filter_growth: factor of the filters from one level to the next (2 in SegNet, up to
            8 x `filters`; 1 in SegNet-Basic, 64 filters at every level).
        upsampling: "indices" (SegNet), "transpose" or "replicate".
        batch_norm, head, coordinate_channels, extra_inputs, input_range, logits, name:
            as for `unet`.

    Returns:
        A functional `keras.Model`.

    Example:
    >>> model = segnet((360, 480, 3), num_classes=12, filters=8, depth=4)
    >>> model.output_shape
    (None, 360, 480, 12)
    >>> basic = segnet((360, 480, 3), 11, filters=64, depth=4, convs_per_level=(1, 1, 1, 1),
    ...                kernel_size=7, filter_growth=1)  # SegNet-Basic
    >>> tuple(basic.get_layer("encoder4_conv1").kernel.shape)
    (7, 7, 64, 64)
    """
    check_input_shape(input_shape, name)
    depth = check_integer("depth", depth, minimum=1, caller=name)
    kernel_size = check_integer("kernel_size", kernel_size, minimum=1, caller=name)
    filter_growth = check_integer("filter_growth", filter_growth, minimum=1, caller=name)
    filters = check_integer("filters", filters, minimum=1, meaning="of the first level", caller=name)
    if convs_per_level is not None:
        convs_per_level = check_integers("convs_per_level", convs_per_level, depth, caller=name, count_rule="depth")
    check_choice(upsampling, UPSAMPLING, "upsampling")
    head = resolve_head(head, num_classes)
    size_rule = (1, 0, 2**depth) if upsampling == "indices" else (2**depth, 0, 2**depth)
    check_multiple(input_shape, size_rule[0], name, minimum=size_rule[2])
    convs = list(convs_per_level or (VGG16_CONVS[:depth] if depth <= 5 else VGG16_CONVS + (3,) * (depth - 5)))
    level_filters = [filters * min(filter_growth**level, 8) for level in range(depth)]
    downsampling = "maxpool_argmax" if upsampling == "indices" else "maxpool"

    inputs, x = model_inputs(input_shape, extra_inputs, coordinate_channels, input_range, size_rule, name)
    encoded = conv_encoder(
        x,
        level_filters,
        convs,
        downsampling,
        "same",
        batch_norm,
        bottom_block=False,
        kernel_size=kernel_size,
        name="encoder",
    )
    x = skip_decoder(
        encoded,
        level_filters,
        convs,
        upsampling,
        "same",
        batch_norm,
        concat_skips=False,
        halve_last_conv=True,
        kernel_size=kernel_size,
        name="decoder",
    )
    outputs = prediction_head(x, num_classes, head, logits=logits)
    return keras.Model(inputs, outputs, name=name)
