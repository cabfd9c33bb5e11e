import keras
import numpy as np
import pytest

from kfcn.analysis import effective_receptive_field, receptive_field, translation_equivariance
from kfcn.models import plain_cnn, unet

pytestmark = pytest.mark.backend


def _two_branch(merge):
    inputs = keras.Input((24, 24, 2))
    a = keras.layers.Conv2D(2, 3, padding="same")(inputs)
    b = keras.layers.Conv2D(2, 1)(inputs)
    return keras.Model(inputs, merge([a, b]))


# The seed's operator table.
@pytest.mark.parametrize(
    "name, build, expected",
    [
        ("convolution, stride 1", lambda: keras.layers.Conv2D(2, 3, padding="same"), True),
        ("max-pooling, stride 2", lambda: keras.layers.MaxPooling2D(2), False),
        ("transposed convolution", lambda: keras.layers.Conv2DTranspose(2, 2, strides=2), True),
        ("upsampling", lambda: keras.layers.UpSampling2D(2), True),
        ("concatenation", lambda: _two_branch(keras.layers.Concatenate()), True),
        ("addition", lambda: _two_branch(keras.layers.Add()), True),
    ],
)
def test_operator_table(name, build, expected):
    report = translation_equivariance(build(), (24, 24, 2))
    assert report.equivariant is expected, f"{name}: {report.errors}"


def test_strided_pooling_is_equivariant_to_its_own_stride():
    report = translation_equivariance(keras.layers.MaxPooling2D(2), (24, 24, 1), shifts=[(2, 0), (0, 4)])
    assert report.equivariant and report.scale == 0.5


def test_padding_spoils_a_border_as_wide_as_half_the_field():
    model = plain_cnn((None, None, 1), num_layers=3, filters=4)  # field 7: 3 px spoiled
    report = translation_equivariance(model, (32, 32, 1), shifts=[(2, 0), (0, 2)])
    assert report.equivariant
    assert report.spoiled_border is not None and report.spoiled_border <= 3 + 2


def test_effective_field_is_inside_the_theoretical_one_and_smaller():
    model = plain_cnn((None, None, 1), num_layers=6, filters=8)
    erf = effective_receptive_field(model, (41, 41, 1), samples=4)
    assert erf.theoretical_size == 13
    outside = np.ones_like(erf.heatmap, dtype=bool)
    outside[20 - 6 : 20 + 7, 20 - 6 : 20 + 7] = False
    assert erf.heatmap[outside].sum() == pytest.approx(0.0, abs=1e-9)  # no gradient beyond the field
    assert erf.heatmap.sum() == pytest.approx(1.0)
    assert 0 < erf.coverage <= 1 and erf.sigma[0] < 13 / 2


def test_effective_field_of_a_unet_with_reinitialisation_and_png(tmp_path):
    model = unet((None, None, 1), num_classes=1, filters=4, depth=2)
    erf = effective_receptive_field(model, (48, 48, 1), samples=2, reinitialize=True)
    assert erf.centre == (24, 24) and erf.theoretical_size == receptive_field(model).size[0]
    path = erf.save_png(tmp_path / "erf.png")
    from PIL import Image

    assert Image.open(path).size == (96, 96)


def test_nothing_left_to_compare_is_an_error_not_a_verdict():
    # Conv 3x3: padding spoils 1 px; a 4 px shift: 5 px excluded at each edge, so an output must
    # have more than 10 px per side: 8 leaves nothing (the old report said "not equivariant").
    layer = keras.layers.Conv2D(2, 3, padding="same")
    with pytest.raises(ValueError, match=r"Nothing to compare.*at least 11 px per side"):
        translation_equivariance(layer, (8, 8, 1), shifts=[(4, 0)])
    with pytest.raises(ValueError, match="Nothing to compare"):
        translation_equivariance(layer, (10, 10, 1), shifts=[(4, 0)])
    report = translation_equivariance(layer, (11, 11, 1), shifts=[(4, 0)])
    assert report.equivariant and report.border == 5


@pytest.mark.parametrize(
    "input_shape, shifts, message",
    [
        ((16, 16), [(1, 0)], "height, width, channels"),
        ((16, 16, 0), [(1, 0)], "height, width, channels"),
        ((16, 16, 1), [], "list of"),
        ((16, 16, 1), [(1, 0, 0)], "list of"),
    ],
)
def test_bad_arguments_are_named(input_shape, shifts, message):
    with pytest.raises(ValueError, match=message):
        translation_equivariance(keras.layers.Conv2D(2, 3, padding="same"), input_shape, shifts=shifts)


def test_one_shift_pair_is_taken_as_a_list_of_one():
    report = translation_equivariance(keras.layers.Conv2D(2, 3, padding="same"), (16, 16, 1), shifts=(2, 1))
    assert list(report.errors) == [(2, 1)] and report.equivariant
