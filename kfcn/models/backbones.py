"""Pretrained-style encoders: keras.applications networks and keras-hub backbones, raw pixels in.

A backbone is resolved once (`resolve_backbone`) into a `Backbone`: a model from the
image to its feature maps, the stride of each, the channels it takes, and the
preprocessing its weights expect. `backbone_encoder` then puts it in a kfcn graph:

    raw pixels -> input_scaling (to [0, 1]) -> channel adapter (1 -> 3 channels)
               -> encoder_preprocessing (the family's own) -> encoder -> decoder

so every served, TFLite and `.keras` file takes the pixels as stored, whatever the
encoder family normalises to.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass

import keras

from kfcn.layers import ChannelAffine
from kfcn.layers.channel_affine import per_channel_values
from kfcn.models import hub
from kfcn.models.encoders import EncoderOutput
from kfcn.optional import KERAS_HUB_INSTALL

CHANNEL_ADAPTERS = ("repeat", "learned")


@dataclass(frozen=True)
class Preprocessing:
    """`x[..., ::-1] * scale + offset` on pixels in 0-255 (reversal optional): what an encoder expects.

    Attributes:
        scale, offset: one float per channel (in the reversed order when `reverse_channels`).
        reverse_channels: RGB to BGR first (caffe-style networks).
        source: where the numbers come from, for summaries and errors.

    Example:
    >>> Preprocessing.from_scale_offset(1 / 127.5, -1.0).scale
    (0.00784313725490196, 0.00784313725490196, 0.00784313725490196)
    """

    scale: tuple
    offset: tuple
    reverse_channels: bool = False
    source: str = ""

    @classmethod
    def from_scale_offset(cls, scale, offset, reverse_channels=False, source="given", channels=3):
        """From a number or per-channel numbers each (keras-hub's `ImageConverter` convention; None is 1 or 0)."""
        scale = per_channel_values("scale", 1.0 if scale is None else scale, "encoder_preprocessing", channels)
        offset = per_channel_values("offset", 0.0 if offset is None else offset, "encoder_preprocessing", channels)
        return cls(scale, offset, reverse_channels, source)


def _imagenet_torch():
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    return [1 / (255 * s) for s in std], [-m / s for m, s in zip(mean, std)]


# keras.applications' preprocess_input modes, in 0-255 pixel terms. "raw": the network
# rescales inside (EfficientNet, EfficientNetV2, MobileNetV3, ConvNeXt take 0-255).
APPLICATION_PREPROCESSING = {
    "caffe": Preprocessing.from_scale_offset(1.0, (-103.939, -116.779, -123.68), True, "caffe (BGR, ImageNet means)"),
    "tf": Preprocessing.from_scale_offset(1 / 127.5, -1.0, source="tf ([-1, 1])"),
    "torch": Preprocessing.from_scale_offset(*_imagenet_torch(), source="torch (ImageNet mean and std)"),
    "raw": Preprocessing.from_scale_offset(1.0, 0.0, source="raw 0-255 (the network rescales inside)"),
}

# name -> (keras.applications class, its preprocess_input mode).
BACKBONES = {
    "vgg16": ("VGG16", "caffe"),
    "vgg19": ("VGG19", "caffe"),
    "resnet50": ("ResNet50", "caffe"),
    "resnet101": ("ResNet101", "caffe"),
    "resnet50v2": ("ResNet50V2", "tf"),
    "mobilenet": ("MobileNet", "tf"),
    "mobilenet_v2": ("MobileNetV2", "tf"),
    "mobilenet_v3_small": ("MobileNetV3Small", "raw"),
    "mobilenet_v3_large": ("MobileNetV3Large", "raw"),
    "efficientnetb0": ("EfficientNetB0", "raw"),
    "efficientnetb1": ("EfficientNetB1", "raw"),
    "efficientnetv2b0": ("EfficientNetV2B0", "raw"),
    "densenet121": ("DenseNet121", "torch"),
    "convnext_tiny": ("ConvNeXtTiny", "raw"),
}


@dataclass(frozen=True)
class Backbone:
    """An encoder resolved from a keras.applications name or a keras-hub backbone.

    Attributes:
        name: used in layer names ("mobilenet_v2", "resnet_backbone").
        features: a model from a `channels`-channel image to its feature maps, shallowest first.
        strides: the stride of each feature map (powers of two, increasing).
        channels: the channels the encoder takes (3 for every pretrained family).
        image_size: `(height, width)` when the encoder takes only that size, else None.
        preprocessing: the `Preprocessing` its weights expect.
    """

    name: str
    features: object
    strides: tuple
    channels: int
    image_size: tuple | None
    preprocessing: Preprocessing

    @property
    def stride(self):
        """The deepest feature map's stride: every input side must be a multiple of it."""
        return self.strides[-1]


def resolve_backbone(backbone, weights="default", preprocessing="auto"):
    """A `Backbone` from a keras.applications name, a keras-hub preset or a keras-hub backbone.

    Args:
        backbone: a key of `BACKBONES` ("mobilenet_v2", "resnet50", ...); a keras-hub
            preset: a name ("resnet_50_imagenet"), a Kaggle or Hugging Face handle
            ("hf://..."), or a local preset folder; or a `keras_hub.models.FeaturePyramidBackbone`.
        weights: "default" (random for a keras.applications name, the preset's own for a
            preset, as they are for an instance), None (random) or "imagenet" (a
            keras.applications name only).
        preprocessing: "auto" (the family's own: keras.applications' `preprocess_input`
            mode, or the preset's image converter), `(scale, offset)` on 0-255 pixels,
            or a keras-hub `ImageConverter`.

    Example:
    >>> spec = resolve_backbone("mobilenet_v2")
    >>> spec.strides, spec.preprocessing.source
    ((2, 4, 8, 16, 32), 'tf ([-1, 1])')
    """
    if isinstance(backbone, str) and backbone in BACKBONES:
        resolved = _application_backbone(backbone, weights)
    elif isinstance(backbone, str) or hub.is_hub_object(backbone):
        resolved = _hub_backbone(backbone, weights)
    else:
        raise ValueError(
            f"`backbone` is a keras.applications name ({', '.join(sorted(BACKBONES))}), a keras-hub preset or a "
            f"keras_hub.models.FeaturePyramidBackbone; got {type(backbone).__name__}."
        )
    name, features, channels, image_size, default_preprocessing = resolved
    if isinstance(default_preprocessing, tuple):  # a keras-hub preset's converter: (scale, offset, source)
        scale, offset, source = default_preprocessing
        default_preprocessing = Preprocessing.from_scale_offset(scale, offset, source=source, channels=channels)
    strides = _strides(features, image_size, name)
    chosen = _preprocessing(preprocessing, default_preprocessing, channels, name)
    return Backbone(name, features, strides, channels, image_size, chosen)


def _hub_backbone(backbone, weights):
    """keras-hub's part, with an error for an unknown name that lists what kfcn knows."""
    known = f"kfcn knows the keras.applications networks {', '.join(sorted(BACKBONES))}"
    close = difflib.get_close_matches(backbone, BACKBONES, n=1) if isinstance(backbone, str) else []
    suggestion = f" Did you mean {close[0]!r}?" if close else ""
    try:
        return hub.hub_backbone(backbone, weights)
    except ImportError as error:
        raise ValueError(
            f"Unknown backbone {backbone!r}.{suggestion} {known}; any other name is taken as a keras-hub preset, "
            f"which needs keras-hub: {KERAS_HUB_INSTALL}."
        ) from error
    except ValueError as error:
        if not str(error).startswith("Unknown backbone"):
            raise
        raise ValueError(
            f"{error}{suggestion} {known}; any other name is taken as a keras-hub preset (a name, a 'kaggle://' or "
            "'hf://' handle, or a local preset folder)."
        ) from error


def _application_backbone(name, weights):
    if weights not in ("default", None, "imagenet"):
        raise ValueError(f"backbone_weights is None, 'imagenet' or 'default' for {name!r}; got {weights!r}.")
    class_name, mode = BACKBONES[name]
    application = getattr(keras.applications, class_name)
    network = application(
        include_top=False,
        weights=None if weights == "default" else weights,
        input_shape=(None, None, 3),  # any size: the model's own input decides, and the strides are probed
    )
    outputs = [network.layers[index].output for index in _feature_layer_indices(name, network)]
    features = keras.Model(network.inputs, outputs, name=f"{name}_encoder")
    return name, features, 3, None, APPLICATION_PREPROCESSING[mode]


_feature_names_cache: dict = {}


def _feature_layer_indices(name, network):
    """Positions in `network` (keras.applications' `name`) of the last layer at each of the strides 2, 4, 8, 16,
    32 it has, from the layers' output shapes for a 224x224 image, computed symbolically (no second network).

    Positions, not names: some networks name a layer by a global counter (ConvNeXt's last
    normalisation), so a second instance names it differently.
    """
    if name not in _feature_names_cache:
        probe_size = 224
        maps = [
            (index, layer.output)
            for index, layer in enumerate(network.layers)
            if not isinstance(layer.output, (list, tuple)) and len(layer.output.shape) == 4
        ]
        every_map = keras.Model(network.inputs, [output for _, output in maps])
        specs = every_map.compute_output_spec(keras.KerasTensor((1, probe_size, probe_size, 3)))
        names = {}
        for (index, _), spec in zip(maps, specs):
            side = spec.shape[1]
            stride = probe_size // side
            if side * stride == probe_size and stride in (2, 4, 8, 16, 32):
                names[stride] = index  # layers are in topological order: keep the last
        if 32 not in names:
            raise ValueError(f"Backbone {name!r} has no feature map at stride 32.")
        # A patchifying stem (ConvNeXt) has no stride-2 map: the decoder then has no skip there.
        _feature_names_cache[name] = [names[stride] for stride in sorted(names)]
    return _feature_names_cache[name]


def _strides(features, image_size, name):
    """The stride of each output of `features`, from its output shapes on a probe image."""
    probe = image_size or (256, 256)
    spec = features.compute_output_spec(keras.KerasTensor((1, *probe, features.inputs[0].shape[-1])))
    strides = []
    for output in spec if isinstance(spec, (list, tuple)) else [spec]:
        stride = probe[0] // output.shape[1]
        if output.shape[1] * stride != probe[0] or stride & (stride - 1) or stride < 2:
            raise ValueError(
                f"Backbone {name!r}: a feature map of {output.shape[1]}x{output.shape[2]} on a {probe[0]}x{probe[1]} "
                "image is not at a power-of-two stride; kfcn's decoders need strides 2, 4, 8, ..."
            )
        strides.append(stride)
    if strides != sorted(set(strides)):
        raise ValueError(f"Backbone {name!r}: its feature maps' strides {strides} are not increasing and distinct.")
    return tuple(strides)


def _preprocessing(choice, default, channels, name):
    if isinstance(choice, str) and choice == "auto":
        if default is None:
            raise ValueError(
                f"Backbone {name!r} does not say how its inputs are normalised (a keras-hub backbone instance, or a "
                "preset without an image converter): pass encoder_preprocessing=keras_hub.layers.ImageConverter"
                ".from_preset(<its preset>), or (scale, offset) on 0-255 pixels, e.g. (1 / 255, 0) for [0, 1]."
            )
        return default
    if hasattr(choice, "scale") and hasattr(choice, "offset"):
        return Preprocessing.from_scale_offset(
            choice.scale, choice.offset, source=type(choice).__name__, channels=channels
        )
    if isinstance(choice, (tuple, list)) and len(choice) == 2:
        return Preprocessing.from_scale_offset(*choice, source="given", channels=channels)
    raise ValueError(
        "encoder_preprocessing is 'auto', (scale, offset) on 0-255 pixels, or a keras-hub ImageConverter; "
        f"got {choice!r}."
    )


def backbone_encoder(x, backbone, freeze=False, channel_adapter="repeat", pixel_scale=255.0):
    """Puts a resolved `Backbone` on `x`: channel adapter, its preprocessing, the encoder.

    Args:
        x: the input tensor, raw pixels mapped to [0, 1] (`pixel_scale=255`), or values
            to feed as they are (`pixel_scale=None`: no preprocessing).
        backbone: a `Backbone` (`resolve_backbone`).
        freeze: False, True (the whole encoder) or "batchnorm" (its batch-norm layers:
            their statistics and scales stay as pretrained).
        channel_adapter: how an image whose channels differ from the encoder's reaches it:
            "repeat" copies a 1-channel image into each channel (grey as colour: what
            ImageNet weights expect of a grey photograph); "learned" is a 1x1 convolution
            to the encoder's channels, starting as the mean of the inputs, trained with the
            rest (any channel count: extra input maps, coordinate channels).
        pixel_scale: what 1.0 in `x` is on 0-255 pixels (255: `x` is [0, 1] from `input_range`).

    Returns:
        An `EncoderOutput`: `skips[k]` the features at stride `2**k`, None where the
        encoder has none; `bottom` the deepest.

    Example:
    >>> out = backbone_encoder(keras.Input((64, 64, 1)), resolve_backbone("mobilenet_v2"))
    >>> [None if s is None else s.shape[1] for s in out.skips], out.bottom.shape[1]
    ([None, 32, 16, 8, 4], 2)
    """
    check_freeze(freeze)
    if channel_adapter not in CHANNEL_ADAPTERS:
        raise ValueError(f"channel_adapter is 'repeat' or 'learned'; got {channel_adapter!r}.")
    x = _adapt_channels(x, backbone, channel_adapter)
    if pixel_scale is not None:
        x = preprocessing_layer(backbone.preprocessing, pixel_scale)(x)
    encoder = backbone.features
    _apply_freeze(encoder, freeze)
    features = encoder(x)
    features = list(features) if isinstance(features, (list, tuple)) else [features]
    by_stride = dict(zip(backbone.strides, features))
    depth = int(math.log2(backbone.stride))
    skips = [by_stride.get(2**level) for level in range(depth)]
    return EncoderOutput(skips=skips, bottom=features[-1])


def preprocessing_layer(preprocessing, pixel_scale=255.0):
    """The `ChannelAffine` layer "encoder_preprocessing" for inputs where 1.0 is `pixel_scale` on 0-255 pixels.

    Example:
    >>> layer = preprocessing_layer(APPLICATION_PREPROCESSING["tf"])
    >>> keras.ops.convert_to_numpy(layer(keras.ops.ones((1, 1, 1, 3))))[0, 0, 0]
    array([1., 1., 1.], dtype=float32)
    """
    return ChannelAffine(
        scale=[s * pixel_scale for s in preprocessing.scale],
        offset=preprocessing.offset,
        reverse_channels=preprocessing.reverse_channels,
        name="encoder_preprocessing",
    )


def check_freeze(freeze):
    """Refuses anything but True, False and "batchnorm" (1, "yes" and 0.0 included).

    Example:
    >>> check_freeze("batchnorm")
    >>> check_freeze(1)
    Traceback (most recent call last):
    ...
    ValueError: encoder_freeze is True, False or 'batchnorm'; got 1.
    """
    if not (freeze is True or freeze is False or (isinstance(freeze, str) and freeze == "batchnorm")):
        raise ValueError(f"encoder_freeze is True, False or 'batchnorm'; got {freeze!r}.")


def _adapt_channels(x, backbone, adapter):
    channels, wanted = x.shape[-1], backbone.channels
    if channels == wanted:
        return x
    if adapter == "repeat":
        if channels != 1:
            raise ValueError(
                f"Backbone {backbone.name!r} takes {wanted} channels; the input has {channels}, which cannot be "
                "repeated into them: build with channel_adapter='learned' (a 1x1 convolution to "
                f"{wanted} channels)."
            )
        return keras.layers.Concatenate(name="channel_repeat")([x] * wanted)
    return keras.layers.Conv2D(
        wanted,
        1,
        kernel_initializer=keras.initializers.Constant(1.0 / channels),
        bias_initializer="zeros",
        name="channel_mixing",
    )(x)


def _apply_freeze(encoder, freeze):
    encoder.trainable = freeze is not True
    if freeze == "batchnorm":
        for layer in _all_layers(encoder):
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)


