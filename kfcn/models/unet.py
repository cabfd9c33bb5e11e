"""U-Net (Ronneberger et al. 2015) and its improved variants."""

from __future__ import annotations

import keras

from kfcn.arguments import check_integer, check_integers
from kfcn.models.blocks import DOWNSAMPLING, UPSAMPLING, check_choice
from kfcn.models.decoders import skip_decoder
from kfcn.models.encoders import BACKBONE_STRIDE, backbone_encoder, conv_encoder
from kfcn.models.heads import prediction_head, resolve_head
from kfcn.models.inputs import check_input_shape, check_multiple, model_inputs
from kfcn.models.sizes import unet_valid_input_size, unet_valid_output_size


def unet(
    input_shape=(None, None, 1),
    num_classes=2,
    filters=64,
    depth=4,
    padding="same",
    downsampling="maxpool",
    upsampling="transpose",
    backbone=None,
    backbone_weights=None,
    backbone_trainable=True,
    batch_norm=False,
    dropout=0.0,
    head=None,
    coordinate_channels=False,
    extra_inputs=None,
    input_range=(0, 255),
    logits=False,
    name="unet",
):
    """Builds a U-Net: the published network, a "same"-padded one, or an improved variant.

    `unet((572, 572, 1), 2, padding="valid")` is exactly the network of Ronneberger
    et al. 2015: 31,030,658 parameters, 572x572 in, 388x388 out, skip maps
    centre-cropped before concatenation; predict larger images with the overlap-tile
    strategy (`kfcn.inference.predict_tiled`). The improvements of the design are
    options: `downsampling="strided"` (learned stride-2 convolutions instead of
    pooling), `upsampling="transpose"` or `"replicate"` (nearest-neighbour replication
    plus a 2x2 convolution) or `"indices"` (SegNet's pooling-index unpooling), and a
    keras.applications encoder (`backbone="mobilenet_v2"`, `"resnet50"`,
    `"efficientnetb0"`, ...).

    Args:
        input_shape: `(height, width, channels)`; sizes may be None (any size the
            strides allow: multiples of `2**depth` for "same" padding, see
            `kfcn.models.unet_valid_output_size` for "valid").
        num_classes: output channels (classes, 1 for a binary mask, or values for
            `head="regression"`).
        filters: filters of the first level (doubled at each level), or a list of
            `depth + 1` counts. With a backbone: the decoder's shallowest level
            has `filters // 4`, doubling towards the bottom (64 -> 16 … 256).
        depth: number of downsamplings (ignored with a backbone, which has 5).
        padding: "same" or "valid" (the published network).
        downsampling: "maxpool", "strided" (stride-2 convolutions) or
            "maxpool_argmax" (implied by `upsampling="indices"`).
        upsampling: "transpose", "replicate" or "indices".
        backbone: None, or a keras.applications network name (see
            `kfcn.models.encoders.BACKBONES`); the input size must then be a multiple of 32.
        backbone_weights: None or "imagenet" (downloads unless cached). ImageNet weights
            expect their family's `keras.applications.<family>.preprocess_input`, not the
            [0, 1] scaling of `input_range`: build with `input_range=None` and preprocess
            the images yourself (EfficientNet rescales inside and takes raw 0-255 pixels).
        backbone_trainable: False freezes the backbone.
        batch_norm: batch normalisation after every convolution.
        dropout: dropout rate at the end of the contracting path (0.5 in the paper).
        head: "semantic" (softmax), "binary" (one sigmoid channel) or "regression"
            (linear); default: binary for 1 channel, else semantic.
        coordinate_channels: add pixel-coordinate channels (adds a "coordinate_frame" input).
        extra_inputs: `{name: channels}` of further input maps concatenated with the image.
        input_range: `(low, high)` of the raw pixel values the model takes (default 8-bit,
            (0, 255); (0, 65535) for 16-bit); a `Rescaling` layer maps it to [0, 1] inside
            the graph, so callers, TF Serving and TFLite clients send pixels as stored.
            None: no scaling (values fed as given, e.g. already normalised data).
        logits: True makes the head linear (logits) for `from_logits=True` losses.
        name: the model's name.

    Returns:
        A functional `keras.Model`.

    Example:
    >>> model = unet((572, 572, 1), num_classes=2, padding="valid")
    >>> model.count_params(), model.output_shape
    (31030658, (None, 388, 388, 2))
    """
    check_input_shape(input_shape, name)
    depth = check_integer("depth", depth, minimum=1, caller=name)
    levels = None if backbone is not None else depth + 1
    filters = check_integers("filters", filters, levels, caller=name, count_rule="depth + 1")
    check_choice(padding, ("same", "valid"), "padding")
    check_choice(downsampling, DOWNSAMPLING, "downsampling")
    check_choice(upsampling, UPSAMPLING, "upsampling")
    head = resolve_head(head, num_classes)
    if upsampling == "indices":
        if backbone is not None:
            raise ValueError("upsampling='indices' needs kfcn's own encoder: a backbone records no pooling indices.")
        downsampling = "maxpool_argmax"

    if backbone is not None:
        size_rule = (BACKBONE_STRIDE, 0, BACKBONE_STRIDE)
    elif padding == "same":
        size_rule = (2**depth, 0, 2**depth)
    else:
        smallest = unet_valid_input_size(1, depth)[0]
        size_rule = (2**depth, smallest, smallest)
    inputs, x = model_inputs(input_shape, extra_inputs, coordinate_channels, input_range, size_rule, name)
    if backbone is not None:
        if padding != "same":
            raise ValueError("A backbone encoder is 'same'-padded; use padding='same'.")
        check_multiple(input_shape, BACKBONE_STRIDE, name)
        encoded = backbone_encoder(x, backbone, backbone_weights, backbone_trainable)
        base = filters if isinstance(filters, int) else filters[0]
        decoder_filters = [max(base // 4, 1) * 2**level for level in range(encoded.depth)]
    else:
        level_filters = [filters * 2**level for level in range(depth + 1)] if isinstance(filters, int) else filters
        if padding == "same":
            check_multiple(input_shape, 2**depth, name)
        else:
            for size in input_shape[:2]:
                if size is not None:
                    unet_valid_output_size(size, depth)
        encoded = conv_encoder(
            x, level_filters, 2, downsampling, padding, batch_norm, dropout, bottom_block=True, name="encoder"
        )
        decoder_filters = level_filters[:-1]
    x = skip_decoder(encoded, decoder_filters, 2, upsampling, padding, batch_norm, name="decoder")
    outputs = prediction_head(x, num_classes, head, logits=logits)
    return keras.Model(inputs, outputs, name=name)
