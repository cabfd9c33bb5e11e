"""Output heads: what the last layer means (classes, a mask, or values)."""

from __future__ import annotations

import keras

from kfcn.arguments import check_integer

HEADS = {"semantic": "softmax", "binary": "sigmoid", "regression": "linear"}


def resolve_head(head, channels):
    """The head for `channels` outputs: "binary" for one channel, else "semantic", unless given.

    Example:
    >>> resolve_head(None, 1), resolve_head(None, 3), resolve_head("regression", 3)
    ('binary', 'semantic', 'regression')
    """
    channels = check_integer("num_classes", channels, minimum=1, meaning="the number of output channels")
    if head is None:
        head = "binary" if channels == 1 else "semantic"
    if head not in HEADS:
        raise ValueError(f"`head` must be one of {', '.join(map(repr, HEADS))}; got {head!r}.")
    if head == "binary" and channels != 1:
        raise ValueError(f"A binary head has one sigmoid channel; got {channels} channels. Use num_classes=1.")
    if head == "semantic" and channels < 2:
        raise ValueError("A semantic (softmax) head needs num_classes >= 2; for a mask use num_classes=1.")
    return head


def activation_layer(head, name="output", logits=False):
    """The head's activation (linear with `logits=True`), in float32 even under mixed precision.

    Example:
    >>> activation_layer("binary").activation.__name__
    'sigmoid'
    """
    return keras.layers.Activation("linear" if logits else HEADS[head], dtype="float32", name=name)


def prediction_head(x, channels, head, name="output", logits=False):
    """A 1x1 convolution to `channels` outputs and the head's activation (none with `logits=True`).

    Example:
    >>> prediction_head(keras.Input((8, 8, 16)), 3, "semantic").shape
    (None, 8, 8, 3)
    """
    x = keras.layers.Conv2D(channels, 1, name=f"{name}_conv")(x)
    return activation_layer(head, name, logits)(x)
