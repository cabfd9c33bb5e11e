"""The exported graph: mirror-pad any image size to one the network takes, run it, crop back."""

from __future__ import annotations

import tensorflow as tf


def _accepted_size(size, minimum, multiple):
    """The smallest side >= size of the form minimum + k * multiple."""
    steps = tf.maximum(0, (size - minimum + multiple - 1) // multiple)
    return minimum + steps * multiple


def _mirror_indices(size, before, total):
    """Indices into an axis of length `size` that mirror it (reflect, no edge repeat) on both sides.

    Works for any amount of padding (it repeats the reflection), unlike `tf.pad`'s
    REFLECT, which needs the padding to be smaller than the image.
    """
    period = tf.maximum(2 * size - 2, 1)
    index = tf.math.floormod(tf.range(total) - before, period)
    return tf.where(index >= size, period - index, index)


def padded_call(model, contract, images):
    """Runs `model` on `images` (B, H, W, C) of any H, W: pads by mirroring, crops the output back.

    The padding follows `kfcn.inference.predict`: the valid-padding margin on every
    side, then the bottom/right up to the next size the network takes. Sizes known
    when tracing and already accepted get no padding ops at all.
    """
    images = tf.cast(images, tf.float32)
    margin, minimum, multiple = contract.margin, contract.minimum, contract.multiple
    static = images.shape[1:3]
    if margin == 0 and all(s is not None and s >= minimum and (s - minimum) % multiple == 0 for s in static):
        return _call(model, contract, images, tf.shape(images), 0)
    shape = tf.shape(images)
    padded = images
    for axis in (1, 2):
        size = shape[axis]
        total = _accepted_size(size + 2 * margin, minimum, multiple)
        padded = tf.gather(padded, _mirror_indices(size, margin, total), axis=axis)
    outputs = _call(model, contract, padded, shape, -margin)
    return outputs[:, : shape[1], : shape[2], :]


def _call(model, contract, images, shape, offset):
    """Calls the model with its image and, if it has one, the whole-image coordinate frame."""
    if contract.frame_input is None:
        return model(images, training=False)
    from kfcn.layers import whole_image_frame

    frame = whole_image_frame(tf.shape(images)[0], shape[1], shape[2], top=offset, left=offset)
    return model({contract.image_input: images, contract.frame_input: frame}, training=False)


def serving_function(model, contract, height=None, width=None, batch=None):
    """A `tf.function` with one named float32 input and one named output, for export.

    Example:
    >>> from kfcn.models import unet
    >>> from kfcn.export.contract import serving_contract
    >>> model = unet((None, None, 1), num_classes=1, filters=2, depth=2)
    >>> serve = serving_function(model, serving_contract(model))
    >>> out = serve(tf.zeros((1, 10, 7, 1)))
    >>> list(out), tuple(out["probabilities"].shape)
    (['probabilities'], (1, 10, 7, 1))
    """
    if contract.fixed_size is not None:
        height, width = contract.fixed_size
    spec = tf.TensorSpec((batch, height, width, contract.channels), tf.float32, name=contract.input_name)

    @tf.function(input_signature=[spec], autograph=False)
    def serve(images):
        return {contract.output_name: tf.identity(padded_call(model, contract, images), name=contract.output_name)}

    return serve
