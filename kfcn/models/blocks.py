"""The building blocks every kfcn architecture is made of: convolution blocks, down- and upsampling."""

from __future__ import annotations

import keras

from kfcn.initializers import BilinearUpsampling
from kfcn.layers import MaxPoolingWithArgmax2D, MaxUnpooling2D

DOWNSAMPLING = ("maxpool", "strided", "maxpool_argmax")
UPSAMPLING = ("transpose", "replicate", "indices")


def check_choice(value, allowed, name):
    if value not in allowed:
        raise ValueError(f"`{name}` must be one of {', '.join(map(repr, allowed))}; got {value!r}.")


def conv_block(
    x,
    filters,
    num_convs=2,
    kernel_size=3,
    padding="same",
    batch_norm=False,
    dropout=0.0,
    activation="relu",
    output_filters=None,
    name="block",
):
    """`num_convs` convolutions, each followed by optional batch norm and the activation.

    Args:
        x: input tensor.
        filters: filters of every convolution but the last.
        num_convs: number of convolutions.
        kernel_size: kernel size.
        padding: "same" keeps the size, "valid" shrinks it by `kernel_size - 1` per conv.
        batch_norm: batch normalisation after each convolution (the conv then has no bias).
        dropout: dropout rate after the block (0 for none).
        activation: activation after each convolution.
        output_filters: filters of the last convolution (default: `filters`), e.g.
            SegNet's decoder halves the channels in its last convolution.
        name: prefix of the layer names.

    Example:
    >>> x = keras.Input((None, None, 3))
    >>> conv_block(x, 16, name="enc1").shape
    (None, None, None, 16)
    """
    for index in range(num_convs):
        width = output_filters if (output_filters and index == num_convs - 1) else filters
        x = keras.layers.Conv2D(
            width,
            kernel_size,
            padding=padding,
            use_bias=not batch_norm,
            kernel_initializer="he_normal",
            name=f"{name}_conv{index + 1}",
        )(x)
        if batch_norm:
            x = keras.layers.BatchNormalization(name=f"{name}_bn{index + 1}")(x)
        x = keras.layers.Activation(activation, name=f"{name}_act{index + 1}")(x)
    if dropout:
        x = keras.layers.Dropout(dropout, name=f"{name}_dropout")(x)
    return x


def downsample(x, mode, filters=None, padding="same", activation="relu", name="down"):
    """Halves the spatial size. Returns `(y, indices)`; indices only for "maxpool_argmax".

    "maxpool": 2x2 max pooling; "maxpool_argmax": the same, recording the argmax for
    `upsample(..., mode="indices")`; "strided": a learned stride-2 convolution (3x3
    "same", or 2x2 "valid" so that valid-padding sizes halve exactly as with pooling).

    Example:
    >>> y, indices = downsample(keras.Input((8, 8, 4)), "maxpool_argmax")
    >>> y.shape, indices.shape
    ((None, 4, 4, 4), (None, 4, 4, 4))
    """
    check_choice(mode, DOWNSAMPLING, "downsampling")
    if mode == "maxpool":
        return keras.layers.MaxPooling2D(2, name=f"{name}_pool")(x), None
    if mode == "maxpool_argmax":
        return MaxPoolingWithArgmax2D(2, name=f"{name}_pool")(x)
    kernel = 3 if padding == "same" else 2
    y = keras.layers.Conv2D(
        filters or x.shape[-1],
        kernel,
        strides=2,
        padding=padding,
        kernel_initializer="he_normal",
        name=f"{name}_conv",
    )(x)
    return keras.layers.Activation(activation, name=f"{name}_act")(y), None


def upsample(x, mode, filters, indices=None, reference=None, name="up"):
    """Doubles the spatial size by transposed convolution, replication or pooling indices.

    "transpose": a 2x2 stride-2 transposed convolution to `filters` channels (the
    U-Net paper's "up-convolution"); "replicate": nearest-neighbour replication then a
    2x2 convolution to `filters` channels (same parameter count); "indices": SegNet's
    unpooling with `indices` from `downsample(..., "maxpool_argmax")`, to the size of
    `reference` (the tensor that was pooled), channels adapted by a 1x1 convolution
    only if they differ from the indices'.

    Example:
    >>> upsample(keras.Input((4, 4, 8)), "transpose", 4).shape
    (None, 8, 8, 4)
    """
    check_choice(mode, UPSAMPLING, "upsampling")
    if mode == "transpose":
        return keras.layers.Conv2DTranspose(
            filters, 2, strides=2, kernel_initializer="he_normal", name=f"{name}_transpose"
        )(x)
    if mode == "replicate":
        x = keras.layers.UpSampling2D(2, interpolation="nearest", name=f"{name}_replicate")(x)
        return keras.layers.Conv2D(filters, 2, padding="same", kernel_initializer="he_normal", name=f"{name}_conv")(x)
    if indices is None:
        raise ValueError("upsampling='indices' needs the pooling indices: use downsampling='maxpool_argmax'.")
    if x.shape[-1] != indices.shape[-1]:
        x = keras.layers.Conv2D(indices.shape[-1], 1, name=f"{name}_match_channels")(x)
    inputs = [x, indices] if reference is None else [x, indices, reference]
    return MaxUnpooling2D(2, name=f"{name}_unpool")(inputs)


def learned_upsampling(x, channels, factor, name):
    """A transposed convolution that upsamples by `factor`, initialised as bilinear interpolation.

    FCN's upsampling (Long 2015): kernel `2 * factor`, stride `factor`, one filter per
    channel pair initialised to the bilinear kernel, then learned.

    Example:
    >>> learned_upsampling(keras.Input((4, 4, 3)), 3, 8, "up").shape
    (None, 32, 32, 3)
    """
    return keras.layers.Conv2DTranspose(
        channels,
        2 * factor,
        strides=factor,
        padding="same",
        use_bias=False,
        kernel_initializer=BilinearUpsampling(),
        name=name,
    )(x)
