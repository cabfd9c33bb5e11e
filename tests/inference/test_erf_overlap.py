"""overlap="erf": the rule on a network whose effective receptive field is known in closed form."""

import numpy as np
import pytest

from kfcn.inference import erf_overlap, predict, predict_tiled
from kfcn.models import plain_cnn
from tests.tolerances import EPS32, fan_in

LAYERS = 6


def averaging_network():
    """Six 3x3 convolutions that average their input: on positive inputs (ReLU is then the identity)
    the centre output's input gradient is the six-fold convolution of the 3x3 box."""
    model = plain_cnn((None, None, 1), num_layers=LAYERS, filters=1, input_range=None)
    for layer in model.layers:
        if layer.weights:
            kernel, bias = layer.get_weights()
            layer.set_weights([np.full_like(kernel, 1 / 9), np.zeros_like(bias)])
    return model


def radius_95_by_hand():
    profile = np.ones(1)
    for _ in range(LAYERS):
        profile = np.convolve(profile, np.ones(3) / 3)  # 1-D gradient profile, 13 taps
    centre = len(profile) // 2
    radius = 0
    while profile[centre - radius : centre + radius + 1].sum() ** 2 < 0.95:  # the 2-D mass in a square
        radius += 1
    return radius


@pytest.mark.backend
def test_the_overlap_is_twice_the_95_percent_radius(rng):
    model = averaging_network()
    image = rng.uniform(1, 255, (120, 100)).astype("float32")
    assert erf_overlap(model, image) == 2 * radius_95_by_hand()  # 2 * 3 = 6 of the 12-px exact overlap


@pytest.mark.backend
def test_erf_tiling_is_close_and_the_exact_overlap_is_exact(rng):
    model = averaging_network()
    image = rng.uniform(1, 255, (120, 100)).astype("float32")
    whole = predict(model, image)
    exact = predict_tiled(model, image, 32, progress=False)
    cheap = predict_tiled(model, image, 32, overlap="erf", progress=False)
    inner = (slice(LAYERS, -LAYERS), slice(LAYERS, -LAYERS))  # away from the image border
    # Averaging: every term is positive, so reordered sums stay within ε·ΣK relative (tests/tolerances.py).
    np.testing.assert_allclose(exact[inner], whole[inner], rtol=EPS32 * fan_in(model))
    relative = np.abs(cheap - whole)[inner] / whole[inner]
    assert 0 < relative.max() < 0.05  # at most the 5 % of gradient mass left outside the overlap
    with pytest.raises(ValueError, match="'erf'"):
        predict_tiled(model, image, 32, overlap="receptive", progress=False)
