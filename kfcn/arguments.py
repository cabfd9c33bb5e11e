"""Checks of plain arguments (counts, sizes, pairs of sizes) shared by every kfcn module.

One rule for what an integer argument is: a Python `int` or a NumPy integer (`np.int64(3)`,
as read from an array or a shape). Refused:

- a bool, although Python counts it as an int (`True == 1`): `num_classes=True` or
  `pool_size=True` is a slip, not a request for 1;
- a float, even a whole one (`2.0`): a size computed with `/` is rounded on purpose
  (`//`, `round`) by the caller, never silently here.

A failed check raises a ValueError (kfcn's error for a bad argument; the command line maps it
to exit status 2) that names the argument, what was given and what is accepted.

This module imports only the standard library and NumPy, so any kfcn module can use it
without an import cycle or loading Keras.

Example:
>>> check_integer("depth", 4, minimum=1)
4
>>> check_integer("depth", True, minimum=1)
Traceback (most recent call last):
...
ValueError: `depth` must be an int >= 1, got True (bool).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np


def is_integer(value) -> bool:
    """Whether `value` is an integer argument: an int or a NumPy integer, never a bool or a float.

    Example:
    >>> is_integer(3), is_integer(np.int64(3)), is_integer(True), is_integer(np.bool_(True)), is_integer(3.0)
    (True, True, False, False, False)
    """
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def check_integer(
    name: str,
    value,
    minimum: int | None = None,
    *,
    meaning: str | None = None,
    accepted: str | None = None,
    caller: str | None = None,
) -> int:
    """Returns `value` as a Python int, or raises a ValueError naming the argument and the fix.

    Args:
        name: the argument's name, as the caller spells it (quoted in the message).
        value: what was given.
        minimum: the smallest value accepted, or None for any integer.
        meaning: what the argument is, e.g. "a pixel count" (shown after its name).
        accepted: the message's account of what is accepted, when it says more than
            "an int >= minimum" (e.g. "a positive int or None" where the caller also takes None).
        caller: the public function or model the argument belongs to (prefixes the message).

    Example:
    >>> check_integer("min_size", np.int64(20), minimum=1)
    20
    >>> check_integer("min_size", 0, minimum=1, meaning="a pixel count", caller="touching_ellipses")
    Traceback (most recent call last):
    ...
    ValueError: touching_ellipses: `min_size` (a pixel count) must be an int >= 1, got 0.
    >>> check_integer("batch_size", 2.0, minimum=1)
    Traceback (most recent call last):
    ...
    ValueError: `batch_size` must be an int >= 1, got 2.0 (float).
    """
    if is_integer(value) and (minimum is None or value >= minimum):
        return int(value)
    if accepted is None:
        accepted = "an int" if minimum is None else f"an int >= {minimum}"
    raise ValueError(f"{_subject(name, meaning, caller)} must be {accepted}, got {_given(value)}.")


def normalize_pair(
    name: str,
    value,
    minimum: int = 1,
    *,
    meaning: str | None = None,
    caller: str | None = None,
) -> tuple[int, int]:
    """Returns `value` as a (rows, cols) pair of Python ints >= `minimum`; one int stands for both.

    A pair is a tuple, a list or a NumPy array of two integers (see `is_integer`).

    Example:
    >>> normalize_pair("pool_size", 2), normalize_pair("pool_size", [3, np.int64(2)])
    ((2, 2), (3, 2))
    >>> normalize_pair("pool_size", True)
    Traceback (most recent call last):
    ...
    ValueError: `pool_size` must be a positive int or a pair of them (rows, cols), got True (bool).
    """
    single = False
    if isinstance(value, np.ndarray) and value.ndim > 0:
        sides = tuple(value.ravel().tolist())  # NumPy scalars become Python ones (a bool stays a bool)
    elif isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        sides = tuple(value)
    else:
        single, sides = True, (value, value)
    if len(sides) == 2 and all(is_integer(side) and side >= minimum for side in sides):
        return int(sides[0]), int(sides[1])
    one = {0: "a non-negative int", 1: "a positive int"}.get(minimum, f"an int >= {minimum}")
    given = _given(value) if single else repr(value)
    raise ValueError(f"{_subject(name, meaning, caller)} must be {one} or a pair of them (rows, cols), got {given}.")


def check_integers(
    name: str,
    value,
    count: int | None = None,
    minimum: int = 1,
    *,
    meaning: str | None = None,
    caller: str | None = None,
    count_rule: str | None = None,
):
    """Returns an int argument as a Python int, or a sequence of them (`count` of them, where given) as a list.

    For arguments that take one number for every level or one per level (a U-Net's `filters`,
    an encoder's `convs_per_level`); `count_rule` says where `count` comes from ("depth + 1").

    Example:
    >>> check_integers("filters", 16), check_integers("filters", (8, np.int64(16)), count=2)
    (16, [8, 16])
    >>> check_integers("filters", [8, True], caller="unet")
    Traceback (most recent call last):
    ...
    ValueError: unet: `filters` must be an int >= 1 or a sequence of them, got [8, True]: True (bool) is not.
    """
    if is_integer(value):
        return check_integer(
            name, value, minimum, meaning=meaning, accepted=f"an int >= {minimum} or a sequence of them", caller=caller
        )
    subject = _subject(name, meaning, caller)
    if isinstance(value, np.ndarray) and value.ndim == 1:
        value = value.tolist()
    if not isinstance(value, Sequence) or isinstance(value, (str, bytes)):
        raise ValueError(f"{subject} must be an int >= {minimum} or a sequence of them, got {_given(value)}.")
    for item in value:
        if not (is_integer(item) and item >= minimum):
            raise ValueError(
                f"{subject} must be an int >= {minimum} or a sequence of them, got {value!r}: {_given(item)} is not."
            )
    if count is not None and len(value) != count:
        needed = f"{count_rule} = {count}" if count_rule else str(count)
        raise ValueError(f"{subject} needs {needed} entries (one per level), got {len(value)}: {list(value)!r}.")
    return [int(item) for item in value]


def _subject(name, meaning, caller):
    """The argument as a message names it: "unet: `depth`", "`min_size` (a pixel count)"."""
    prefix = f"{caller}: " if caller else ""
    return f"{prefix}`{name}`" + (f" ({meaning})" if meaning else "")


def _given(value):
    """The value given, with its type where the type is the problem: "0", "True (bool)", "'64' (str)"."""
    return repr(value) if is_integer(value) else f"{value!r} ({type(value).__name__})"
