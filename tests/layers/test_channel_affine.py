import numpy as np
import pytest

from kfcn.layers import ChannelAffine
from kfcn.layers.channel_affine import per_channel_values
from tests.layer_testing import run_layer_test, to_numpy

pytestmark = pytest.mark.backend


def test_reverses_then_scales_and_offsets_each_channel(rng):
    x = rng.uniform(0, 255, (2, 5, 4, 3)).astype("float32")
    layer = ChannelAffine(scale=[1.0, 0.5, 2.0], offset=[-103.9, -116.8, -123.7], reverse_channels=True)
    expected = x[..., ::-1] * np.array([1.0, 0.5, 2.0]) + np.array([-103.9, -116.8, -123.7])
    np.testing.assert_allclose(to_numpy(layer(x)), expected, rtol=1e-6, atol=1e-4)


def test_one_number_applies_to_every_channel(rng):
    x = rng.uniform(0, 255, (1, 3, 3, 2)).astype("float32")
    np.testing.assert_allclose(to_numpy(ChannelAffine(1 / 127.5, -1)(x)), x / 127.5 - 1, atol=1e-6)


def test_layer_contract(rng):
    x = rng.uniform(0, 255, (2, 6, 6, 3)).astype("float32")
    run_layer_test(
        ChannelAffine, {"scale": [1.0, 2.0, 3.0], "offset": [0.0, 1.0, 2.0], "reverse_channels": True}, x, train=False
    )


def test_refusals():
    with pytest.raises(ValueError, match="2 values for an input of 3 channels"):
        ChannelAffine(scale=[1.0, 2.0])(np.zeros((1, 2, 2, 3), "float32"))
    with pytest.raises(ValueError, match="finite numbers"):
        ChannelAffine(offset=[float("nan")])
    with pytest.raises(ValueError, match="one number per channel"):
        ChannelAffine(scale="bgr")


def test_per_channel_values_repeat_a_number_and_refuse_another_count():
    assert per_channel_values("scale", 0.5, channels=3) == (0.5, 0.5, 0.5)
    assert per_channel_values("offset", [1, 2, 3], channels=3) == (1.0, 2.0, 3.0)
    with pytest.raises(ValueError, match="encoder_preprocessing: `scale` needs finite numbers, 1 or 3 numbers"):
        per_channel_values("scale", [1, 2], "encoder_preprocessing", channels=3)
