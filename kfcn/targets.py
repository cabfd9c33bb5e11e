"""Checks of targets (labels) shared by kfcn's losses and metrics: bad values raise where they can
be seen (an eager call) and poison the result with NaN where they cannot (a compiled graph).

Example:
>>> check_ignore_class(11)
11
"""

from __future__ import annotations

import math

import numpy as np

from kfcn.arguments import check_integer

# Keras is imported inside each function: kfcn.losses and kfcn.metrics import this module while
# kfcn registers them with Keras, so it must not be the module that first imports Keras.

RAW_MASK_FIX = "for a raw 0/255 mask use label_mode='binary' in kfcn.data.folder_dataset, or labels // 255"


def refuse_or_poison(bad, message):
    """Raises `ValueError(message())` if the scalar boolean `bad` is concretely true.

    Concrete values (an eager call on NumPy arrays or tensors, PyTorch's eager `fit`)
    can be inspected, so a bad input raises. Inside a compiled graph (`tf.function`,
    `jax.jit`) the value is not known yet: `bad` is returned, and the caller turns
    its result into NaN where it is true (see `poison`).

    Example:
    >>> import keras
    >>> labels = keras.ops.convert_to_tensor([0, 255])
    >>> refuse_or_poison(keras.ops.any(labels > 1), lambda: "labels must be 0 or 1")
    Traceback (most recent call last):
    ...
    ValueError: labels must be 0 or 1
    """
    from keras import ops

    try:
        concrete = bool(ops.convert_to_numpy(bad))
    except Exception:  # a symbolic tensor or a tracer: no value before the graph runs
        return bad
    if concrete:
        raise ValueError(message())
    return bad


def poison(value, bad):
    """Returns `value`, or NaN wherever the boolean `bad` (broadcastable) is true.

    Example:
    >>> import keras
    >>> keras.ops.convert_to_numpy(poison(keras.ops.ones(2), keras.ops.convert_to_tensor(True))).tolist()
    [nan, nan]
    """
    from keras import ops

    return ops.where(bad, ops.full_like(value, math.nan), value)


def examples_of(values, where_bad, count=5):
    """A few distinct offending values, for an error message (eager values only).

    Example:
    >>> labels = np.array([0, 255, 1, 255, 7])
    >>> examples_of(labels, labels > 1)
    '7, 255'
    """
    from keras import ops

    values, where_bad = ops.convert_to_numpy(values), ops.convert_to_numpy(where_bad)
    found = np.unique(np.broadcast_to(values, where_bad.shape)[where_bad])
    return ", ".join(f"{v:g}" for v in found[:count]) + (", ..." if len(found) > count else "")


def check_ignore_class(ignore_class):
    """Returns `ignore_class` as an int (or None), or raises a ValueError naming the fix.

    Example:
    >>> check_ignore_class(11)
    11
    """
    if ignore_class is None:
        return None
    return check_integer(
        "ignore_class", ignore_class, accepted="an int label value (e.g. 11 for CamVid's void) or None"
    )
