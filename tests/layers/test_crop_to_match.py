import numpy as np
import pytest

from kfcn.layers import CropToMatch
from tests.layer_testing import run_layer_test, to_numpy

pytestmark = pytest.mark.backend


def test_centre_crop(rng):
    x = rng.normal(size=(1, 64, 65, 2)).astype("float32")
    ref = np.zeros((1, 56, 56, 1), "float32")
    y = to_numpy(CropToMatch()([x, ref]))
    np.testing.assert_array_equal(y, x[:, 4:60, 4:60])


def test_layer_contract(rng):
    x = rng.normal(size=(2, 10, 10, 2)).astype("float32")
    ref = rng.normal(size=(2, 6, 6, 2)).astype("float32")
    run_layer_test(CropToMatch, {}, [x, ref], expected_output_shape=(2, 6, 6, 2))


def test_rejects_larger_reference():
    with pytest.raises(ValueError, match="larger"):
        CropToMatch()([np.zeros((1, 4, 4, 1), "float32"), np.zeros((1, 6, 6, 1), "float32")])
