"""Fully convolutional networks FCN-32s, FCN-16s and FCN-8s (Long et al. 2015)."""

from __future__ import annotations

import keras

from kfcn.arguments import check_integer
from kfcn.models.backbones import backbone_encoder, backbone_for, check_no_backbone_options
from kfcn.models.blocks import check_choice, learned_upsampling
from kfcn.models.encoders import conv_encoder
from kfcn.models.heads import activation_layer, resolve_head
from kfcn.models.inputs import check_input_shape, check_multiple, model_inputs
from kfcn.models.segnet import VGG16_CONVS

VARIANTS = {"32s": 0, "16s": 1, "8s": 2}
STRIDE = 32  # of the encoder's deepest features, where fc6 and fc7 classify


def fcn(
    input_shape=(None, None, 3),
    num_classes=21,
    variant="8s",
    filters=32,
    fc_filters=None,
    backbone=None,
    backbone_weights="default",
    encoder_freeze=False,
    channel_adapter="repeat",
    encoder_preprocessing="auto",
    batch_norm=False,
    dropout=0.5,
    head=None,
    coordinate_channels=False,
    extra_inputs=None,
    input_range=(0, 255),
    logits=False,
    name=None,
):
    """Builds FCN-32s, -16s or -8s: a classification network made fully convolutional.

    The encoder (a small VGG16-like network by default, or a keras.applications or
    keras-hub backbone whose deepest features are at stride 32) reaches stride 32;
    "fc6" (7x7) and "fc7" (1x1) convolutions and a 1x1 scoring layer classify there.
    FCN-32s upsamples the scores by 32 with a transposed convolution initialised to
    bilinear interpolation; FCN-16s first upsamples by 2 and
    adds scores from the stride-16 features ("pool4"), FCN-8s also from stride 8
    ("pool3"), then upsamples by 16 or 8. Padding is "same" throughout, so inputs are
    multiples of 32 (Long et al. padded by 100 and cropped instead).

    Args:
        input_shape: `(height, width, channels)`; sizes may be None (multiples of 32).
        num_classes: output channels.
        variant: "32s", "16s" or "8s".
        filters: first-level filters of the default encoder (VGG16 has 64).
        fc_filters: filters of fc6/fc7 (default `16 * filters`; VGG16's is 4096).
        backbone, backbone_weights, encoder_freeze, channel_adapter, encoder_preprocessing:
            a keras.applications or keras-hub encoder instead of the default (see `unet`);
            it needs features at strides 8 and 16 for FCN-8s and -16s.
        batch_norm: batch normalisation in the default encoder.
        dropout: dropout after fc6 and fc7.
        head, coordinate_channels, extra_inputs, input_range, logits: as for `unet`.
        name: the model's name (default "fcn8s" etc.).

    Returns:
        A functional `keras.Model`.

    Example:
    >>> fcn((64, 96, 3), num_classes=5, variant="16s", filters=8).output_shape
    (None, 64, 96, 5)
    """
    check_input_shape(input_shape, "fcn")
    check_choice(variant, tuple(VARIANTS), "variant")
    filters = check_integer("filters", filters, minimum=1, meaning="of the first level", caller=name or "fcn")
    if fc_filters is not None:
        fc_filters = check_integer("fc_filters", fc_filters, minimum=1, caller=name or "fcn")
    head = resolve_head(head, num_classes)
    name = name or f"fcn{variant}"
    check_multiple(input_shape, STRIDE, name)
    if backbone is not None:
        spec = backbone_for(backbone, input_shape, backbone_weights, encoder_preprocessing, input_range, name)
        if spec.stride != STRIDE:
            raise ValueError(
                f"{name}: FCN classifies at stride {STRIDE}, but backbone {spec.name!r} ends at stride {spec.stride}; "
                "use unet(backbone=...), whose decoder takes any depth."
            )
    else:
        check_no_backbone_options(name, backbone_weights, encoder_freeze, channel_adapter, encoder_preprocessing)

    size_rule = (STRIDE, 0, STRIDE)
    inputs, x = model_inputs(input_shape, extra_inputs, coordinate_channels, input_range, size_rule, name)
    if backbone is not None:
        pixel_scale = None if input_range is None else 255.0
        encoded = backbone_encoder(x, spec, encoder_freeze, channel_adapter, pixel_scale)
    else:
        level_filters = [filters * min(2**level, 8) for level in range(5)]
        encoded = conv_encoder(
            x, level_filters, list(VGG16_CONVS), "maxpool", "same", batch_norm, bottom_block=False, name="encoder"
        )
    fc_filters = fc_filters or 16 * filters
    x = keras.layers.Conv2D(fc_filters, 7, padding="same", activation="relu", name="fc6")(encoded.bottom)
    x = keras.layers.Dropout(dropout, name="fc6_dropout")(x)
    x = keras.layers.Conv2D(fc_filters, 1, activation="relu", name="fc7")(x)
    x = keras.layers.Dropout(dropout, name="fc7_dropout")(x)
    scores = keras.layers.Conv2D(num_classes, 1, name="score_stride32")(x)

    stride = 32
    for _ in range(VARIANTS[variant]):
        stride //= 2
        # Encoder features at this stride: skips[k] is at stride 2**k.
        features = encoded.skips[stride.bit_length() - 1]
        if features is None:
            raise ValueError(f"{name}: the encoder has no features at stride {stride} for FCN-{variant}.")
        scores = learned_upsampling(scores, num_classes, 2, name=f"upsample_to_stride{stride}")
        skip_scores = keras.layers.Conv2D(num_classes, 1, kernel_initializer="zeros", name=f"score_stride{stride}")(
            features
        )
        scores = keras.layers.Add(name=f"fuse_stride{stride}")([scores, skip_scores])
    scores = learned_upsampling(scores, num_classes, stride, name=f"upsample_x{stride}")
    outputs = activation_layer(head, logits=logits)(scores)
    return keras.Model(inputs, outputs, name=name)
