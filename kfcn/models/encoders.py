"""Encoders: an image in, feature maps at strides 1, 2, 4, ... out (one interface for all)."""

from __future__ import annotations

from dataclasses import dataclass, field

import keras

from kfcn.models.blocks import conv_block, downsample


@dataclass
class EncoderOutput:
    """What every encoder returns and every decoder consumes.

    Attributes:
        skips: `skips[k]` is the deepest feature map at stride `2**k` (the encoder's
            output before its k-th downsampling), or None where the encoder has none
            (a backbone has no stride-1 features).
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


BACKBONES = {
    "vgg16": "VGG16",
    "vgg19": "VGG19",
    "resnet50": "ResNet50",
    "resnet50v2": "ResNet50V2",
    "resnet101": "ResNet101",
    "mobilenet": "MobileNet",
    "mobilenet_v2": "MobileNetV2",
    "mobilenet_v3_small": "MobileNetV3Small",
    "mobilenet_v3_large": "MobileNetV3Large",
    "efficientnetb0": "EfficientNetB0",
    "efficientnetb1": "EfficientNetB1",
    "efficientnetv2b0": "EfficientNetV2B0",
    "densenet121": "DenseNet121",
    "convnext_tiny": "ConvNeXtTiny",
}
BACKBONE_STRIDE = 32
_feature_names_cache: dict = {}


def _application(name):
    if name not in BACKBONES:
        raise ValueError(
            f"Unknown backbone {name!r}. kfcn knows the keras.applications networks {', '.join(sorted(BACKBONES))}."
        )
    return getattr(keras.applications, BACKBONES[name])


def _feature_layer_names(name, channels):
    """Names of the last layer at each stride 2, 4, 8, 16, 32, found on a 224x224 probe."""
    key = (name, channels)
    if key not in _feature_names_cache:
        probe_size = 224
        probe = _application(name)(include_top=False, weights=None, input_shape=(probe_size, probe_size, channels))
        names = {}
        for layer in probe.layers:
            shape = layer.output.shape if not isinstance(layer.output, (list, tuple)) else None
            if shape is None or len(shape) != 4 or shape[1] is None:
                continue
            stride = probe_size // shape[1]
            if shape[1] * stride == probe_size and stride in (2, 4, 8, 16, 32):
                names[stride] = layer.name  # layers are in topological order: keep the last
        missing = [s for s in (2, 4, 8, 16, 32) if s not in names]
        if missing:
            raise ValueError(f"Backbone {name!r} has no feature map at stride(s) {missing}.")
        _feature_names_cache[key] = names
        del probe
    return _feature_names_cache[key]


def backbone_encoder(x, name, weights=None, trainable=True):
    """A keras.applications classification network as encoder, features at strides 2 … 32.

    The network is built without its top on `x`; for each stride 2, 4, 8, 16 the last
    layer at that resolution is a skip, the stride-32 output is the bottom (found
    once per backbone on a 224x224 probe, so any keras.applications network works).
    Its input must be preprocessed as that network expects
    (`keras.applications.<family>.preprocess_input`); EfficientNet rescales inside.

    Args:
        x: input tensor; spatial size a multiple of 32.
        name: a key of `BACKBONES`, e.g. "mobilenet_v2", "resnet50", "efficientnetb0".
        weights: None (random) or "imagenet" (needs 3 input channels and network access
            on first use, or the weights in ~/.keras/models).
        trainable: False freezes the backbone.

    Example:
    >>> out = backbone_encoder(keras.Input((64, 64, 3)), "mobilenet_v2")
    >>> [None if s is None else s.shape[1] for s in out.skips], out.bottom.shape[1]
    ([None, 32, 16, 8, 4], 2)
    """
    application = _application(name)
    channels = x.shape[-1]
    if weights is not None and channels != 3:
        raise ValueError(
            f"Backbone {name!r} with weights={weights!r} needs 3 input channels, got {channels}. "
            "Use backbone_weights=None, or map your channels to 3 first."
        )
    names = _feature_layer_names(name, channels)
    backbone = application(include_top=False, weights=weights, input_shape=tuple(x.shape[1:]))
    backbone.trainable = trainable
    outputs = [backbone.get_layer(names[stride]).output for stride in (2, 4, 8, 16, 32)]
    features = keras.Model(backbone.inputs, outputs, name=f"{name}_encoder")(x)
    return EncoderOutput(skips=[None, *features[:4]], bottom=features[4])
