"""Decoders: the expanding path from the encoder's bottom back to stride 1."""

from __future__ import annotations

import keras

from kfcn.layers import CropToMatch
from kfcn.models.blocks import conv_block, upsample


def skip_decoder(
    encoded,
    filters,
    convs_per_level=2,
    upsampling="transpose",
    padding="same",
    batch_norm=False,
    concat_skips=True,
    halve_last_conv=False,
    kernel_size=3,
    name="decoder",
):
    """Upsamples the bottom level by level, optionally concatenating the encoder's skips.

    U-Net: `concat_skips=True` (skips centre-cropped first when padding is "valid").
    SegNet: `concat_skips=False`, `upsampling="indices"`, `halve_last_conv=True` (the
    last convolution of each level outputs the next level's channel count, as in
    the mirrored VGG decoder).

    Args:
        encoded: an `EncoderOutput`.
        filters: filters per level, shallowest first, one per skip.
        convs_per_level: int or one per level (shallowest first).
        upsampling: "transpose", "replicate" or "indices".
        padding, batch_norm: as for `conv_block`.
        concat_skips: concatenate the encoder features at each level.
        halve_last_conv: see above.
        kernel_size: of every convolution after the upsampling (3; SegNet-Basic: 7).
        name: prefix of the layer names.

    Example:
    >>> from kfcn.models.encoders import conv_encoder
    >>> encoded = conv_encoder(keras.Input((32, 32, 1)), [8, 16, 32])
    >>> skip_decoder(encoded, [8, 16]).shape
    (None, 32, 32, 8)
    """
    depth = encoded.depth
    if len(filters) != depth:
        raise ValueError(f"The decoder needs {depth} filter counts, one per encoder level; got {len(filters)}.")
    convs = [convs_per_level] * depth if isinstance(convs_per_level, int) else list(convs_per_level)
    if upsampling == "indices" and padding != "same":
        raise ValueError(
            "upsampling='indices' needs padding='same': valid convolutions shrink the "
            "decoder maps, so the pooling indices no longer fit them."
        )
    indices = encoded.pool_indices or [None] * depth
    x = encoded.bottom
    for level in reversed(range(depth)):
        skip = encoded.skips[level]
        prefix = f"{name}{level + 1}"
        x = upsample(x, upsampling, filters[level], indices=indices[level], reference=skip, name=f"{prefix}_up")
        if concat_skips and skip is not None:
            if padding == "valid":
                skip = CropToMatch(name=f"{prefix}_crop")([skip, x])
            x = keras.layers.Concatenate(name=f"{prefix}_concat")([skip, x])
        output_filters = filters[level - 1] if (halve_last_conv and level > 0) else None
        x = conv_block(
            x,
            filters[level],
            convs[level],
            kernel_size=kernel_size,
            padding=padding,
            batch_norm=batch_norm,
            output_filters=output_filters,
            name=prefix,
        )
    return x
