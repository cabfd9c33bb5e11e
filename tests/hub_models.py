"""Tiny keras-hub models with random weights, for tests that must not download (import only where
keras-hub is installed: the test modules call pytest.importorskip("keras_hub") first)."""

import keras_hub

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def tiny_resnet():
    """ResNet with basic blocks; its pyramid is P2-P5 (strides 4-32). The first stack needs 64 filters."""
    return keras_hub.models.ResNetBackbone(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[3],
        stackwise_num_filters=[64, 8, 16, 16],
        stackwise_num_blocks=[1, 1, 1, 1],
        stackwise_num_strides=[1, 2, 2, 2],
        block_type="basic_block",
    )


def tiny_mit(image_size=64):
    """SegFormer's encoder: patch embeddings and attention over a fixed-size image."""
    return keras_hub.models.MiTBackbone(
        layerwise_depths=[1, 1, 1, 1],
        num_layers=4,
        layerwise_num_heads=[1, 1, 1, 1],
        layerwise_sr_ratios=[8, 4, 2, 1],
        max_drop_path_rate=0.0,
        layerwise_patch_sizes=[7, 3, 3, 3],
        layerwise_strides=[4, 2, 2, 2],
        hidden_dims=[8, 16, 24, 32],  # distinct: SegFormer's head names a layer by each
        image_shape=(image_size, image_size, 3),
    )


def tiny_backbone_and_converter(family):
    """A small backbone of each family and an image converter like its presets'."""
    if family == "resnet":
        converter = keras_hub.layers.ResNetImageConverter(
            scale=[1 / (255 * s) for s in STD], offset=[-m / s for m, s in zip(MEAN, STD)]
        )
        return tiny_resnet(), converter
    if family == "densenet":
        backbone = keras_hub.models.DenseNetBackbone(stackwise_num_repeats=[1, 1, 1, 1], growth_rate=4)
        return backbone, keras_hub.layers.DenseNetImageConverter(scale=1 / 255)
    return tiny_mit(), keras_hub.layers.MiTImageConverter(scale=1 / 127.5, offset=-1.0)


def save_preset(family, folder):
    """Writes a local preset folder (backbone and image converter) and returns its path as text."""
    backbone, converter = tiny_backbone_and_converter(family)
    backbone.save_to_preset(str(folder))
    converter.save_to_preset(str(folder))
    return str(folder)


def tiny_deeplab(num_classes=3):
    backbone = keras_hub.models.DeepLabV3Backbone(
        image_encoder=tiny_resnet(),
        spatial_pyramid_pooling_key="P5",
        upsampling_size=8,
        dilation_rates=[2, 4],
        low_level_feature_key="P2",
        projection_filters=8,
    )
    return keras_hub.models.DeepLabV3ImageSegmenter(backbone=backbone, num_classes=num_classes, activation="softmax")


def tiny_segformer(num_classes=3):
    backbone = keras_hub.models.SegFormerBackbone(image_encoder=tiny_mit(), projection_filters=8)
    return keras_hub.models.SegFormerImageSegmenter(backbone=backbone, num_classes=num_classes)
