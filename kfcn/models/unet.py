"""U-Net (Ronneberger et al. 2015) and its improved variants."""

from __future__ import annotations

import keras

from kfcn.arguments import check_integer, check_integers
from kfcn.models.backbones import backbone_encoder, backbone_for, check_no_backbone_options
from kfcn.models.blocks import DOWNSAMPLING, UPSAMPLING, check_choice
from kfcn.models.decoders import skip_decoder
from kfcn.models.encoders import conv_encoder
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
    backbone_weights="default",
    encoder_freeze=False,
    channel_adapter="repeat",
    encoder_preprocessing="auto",
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
    pretrained-style encoder: a keras.applications network (`backbone="mobilenet_v2"`,
    `"resnet50"`, `"efficientnetb0"`, ...) or any keras-hub `FeaturePyramidBackbone`
    (a preset name, handle or folder, or an instance), its skips taken from the
    feature pyramid by stride. The model still takes raw pixels: the encoder family's
    own normalisation is a layer of the graph (`encoder_preprocessing`).

    Args:
        input_shape: `(height, width, channels)`; sizes may be None (any size the
            strides allow: multiples of `2**depth` for "same" padding, see
            `kfcn.models.unet_valid_output_size` for "valid").
        num_classes: output channels (classes, 1 for a binary mask, or values for
            `head="regression"`).
        filters: filters of the first level (doubled at each level), or a list of
            `depth + 1` counts. With a backbone: the decoder's shallowest level
            has `filters // 4`, doubling towards the bottom (64 -> 16 … 256).
        depth: number of downsamplings (ignored with a backbone: its deepest stride decides).
        padding: "same" or "valid" (the published network).
        downsampling: "maxpool", "strided" (stride-2 convolutions) or
            "maxpool_argmax" (implied by `upsampling="indices"`).
        upsampling: "transpose", "replicate" or "indices".
        backbone: None (kfcn's own encoder); a keras.applications name (see
            `kfcn.models.BACKBONES`); a keras-hub preset ("resnet_50_imagenet", "hf://...",
            "kaggle://...", or a local preset folder; needs `kfcn[hub]`); or a
            `keras_hub.models.FeaturePyramidBackbone` instance. Input sides must then be
            multiples of the encoder's deepest stride (32 for most).
        backbone_weights: "default" (random for a keras.applications name, the preset's
            own for a preset, as they are for an instance), None (random) or "imagenet"
            (a keras.applications name; downloads unless cached).
        encoder_freeze: False, True (the whole encoder) or "batchnorm" (only its batch-norm
            layers); see `kfcn.models.set_encoder_freeze` for two-stage fine-tuning.
        channel_adapter: "repeat" (a 1-channel image copied into the encoder's 3 channels,
            as grey photographs reach ImageNet weights) or "learned" (a 1x1 convolution from
            any channel count, starting as their mean).
        encoder_preprocessing: "auto" (the family's: keras.applications' `preprocess_input`
            mode, or the preset's image converter), `(scale, offset)` on 0-255 pixels, or a
            keras-hub `ImageConverter`. Applied inside the model after `input_range` maps
            the raw pixels to 0-255 terms; with `input_range=None` the encoder gets the
            values as given.
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

    spec = None
    if backbone is not None:
        if padding != "same":
            raise ValueError(f"{name}: a backbone encoder is 'same'-padded; use padding='same'.")
        spec = backbone_for(backbone, input_shape, backbone_weights, encoder_preprocessing, input_range, name)
    else:
        check_no_backbone_options(name, backbone_weights, encoder_freeze, channel_adapter, encoder_preprocessing)
    size_rule = _size_rule(spec, padding, depth)
    inputs, x = model_inputs(input_shape, extra_inputs, coordinate_channels, input_range, size_rule, name)
    if backbone is not None:
        pixel_scale = None if input_range is None else 255.0
        encoded = backbone_encoder(x, spec, encoder_freeze, channel_adapter, pixel_scale)
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


def _size_rule(backbone, padding, depth):
    """`(multiple, offset, minimum)` of the sides the U-Net takes (see `InputSizeCheck`)."""
    if backbone is not None:
        return (backbone.stride, 0, backbone.stride)
    if padding == "same":
        return (2**depth, 0, 2**depth)
    smallest = unet_valid_input_size(1, depth)[0]
    return (2**depth, smallest, smallest)
