"""kfcn.targets: a bad target raises where its values can be seen and poisons the result where not."""

import keras
import numpy as np
import pytest

from kfcn.targets import check_ignore_class, examples_of, poison, refuse_or_poison


def test_a_concrete_bad_value_raises_the_message():
    labels = keras.ops.convert_to_tensor(np.array([0, 255]))
    with pytest.raises(ValueError, match="must be 0 or 1"):
        refuse_or_poison(keras.ops.any(labels > 1), lambda: "labels must be 0 or 1")
    good = refuse_or_poison(keras.ops.any(labels > 300), lambda: "never")
    assert not bool(keras.ops.convert_to_numpy(good))


def test_poison_puts_nan_exactly_where_the_target_was_bad():
    values = keras.ops.convert_to_tensor(np.array([1.0, 2.0, 3.0], "float32"))
    poisoned = keras.ops.convert_to_numpy(poison(values, keras.ops.convert_to_tensor(np.array([False, True, False]))))
    np.testing.assert_array_equal(np.isnan(poisoned), [False, True, False])
    assert poisoned[0] == 1.0 and poisoned[2] == 3.0


def test_examples_name_a_few_distinct_offending_values():
    labels = np.arange(20)
    assert examples_of(labels, labels >= 10, count=3) == "10, 11, 12, ..."


@pytest.mark.parametrize("bad", [True, 1.5, "11", [11]])
def test_ignore_class_is_an_int_not_a_bool(bad):
    with pytest.raises(ValueError, match="`ignore_class` must be an int"):
        check_ignore_class(bad)
    assert check_ignore_class(np.int64(11)) == 11 and check_ignore_class(None) is None
