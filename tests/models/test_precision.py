"""kfcn.models.precision: a model's compute policy changed and changed back, with the same weights."""

import keras
import numpy as np
import pytest

from kfcn.models import segnet, unet, with_policy
from kfcn.models.precision import computes_in_float32


@pytest.mark.backend
@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_float32_undoes_a_mixed_policy_and_computes_as_the_original(policy, rng):
    keras.utils.set_random_seed(0)
    model = segnet((None, None, 3), num_classes=3, filters=4, depth=2)
    mixed = with_policy(model, policy)
    back = with_policy(mixed, "float32")
    assert not computes_in_float32(mixed) and computes_in_float32(back)
    assert {layer.compute_dtype for layer in back.layers} == {"float32"}
    assert [layer.name for layer in back.layers] == [layer.name for layer in model.layers]
    images = rng.integers(0, 256, (2, 24, 40, 3)).astype("float32")
    # The same float32 operations on the same weights: bit for bit.
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(back(images, training=False)),
        keras.ops.convert_to_numpy(model(images, training=False)),
    )


def test_float32_returns_a_float32_model_itself():
    model = unet((None, None, 1), num_classes=1, filters=2, depth=1)
    assert computes_in_float32(model) and with_policy(model, "float32") is model
