"""kfcn's tools take any Keras model: keras-hub's DeepLabV3 and SegFormer segmenters, random weights (no download)."""

import math

import numpy as np
import pytest

from kfcn.analysis import receptive_field, translation_equivariance
from kfcn.inference import model_geometry, predict, predict_tiled

keras_hub = pytest.importorskip("keras_hub")

pytestmark = pytest.mark.backend


@pytest.fixture(scope="module")
def deeplab():
    from tests.hub_models import tiny_deeplab

    return tiny_deeplab()


@pytest.fixture(scope="module")
def segformer():
    from tests.hub_models import tiny_segformer

    return tiny_segformer()


def test_analysis_of_deeplab(deeplab):
    field = receptive_field(deeplab)
    assert math.isinf(field.size[0]), "the image-pooling branch sees the whole image"
    assert field.required_multiple == 32


def test_prediction_of_deeplab(deeplab, rng):
    image = rng.uniform(0, 255, (70, 90, 3)).astype("float32")
    whole = predict(deeplab, image)
    assert whole.shape == (70, 90, 3)
    np.testing.assert_allclose(whole.sum(-1), 1.0, atol=1e-4)
    # A global field: tiles cannot equal the whole image, but tiling runs and stays a probability.
    tiled = predict_tiled(deeplab, image, 64, blend="gaussian", progress=False)
    assert tiled.shape == whole.shape and np.all(np.isfinite(tiled))
    np.testing.assert_allclose(tiled.sum(-1), 1.0, atol=1e-4)
    assert model_geometry(deeplab).multiple == 32


def test_equivariance_of_a_global_field_model_is_refused_not_misreported(deeplab):
    # Image pooling sees the whole image: no pixel is free of border effects, so nothing can be compared.
    with pytest.raises(ValueError, match="Nothing to compare"):
        translation_equivariance(deeplab, (64, 64, 3), shifts=[(32, 0)])


def test_segformer_is_refused_in_words(segformer, rng):
    # MiT cuts the image into a sequence of patches (tokens) at a fixed size: no map kfcn can trace or tile.
    assert segformer.predict(rng.uniform(0, 255, (1, 64, 64, 3)), verbose=0).shape == (1, 64, 64, 3)
    for tool in (lambda: receptive_field(segformer), lambda: predict(segformer, np.zeros((64, 64, 3), "float32"))):
        with pytest.raises(ValueError, match="sequence of tokens"):
            tool()
