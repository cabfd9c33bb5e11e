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


def _gate(images, ok, message):
    """`images` if `ok`, else an `InvalidArgumentError` carrying `message`.

    The check is a data dependency (a `tf.cond` whose output every later op reads), not a
    control dependency: Grappler, which TF Serving runs too, may reorder ops that only
    have control edges to an assert, so that a convolution sees the bad tensor first.
    """

    def refuse():
        with tf.control_dependencies([tf.debugging.Assert(False, [message], name="bad_request")]):
            return tf.identity(images)

    return tf.cond(ok, lambda: tf.identity(images), refuse)


def checked_request(images, contract):
    """`images` as float32 after run-time checks of everything a client can get wrong, with messages that name it.

    A server (TF Serving) feeds requests to the graph without checking them against the
    signature, and a tensor of the wrong rank reaching a oneDNN convolution aborts the
    whole serving process. These checks come first, in order, each reading the tensor that
    passed the one before: rank 4, the contract's channels, no empty axis, the fixed size of
    a fixed-size model, finite values inside the contract's pixel range. A malformed request
    gets an `INVALID_ARGUMENT` error naming the input and the fix, and the server goes on.
    Integer requests (uint8, uint16) take the same checks, then an exact cast to float32;
    the value checks run only where the type can hold a value the contract refuses (uint16
    into a 12-bit model, never uint8 into an 8-bit one).

    Example:
    >>> from kfcn.models import unet
    >>> from kfcn.export.contract import serving_contract
    >>> contract = serving_contract(unet((None, None, 1), num_classes=1, filters=2, depth=2))
    >>> try:
    ...     checked_request(tf.zeros((5, 5, 1)), contract)
    ... except tf.errors.InvalidArgumentError as error:
    ...     print("this request has rank 3 (one image is sent as shape (1, height, width, 1))" in error.message)
    True
    """
    images = _checked_shape(images, contract)
    return _checked_values(images, contract)


def _checked_shape(images, contract):
    """`images` after the checks of its shape: rank 4, the contract's channels, no empty axis, a fixed size."""
    name, channels = contract.input_name, contract.channels
    layout = f"(batch, height, width, {channels})"
    rank = tf.size(tf.shape(images))
    images = _gate(
        images,
        tf.equal(rank, 4),
        tf.strings.format(
            f"{name} must be a batch of images of shape {layout}; this request has rank {{}} (one image is sent as "
            f"shape (1, height, width, {channels})).",
            rank,
        ),
    )
    shape = tf.shape(images)  # rank 4 from here on
    images = _gate(
        images,
        tf.equal(shape[3], channels),
        tf.strings.format(f"{name} must have {channels} channel(s) {layout}; this request has {{}}.", shape[3]),
    )
    images = _gate(
        images,
        tf.reduce_all(shape[:3] > 0),
        tf.strings.format(f"{name} has an empty axis: shape {{}}; send at least one image of at least 1x1.", shape),
    )
    if contract.fixed_size is not None:
        height, width = contract.fixed_size
        images = _gate(
            images,
            tf.reduce_all(tf.equal(shape[1:3], [height, width])),
            tf.strings.format(
                f"{name}: this model was built for {height}x{width} images only; this request is {{}}x{{}}.",
                (shape[1], shape[2]),
            ),
        )
    return tf.ensure_shape(images, (None, None, None, channels))


def _checked_values(images, contract):
    """`images` (rank 4) as float32 after the checks of its values: finite, inside the contract's pixel range."""
    name = contract.input_name
    dtype = images.dtype
    if dtype.is_floating:
        images = _gate(
            images,
            tf.reduce_all(tf.math.is_finite(images)),
            f"{name} holds NaN or infinite values; send the image's stored pixel values.",
        )
    images = tf.cast(images, tf.float32)  # exact for uint8 and uint16
    if contract.input_range is not None:
        low, high = (float(v) for v in contract.input_range)
        if not (dtype.is_integer and low <= dtype.min and dtype.max <= high):  # uint8 into [0, 255]: nothing to check
            images = _gate(
                images,
                tf.reduce_all((images >= low) & (images <= high)),
                tf.strings.format(
                    f"{name} takes raw pixel values in [{low:g}, {high:g}]; this request holds values from {{}} to "
                    "{}. Send the pixels as stored, not rescaled.",
                    (tf.reduce_min(images), tf.reduce_max(images)),
                ),
            )
    return images


def serving_function(
    model, contract, height=None, width=None, batch=None, checked=False, input_dtype="float32", pinned_input=False
):
    """A `tf.function` with one named input and one named output, for export.

    With `checked=True` (the SavedModel that servers load) the input's rank is left open
    in the signature and every request goes through `checked_request` before the network
    runs; TFLite and ONNX take the static signature, whose runtimes check shapes themselves.
    The input is float32, or with `input_dtype="uint8"` / `"uint16"` the raw pixels as
    stored, cast to float32 in the graph (exactly). `pinned_input=True` (TFLite int8 with
    uint8 input) fixes the input's int8 quantization to the contract's 0-255 range with a
    FakeQuant op the converter reads, so that the file's uint8 input holds each pixel
    value exactly (scale 1, zero point 0) whatever range the calibration images cover.

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
    shape = None if checked else (batch, height, width, contract.channels)
    spec = tf.TensorSpec(shape, tf.as_dtype(input_dtype), name=contract.input_name)

    @tf.function(input_signature=[spec], autograph=False)
    def serve(images):
        images = checked_request(images, contract) if checked else tf.cast(images, tf.float32)
        if pinned_input:
            low, high = (float(v) for v in contract.input_range)
            images = tf.quantization.fake_quant_with_min_max_args(images, min=low, max=high, num_bits=8)
        return {contract.output_name: tf.identity(padded_call(model, contract, images), name=contract.output_name)}

    return serve
