"""The plain image-to-image CNN (Pang et al. 2010): convolutions only, no downsampling."""

from __future__ import annotations

import keras

from kfcn.arguments import check_integer
from kfcn.models.blocks import conv_block
from kfcn.models.heads import activation_layer, resolve_head
from kfcn.models.inputs import check_input_shape, model_inputs


def plain_cnn(
    input_shape=(None, None, 1),
    out_channels=1,
    num_layers=5,
    filters=32,
    kernel_size=3,
    batch_norm=False,
    head="regression",
    coordinate_channels=False,
    extra_inputs=None,
    input_range=(0, 255),
    logits=False,
    name="plain_cnn",
):
    """Builds the simplest image-to-image network: `num_layers` "same" convolutions.

    ReLU after every convolution but the last, which is linear ("regression", for
    restoration, density maps or another modality) or a sigmoid/softmax head. With
    no downsampling it takes every input size, and its receptive field is
    `1 + num_layers * (kernel_size - 1)`.

    Args:
        input_shape: `(height, width, channels)`; sizes may be None.
        out_channels: output channels.
        num_layers: convolutions in total, the output layer included (>= 1).
        filters: filters of the hidden convolutions.
        kernel_size: kernel size of every convolution.
        batch_norm: batch normalisation after the hidden convolutions.
        head: "regression" (linear), "binary" or "semantic".
        coordinate_channels, extra_inputs, input_range, logits, name: as for `unet`.

    Returns:
        A functional `keras.Model`.

    Example:
    >>> plain_cnn((None, None, 3), out_channels=3, num_layers=4).output_shape
    (None, None, None, 3)
    """
    check_input_shape(input_shape, name)
    num_layers = check_integer("num_layers", num_layers, minimum=1, caller=name)
    filters = check_integer("filters", filters, minimum=1, caller=name)
    kernel_size = check_integer("kernel_size", kernel_size, minimum=1, caller=name)
    head = resolve_head(head, out_channels)
    inputs, x = model_inputs(input_shape, extra_inputs, coordinate_channels, input_range, model_name=name)
    if num_layers > 1:
        x = conv_block(x, filters, num_layers - 1, kernel_size, batch_norm=batch_norm, name="hidden")
    x = keras.layers.Conv2D(out_channels, kernel_size, padding="same", name="output_conv")(x)
    outputs = activation_layer(head, logits=logits)(x)
    return keras.Model(inputs, outputs, name=name)
