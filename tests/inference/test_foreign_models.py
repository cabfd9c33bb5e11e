"""kfcn's tools take any Keras model: keras-cv's DeepLabV3Plus, built by hand (presets download)."""

import math

import numpy as np
import pytest

from kfcn.analysis import receptive_field, translation_equivariance
from kfcn.inference import model_geometry, predict, predict_tiled

pytestmark = pytest.mark.backend


@pytest.fixture(scope="module")
def deeplab():
    keras_cv = pytest.importorskip("keras_cv")
    backbone = keras_cv.models.ResNetV2Backbone(
        stackwise_filters=[8, 16, 32, 64],
        stackwise_blocks=[2, 2, 2, 2],
        stackwise_strides=[1, 2, 2, 2],
        include_rescaling=False,
        input_shape=(None, None, 3),
    )
    return keras_cv.models.DeepLabV3Plus(backbone=backbone, num_classes=3, projection_filters=8)


def test_analysis_of_deeplab(deeplab):
    field = receptive_field(deeplab)
    assert math.isinf(field.size[0]), "the image-pooling branch sees the whole image"
    assert field.required_multiple == 32


def test_prediction_of_deeplab(deeplab, rng):
    image = rng.random((70, 90, 3)).astype("float32")
    whole = predict(deeplab, image)
    assert whole.shape == (70, 90, 3)
    np.testing.assert_allclose(whole.sum(-1), 1.0, atol=1e-4)
    tiled = predict_tiled(deeplab, image, 64, blend="gaussian", progress=False)
    assert tiled.shape == whole.shape and np.all(np.isfinite(tiled))
    assert model_geometry(deeplab).multiple == 32


def test_equivariance_of_a_global_field_model_is_refused_not_misreported(deeplab):
    # Image pooling sees the whole image: no pixel is free of border effects, so nothing can be compared.
    with pytest.raises(ValueError, match="Nothing to compare"):
        translation_equivariance(deeplab, (64, 64, 3), shifts=[(32, 0)])