def encoder_of(model):
    """The backbone encoder inside a model kfcn built (the nested model named `*_encoder`).

    Example:
    >>> from kfcn.models import unet
    >>> encoder_of(unet((64, 64, 3), backbone="mobilenet_v2", filters=8)).name
    'mobilenet_v2_encoder'
    """
    found = [layer for layer in model.layers if isinstance(layer, keras.Model) and layer.name.endswith("_encoder")]
    if len(found) != 1:
        raise ValueError(
            f"Model {model.name!r} has {'no' if not found else len(found)} backbone encoder(s) (a nested model "
            "named '*_encoder', which kfcn's builders make with `backbone=`)."
        )
    return found[0]


def set_encoder_freeze(model, freeze):
    """Freezes or unfreezes a model's backbone encoder in place; compile again afterwards.

    The two-stage fine-tuning recipe: train the decoder on a frozen pretrained encoder,
    then the whole network at a lower learning rate with the encoder's batch-norm layers
    still frozen (their ImageNet statistics survive small batches):

        model = unet((None, None, 3), 4, backbone="resnet50", backbone_weights="imagenet",
                     encoder_freeze=True)
        model.compile(keras.optimizers.Adam(1e-3), loss)
        model.fit(train, epochs=10)
        set_encoder_freeze(model, "batchnorm")
        model.compile(keras.optimizers.Adam(1e-4), loss)  # recompile: trainability is read here
        model.fit(train, epochs=40)

    Args:
        model: a model built with `backbone=`.
        freeze: True (the whole encoder), "batchnorm" (only its batch-norm layers) or False.

    Example:
    >>> from kfcn.models import unet
    >>> model = unet((64, 64, 3), backbone="mobilenet_v2", filters=8, encoder_freeze=True)
    >>> trainable = len(model.trainable_weights)
    >>> set_encoder_freeze(model, "batchnorm")
    >>> len(model.trainable_weights) > trainable
    True
    """
    check_freeze(freeze)
    encoder = encoder_of(model)
    for layer in _all_layers(encoder):
        layer.trainable = True
    _apply_freeze(encoder, freeze)


