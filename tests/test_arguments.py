"""kfcn.arguments: one rule for integer arguments (an int or a NumPy integer, never a bool or a float).

The module cases are worked by hand; the call-site cases check that arguments which Python would
let through as `True == 1` are now refused with a message naming the argument.
"""

import subprocess
import sys

import numpy as np
import pytest

from kfcn.arguments import check_integer, is_integer, normalize_pair


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, True),
        (-3, True),
        (2**40, True),
        (np.int64(3), True),
        (np.uint8(255), True),
        (np.int32(-1), True),
        (True, False),
        (False, False),
        (np.bool_(True), False),
        (2.0, False),
        (np.float32(2.0), False),
        ("2", False),
        (None, False),
        (np.array(3), False),  # a 0-d array is an array, not a number: index it or call .item()
        ([2], False),
    ],
)
def test_is_integer(value, expected):
    assert is_integer(value) is expected


def test_check_integer_returns_a_python_int():
    assert check_integer("depth", 4, minimum=1) == 4
    checked = check_integer("depth", np.int64(4), minimum=1)
    assert checked == 4 and type(checked) is int
    assert check_integer("offset", -7) == -7  # no minimum: any integer
    assert check_integer("seed", 0, minimum=0) == 0


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (True, "`depth` must be an int >= 1, got True (bool)."),
        (False, "`depth` must be an int >= 1, got False (bool)."),
        (2.0, "`depth` must be an int >= 1, got 2.0 (float)."),
        ("4", "`depth` must be an int >= 1, got '4' (str)."),
        (None, "`depth` must be an int >= 1, got None (NoneType)."),
        (0, "`depth` must be an int >= 1, got 0."),
        (np.int64(-2), f"`depth` must be an int >= 1, got {np.int64(-2)!r}."),  # NumPy 2 writes np.int64(-2)
    ],
)
def test_check_integer_names_the_argument_the_value_and_what_is_accepted(value, message):
    with pytest.raises(ValueError) as error:
        check_integer("depth", value, minimum=1)
    assert str(error.value) == message


def test_check_integer_message_options():
    with pytest.raises(ValueError) as error:
        check_integer("min_size", 0, minimum=1, meaning="a pixel count", caller="touching_ellipses")
    assert str(error.value) == "touching_ellipses: `min_size` (a pixel count) must be an int >= 1, got 0."
    with pytest.raises(ValueError) as error:
        check_integer("version", True, minimum=1, accepted="a positive int or None")
    assert str(error.value) == "`version` must be a positive int or None, got True (bool)."
    with pytest.raises(ValueError, match=r"^`label` must be an int, got 1\.5 \(float\)\.$"):
        check_integer("label", 1.5)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (2, (2, 2)),
        (np.int64(3), (3, 3)),
        ((2, 3), (2, 3)),
        ([4, np.int32(1)], (4, 1)),
        (np.array([5, 6]), (5, 6)),
    ],
)
def test_normalize_pair_accepts_one_int_or_two(value, expected):
    pair = normalize_pair("pool_size", value)
    assert pair == expected and all(type(side) is int for side in pair)


@pytest.mark.parametrize(
    "value",
    [True, False, (True, 2), [2, False], np.array([True, True]), 2.0, (2, 2.0), "2", (2,), (2, 2, 2), 0, (3, 0), None],
)
def test_normalize_pair_refuses_bools_floats_and_other_lengths(value):
    with pytest.raises(ValueError, match=r"^`pool_size` must be a positive int or a pair of them \(rows, cols\), got "):
        normalize_pair("pool_size", value)


def test_normalize_pair_minimum_and_message():
    assert normalize_pair("overlap", 0, minimum=0) == (0, 0)
    with pytest.raises(ValueError) as error:
        normalize_pair("overlap", (-1, 4), minimum=0, meaning="output pixels shared by adjacent tiles")
    assert str(error.value) == (
        "`overlap` (output pixels shared by adjacent tiles) must be a non-negative int or a pair of them "
        "(rows, cols), got (-1, 4)."
    )
    with pytest.raises(ValueError, match=r"an int >= 8 or a pair of them \(rows, cols\), got True \(bool\)\.$"):
        normalize_pair("tile_size", True, minimum=8, caller="predict_tiled")


def test_the_module_imports_neither_keras_nor_tensorflow():
    code = "import sys, kfcn.arguments; print(sorted({'keras', 'tensorflow'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


# Call sites: each took `True` as 1 before (or spelled the rule out by hand); now one rule refuses it.


def test_a_model_refuses_a_bool_class_count():
    from kfcn.models import unet

    with pytest.raises(ValueError, match=r"`num_classes` \(the number of output channels\) .* got True \(bool\)"):
        unet((64, 64, 1), num_classes=True)
    with pytest.raises(ValueError, match=r"unet: `depth` must be an int >= 1, got True \(bool\)"):
        unet((64, 64, 1), num_classes=2, depth=True)


def test_layers_refuse_a_bool_pool_size():
    from kfcn.layers import MaxPoolingWithArgmax2D, MaxUnpooling2D

    with pytest.raises(ValueError, match=r"`pool_size` must be a positive int or a pair .*got True \(bool\)"):
        MaxPoolingWithArgmax2D(pool_size=True)
    with pytest.raises(ValueError, match=r"`output_size` .*got \(True, 4\)"):
        MaxUnpooling2D(2, output_size=(True, 4))
    assert MaxPoolingWithArgmax2D(pool_size=np.int64(3)).get_config()["pool_size"] == (3, 3)


def test_metrics_refuse_bool_class_ids():
    from kfcn.metrics import DiceScore

    with pytest.raises(ValueError, match=r"`class_ids` must be distinct ints"):
        DiceScore(2, class_ids=[True])
    with pytest.raises(ValueError, match=r"`ignore_class` must be an int label value .*got False \(bool\)"):
        DiceScore(3, ignore_class=False)


def test_numpy_helpers_refuse_bool_sizes():
    from kfcn.data import degrade, three_class_labels
    from kfcn.instances import instances_from_foreground

    with pytest.raises(ValueError, match=r"degrade: `downsample` .*got True \(bool\)"):
        degrade(np.zeros((8, 8)), downsample=True)
    with pytest.raises(ValueError, match=r"three_class_labels: `boundary_width` .*got True \(bool\)"):
        three_class_labels(np.zeros((4, 4), "int32"), boundary_width=True)  # taken as 1 before
    with pytest.raises(ValueError, match=r"`min_size` \(a pixel count\) .*got True \(bool\)"):
        instances_from_foreground(np.zeros((4, 4)), min_size=True)  # taken as 1 before


def test_predict_resized_refuses_a_bool_size():
    from kfcn.inference import predict_resized
    from kfcn.models import unet

    model = unet((None, None, 1), num_classes=2, filters=2, depth=2)
    image = np.zeros((12, 12), np.uint8)
    with pytest.raises(ValueError, match=r"`size` \(the resolution to predict at\) .*got \(True, 8\)"):
        predict_resized(model, image, (True, 8))
    assert predict_resized(model, image, np.int64(8)).shape == (12, 12, 2)
