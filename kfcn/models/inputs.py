"""Model inputs shared by every builder: the image, extra input maps, coordinate channels."""

from __future__ import annotations

import keras

from kfcn.layers import FRAME_INPUT_NAME, CoordinateChannels

IMAGE_INPUT_NAME = "image"


def check_input_shape(input_shape, model_name):
    """Checks `(height, width, channels)`: channels known, sizes positive ints or None.

    Example:
    >>> check_input_shape((None, None, 3), "unet")  # fine: returns None
    >>> check_input_shape((64, 64), "unet")
    Traceback (most recent call last):
    ...
    ValueError: unet: `input_shape` is (height, width, channels), e.g. (None, None, 1); got (64, 64).
    """
    if len(tuple(input_shape)) != 3:
        raise ValueError(
            f"{model_name}: `input_shape` is (height, width, channels), e.g. (None, None, 1); got {input_shape!r}."
        )
    height, width, channels = input_shape
    if not isinstance(channels, int) or channels < 1:
        raise ValueError(f"{model_name}: the channel count must be a positive int, got {channels!r}.")
    for size in (height, width):
        if size is not None and (not isinstance(size, int) or size < 1):
            raise ValueError(f"{model_name}: image sizes must be positive ints or None, got {input_shape!r}.")


def check_multiple(input_shape, multiple, model_name, minimum=None):
    """Raises a clear error if a static size is not a multiple of the model's total stride.

    Example:
    >>> check_multiple((100, None, 1), 16, "unet")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: unet: input height 100 is not a multiple of 16, the model's total stride. Crop or pad to 96 or 112, ...
    """
    minimum = multiple if minimum is None else minimum
    for axis, size in zip(("height", "width"), input_shape[:2]):
        if size is None:
            continue
        if size < minimum:
            raise ValueError(
                f"{model_name}: input {axis} {size} is too small for this depth: it needs at least "
                f"{minimum} pixels. Use a smaller `depth` or a larger input."
            )
        if size % multiple:
            below, above = size - size % multiple, size - size % multiple + multiple
            raise ValueError(
                f"{model_name}: input {axis} {size} is not a multiple of {multiple}, the model's total "
                f"stride. Crop or pad to {below or above} or {above}, build with input size None and "
                "predict through kfcn.inference.predict (which pads automatically), or reduce `depth`."
            )


def model_inputs(input_shape, extra_inputs=None, coordinate_channels=False):
    """Creates the inputs and the tensor the network starts from.

    Args:
        input_shape: `(height, width, channels)` of the image; sizes may be None.
        extra_inputs: optional `{name: channels}` of further maps of the image's size
            (a field-of-view mask, a prior segmentation), concatenated with the image:
            the "position information through masks" of the design.
        coordinate_channels: append `CoordinateChannels` computed from a second input
            named "coordinate_frame" of shape (4,) (see `kfcn.layers.CoordinateChannels`).

    Returns:
        `(inputs, x)`: a single `keras.Input` when there is only the image, else a dict
        of inputs keyed by name; and the tensor to build on.

    Example:
    >>> inputs, x = model_inputs((None, None, 3), {"fov_mask": 1}, coordinate_channels=True)
    >>> sorted(inputs), x.shape[-1]
    (['coordinate_frame', 'fov_mask', 'image'], 6)
    """
    image = keras.Input(tuple(input_shape), name=IMAGE_INPUT_NAME)
    inputs = {IMAGE_INPUT_NAME: image}
    x = image
    for name, channels in (extra_inputs or {}).items():
        inputs[name] = keras.Input((*input_shape[:2], channels), name=name)
    if len(inputs) > 1:
        x = keras.layers.Concatenate(name="input_concat")(list(inputs.values()))
    if coordinate_channels:
        frame = keras.Input((4,), name=FRAME_INPUT_NAME)
        inputs[FRAME_INPUT_NAME] = frame
        x = CoordinateChannels(name="coordinate_channels")([x, frame])
    return (image if len(inputs) == 1 else inputs), x
