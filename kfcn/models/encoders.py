"""Encoders: an image in, feature maps at strides 1, 2, 4, ... out (one interface for all)."""

from __future__ import annotations

from dataclasses import dataclass, field

import keras  # noqa: F401  (the examples use it)

from kfcn.models.blocks import conv_block, downsample


@dataclass
class EncoderOutput:
    """What every encoder returns and every decoder consumes.

    Attributes:
        skips: `skips[k]` is the deepest feature map at stride `2**k` (the encoder's
            output before its k-th downsampling), or None where the encoder has none
            (a backbone has no stride-1 features; see `kfcn.models.backbones`).
        bottom: the deepest feature map, at stride `2**len(skips)`.
        pool_indices: `pool_indices[k]` are the argmax indices of the k-th pooling
            (for SegNet-style unpooling), or None.
    """

    skips: list
    bottom: object
    pool_indices: list = field(default_factory=list)

    @property
    def depth(self):
        return len(self.skips)


def conv_encoder(
    x,
    filters,
    convs_per_level=2,
    downsampling="maxpool",
    padding="same",
    batch_norm=False,
    dropout=0.0,
    bottom_block=True,
    kernel_size=3,
    name="encoder",
):
    """The contracting path of U-Net, SegNet and the FCN default: conv blocks and downsampling.

    Args:
        x: input tensor.
        filters: filters per level, shallowest first. With `bottom_block=True`
            (U-Net) the last entry is the bottleneck block after the last
            downsampling, so there are `len(filters) - 1` downsamplings; with
            `bottom_block=False` (SegNet, FCN) every level is followed by a
            downsampling and the bottom is the last pooled map.
        convs_per_level: int, or one int per level.
        downsampling: "maxpool", "strided" or "maxpool_argmax".
        padding, batch_norm: as for `conv_block`.
        dropout: dropout after the deepest two blocks (the U-Net paper's "drop-out
            layers at the end of the contracting path").
        kernel_size: of every convolution (3; SegNet-Basic: 7).
        name: prefix of the layer names.

    Example:
    >>> out = conv_encoder(keras.Input((32, 32, 1)), [8, 16, 32])
    >>> [s.shape[1] for s in out.skips], out.bottom.shape
    ([32, 16], (None, 8, 8, 32))
    """
    levels = len(filters)
    convs = [convs_per_level] * levels if isinstance(convs_per_level, int) else list(convs_per_level)
    if len(convs) != levels:
        raise ValueError(f"`convs_per_level` has {len(convs)} entries for {levels} levels.")
    skips, indices = [], []
    pooled_levels = levels - 1 if bottom_block else levels
    for level in range(levels):
        deep = level >= levels - 2
        x = conv_block(
            x,
            filters[level],
            convs[level],
            kernel_size=kernel_size,
            padding=padding,
            batch_norm=batch_norm,
            dropout=dropout if deep else 0.0,
            name=f"{name}{level + 1}",
        )
        if level < pooled_levels:
            skips.append(x)
            x, level_indices = downsample(x, downsampling, filters[level], padding, name=f"{name}{level + 1}_down")
            indices.append(level_indices)
    return EncoderOutput(skips=skips, bottom=x, pool_indices=indices)
