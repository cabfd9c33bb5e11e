"""Sérsic profiles against the analytic light they must hold."""

import math

import numpy as np
import pytest
from scipy import special

from kfcn.data.sersic import bulge_disk_galaxy, sersic_b, sersic_image


@pytest.mark.parametrize("index", [0.5, 1.0, 2.0, 4.0, 8.0])
def test_sersic_b_matches_the_ciotti_bertin_expansion(index):
    # Ciotti & Bertin (1999): b_n = 2n - 1/3 + 4/(405 n) + 46/(25515 n^2) + O(n^-3).
    expansion = 2 * index - 1 / 3 + 4 / (405 * index) + 46 / (25515 * index**2)
    assert sersic_b(index) == pytest.approx(expansion, abs=2e-3 / index)


@pytest.mark.parametrize("index, radius", [(1.0, 8.0), (4.0, 6.0)])
def test_light_inside_a_circle_is_the_incomplete_gamma_function(index, radius):
    # L(<R) / L = P(2n, b_n (R / r_e)^(1/n)) for a circular profile.
    image = sersic_image((96, 96), (48, 48), radius, index, total_flux=1.0)
    rows, cols = np.indices(image.shape)
    for outer in (radius, 2 * radius, 40.0):
        inside = image[np.hypot(rows - 48, cols - 48) <= outer].sum()
        expected = special.gammainc(2 * index, sersic_b(index) * (outer / radius) ** (1 / index))
        assert inside == pytest.approx(expected, rel=0.03)


def test_an_exponential_disk_well_inside_the_image_holds_its_total_flux():
    disk = sersic_image((128, 128), (63.7, 64.2), 6.0, 1.0, total_flux=250.0, axis_ratio=0.5, angle=0.7)
    assert disk.sum() == pytest.approx(250.0, rel=2e-3)


def test_turning_the_major_axis_by_90_degrees_transposes_a_centred_profile():
    flat = sersic_image((41, 41), (20, 20), 5.0, 1.0, 1.0, axis_ratio=0.4, angle=0.0)
    turned = sersic_image((41, 41), (20, 20), 5.0, 1.0, 1.0, axis_ratio=0.4, angle=math.pi / 2)
    np.testing.assert_allclose(turned, flat.T, atol=1e-6)
    assert flat[20, 30] > flat[30, 20]  # angle 0: the major axis runs along the columns


def test_galaxy_image_is_the_sum_of_its_components_plus_the_stated_noise():
    image, components = bulge_disk_galaxy((64, 64), seed=3, noise=0.02)
    residual = image[..., 0] - components.sum(-1)
    assert residual.std() == pytest.approx(0.02 * components.sum(-1).max(), rel=0.1)
    bulge, disk = components[..., 0], components[..., 1]
    assert bulge.max() > disk.max()  # the n = 4 bulge is the peaked one


def test_bad_profiles_are_refused():
    with pytest.raises(ValueError, match="axis_ratio"):
        sersic_image((8, 8), (4, 4), 2.0, 1.0, 1.0, axis_ratio=0)
    with pytest.raises(ValueError, match="index must be positive"):
        sersic_b(0)
