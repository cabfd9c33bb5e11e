"""keras-hub backbones as kfcn encoders: presets and `FeaturePyramidBackbone` instances.

keras-hub is optional (`pip install "kfcn[hub]"`): it is imported only when a preset or
a keras-hub object is used, so `import kfcn` and every other path work without it.
"""

from __future__ import annotations

import keras

from kfcn.optional import import_keras_hub


def is_hub_object(value):
    """True for an instance of a keras-hub class (checked without importing keras-hub).

    Example:
    >>> is_hub_object("resnet_50_imagenet"), is_hub_object(keras.layers.Dense(1))
    (False, False)
    """
    return type(value).__module__.split(".")[0] == "keras_hub"


def hub_backbone(backbone, weights="default"):
    """The parts of a kfcn `Backbone` from a keras-hub preset or backbone instance.

    Args:
        backbone: a preset (name, "kaggle://..." or "hf://..." handle, local folder) or a
            `keras_hub.models.FeaturePyramidBackbone`.
        weights: "default" (the preset's own weights; an instance as it is) or None
            (a preset's architecture with random weights).

    Returns:
        `(name, features, channels, image_size, preprocessing)`: `features` maps the image to
        the pyramid's maps in the order of their level names ("P1", "P2", ...);
        `preprocessing` is `(scale, offset, source)` of the preset's image converter, or
        None where nothing says (an instance).

    Example:
    >>> import tempfile, keras_hub  # doctest: +SKIP
    >>> hub_backbone(keras_hub.models.ResNetBackbone.from_preset("resnet_18_imagenet"))  # doctest: +SKIP
    """
    keras_hub = import_keras_hub()
    preprocessing = None
    if isinstance(backbone, str):
        if weights not in ("default", None):
            raise ValueError(
                f"backbone_weights={weights!r} applies to keras.applications names; the keras-hub preset "
                f"{backbone!r} carries its own weights: pass 'default' to load them, None for random ones."
            )
        try:
            model = keras_hub.models.Backbone.from_preset(backbone, load_weights=weights == "default")
        except (ValueError, FileNotFoundError, OSError) as error:
            reason = str(error).split("\n")[0]
            raise ValueError(f"Unknown backbone {backbone!r}: {reason}") from error
        converter = _image_converter(keras_hub, backbone)
        if converter is not None:
            preprocessing = (converter.scale, converter.offset, f"{type(converter).__name__} of {backbone}")
    else:
        if weights != "default":
            raise ValueError(
                "backbone_weights applies to keras.applications names and presets; a keras-hub backbone instance "
                "is used with the weights it has."
            )
        model = backbone
    if not isinstance(model, keras_hub.models.FeaturePyramidBackbone):
        hint = " (a task: pass its .backbone)" if isinstance(model, keras_hub.models.Task) else ""
        raise ValueError(
            f"{type(model).__name__}{hint} is not a keras_hub.models.FeaturePyramidBackbone: kfcn's decoders need "
            "its feature pyramid (`pyramid_outputs`), which ResNet, EfficientNet, MobileNet, CSPNet, DenseNet and "
            "MiT backbones have."
        )
    pyramid = model.pyramid_outputs
    levels = sorted(pyramid, key=_level_number)
    features = keras.Model(model.inputs, [pyramid[level] for level in levels], name=f"{model.name}_encoder")
    height, width, channels = model.input_shape[1:]
    image_size = (height, width) if height is not None and width is not None else None
    _check_layers_reload(features, model)
    return model.name, features, channels, image_size, preprocessing


def _check_layers_reload(features, backbone):
    """Refuses an encoder whose own layers cannot be rebuilt from their configs outside their backbone.

    kfcn saves the encoder as the graph of its layers; a keras-hub layer whose `get_config`
    does not match its constructor (MiT's HierarchicalTransformerEncoder, in keras-hub 0.32)
    would save, then fail to load. Refused here, at build time, instead.
    """
    for layer in features.layers:
        if type(layer).__module__.split(".")[0] == "keras":
            continue
        try:
            type(layer).from_config(layer.get_config())
        except (TypeError, ValueError) as error:
            reason = str(error).split("\n")[0][:200]
            raise ValueError(
                f"{type(backbone).__name__}'s layer {layer.name!r} ({type(layer).__name__}) cannot be rebuilt from "
                f"its own config ({reason}), so a kfcn model on this encoder could be saved but never loaded. Use a "
                "convolutional family (ResNet, DenseNet, CSPNet, EfficientNet, MobileNet), or keras-hub's own "
                "segmenter for this one (kfcn's inference, analysis and export take any Keras model)."
            ) from None


def _level_number(level):
    digits = "".join(ch for ch in level if ch.isdigit())
    return int(digits) if digits else 0


def _image_converter(keras_hub, preset):
    """The preset's image converter, or None when it has none."""
    try:
        return keras_hub.layers.ImageConverter.from_preset(preset)
    except (ValueError, FileNotFoundError, OSError, KeyError):
        return None
