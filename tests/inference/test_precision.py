"""Mixed-precision prediction agrees with float32 within the tolerance the README states."""

import numpy as np
import pytest
from PIL import Image

from kfcn.inference import predict, predict_tiled
from kfcn.models import segnet, with_policy
from kfcn.samples import isbi2012_dir, shipped_model_path
from kfcn.saving import load_model


@pytest.mark.backend
def test_bfloat16_prediction_of_the_shipped_model_agrees_with_float32():
    model = load_model(shipped_model_path())
    image = np.asarray(Image.open(isbi2012_dir() / "images" / "slice_22.png"))[:128, :128]
    full = predict(model, image)
    half = predict(model, image, policy="mixed_bfloat16")
    assert half.dtype == np.float32
    assert np.abs(half - full).max() < 0.1 and np.abs(half - full).mean() < 0.01
    agreement = np.mean((half > 0.5) == (full > 0.5))
    assert agreement > 0.98  # the drift in pixel labels: under 2 %
    tiled = predict_tiled(model, image, 64, overlap=16, policy="mixed_bfloat16", progress=False)
    reference = predict_tiled(model, image, 64, overlap=16, progress=False)
    assert np.mean((tiled > 0.5) == (reference > 0.5)) > 0.98


@pytest.mark.backend
def test_policies_reach_every_layer_of_segnet(rng):
    model = segnet((None, None, 3), num_classes=3, filters=4, depth=2)
    fast = with_policy(model, "mixed_bfloat16")
    computing = {layer.compute_dtype for layer in fast.layers[1:-1] if layer.weights}
    assert computing == {"bfloat16"} and fast.layers[-1].compute_dtype == "float32"
    image = rng.integers(0, 256, (24, 40, 3)).astype("uint8")
    half, full = predict(model, image, policy="mixed_bfloat16"), predict(model, image)
    # An untrained network: the mean drift is small, the labels mostly agree (bfloat16 keeps 8 bits of mantissa).
    assert half.dtype == np.float32 and np.abs(half - full).mean() < 0.02
    assert np.mean(half.argmax(-1) == full.argmax(-1)) > 0.9
    with pytest.raises(ValueError, match="policy"):
        with_policy(model, "int8")


@pytest.mark.backend
def test_policy_float32_runs_a_mixed_precision_model_in_float32(rng):
    """A model saved from a mixed-precision run predicts in float32 when asked (`kfcn predict`'s default)."""
    model = segnet((None, None, 3), num_classes=3, filters=4, depth=2)
    mixed = with_policy(model, "mixed_bfloat16")
    image = rng.integers(0, 256, (24, 40, 3)).astype("uint8")
    np.testing.assert_array_equal(predict(mixed, image, policy="float32"), predict(model, image))
    as_saved = predict(mixed, image)  # None: the model as it is, in bfloat16
    assert np.abs(as_saved - predict(model, image)).max() > 0