def backbone_for(backbone, input_shape, weights, preprocessing, input_range, model_name):
    """Resolves a builder's `backbone=` and checks it against the model's input: the builders' one entry.

    Example:
    >>> backbone_for("mobilenet_v2", (96, 96, 1), "default", "auto", (0, 255), "unet").stride
    32
    >>> backbone_for("mobilenet_v2", (100, 96, 1), "default", "auto", (0, 255), "unet")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: unet: input height 100 is not a multiple of 32, the model's total stride; ...
    """
    from kfcn.models.inputs import check_multiple

    if input_range is None and not (isinstance(preprocessing, str) and preprocessing == "auto"):
        raise ValueError(
            f"{model_name}: input_range=None feeds values to the encoder as they are, so encoder_preprocessing "
            f"({preprocessing!r}) would not be applied: keep input_range (raw pixels in, the encoder's "
            "preprocessing inside the model) or leave encoder_preprocessing='auto'."
        )
    spec = resolve_backbone(backbone, weights, preprocessing)
    if spec.image_size is not None and tuple(input_shape[:2]) != spec.image_size:
        raise ValueError(
            f"{model_name}: backbone {spec.name!r} takes only {spec.image_size[0]}x{spec.image_size[1]} images (its "
            f"image_shape), so build with input_shape=({spec.image_size[0]}, {spec.image_size[1]}, channels), not "
            f"{tuple(input_shape)}; predict larger images with kfcn.inference.predict_tiled."
        )
    check_multiple(input_shape, spec.stride, model_name)
    return spec


def check_no_backbone_options(model_name, weights, freeze, channel_adapter, preprocessing):
    """Refuses encoder options given without `backbone=`: they would be ignored without a word.

    Example:
    >>> check_no_backbone_options("unet", "default", True, "repeat", "auto")
    Traceback (most recent call last):
    ...
    ValueError: unet: encoder_freeze applies to a backbone encoder; pass backbone=... or leave it out.
    """
    given = {
        "backbone_weights": weights != "default",
        "encoder_freeze": freeze is not False,
        "channel_adapter": channel_adapter != "repeat",
        "encoder_preprocessing": not (isinstance(preprocessing, str) and preprocessing == "auto"),
    }
    named = [option for option, set_ in given.items() if set_]
    if named:
        raise ValueError(
            f"{model_name}: {', '.join(named)} {'applies' if len(named) == 1 else 'apply'} to a backbone encoder; "
            "pass backbone=... or leave it out."
        )
