"""Model inputs shared by every builder: the image, extra input maps, coordinate channels."""

from __future__ import annotations

import math

import keras

from kfcn.arguments import is_integer
from kfcn.layers import FRAME_INPUT_NAME, CoordinateChannels, InputSizeCheck, size_problem
from kfcn.names import IMAGE_INPUT_NAME, INPUT_SCALING_NAME


def check_input_shape(input_shape, model_name):
    """Checks `(height, width, channels)`: channels known, sizes positive ints or None, channels-last.

    Example:
    >>> check_input_shape((None, None, 3), "unet")  # fine: returns None
    >>> check_input_shape((64, 64), "unet")
    Traceback (most recent call last):
    ...
    ValueError: unet: `input_shape` is (height, width, channels), e.g. (None, None, 1); got (64, 64).
    """
    check_channels_last(model_name)
    if len(tuple(input_shape)) != 3:
        raise ValueError(
            f"{model_name}: `input_shape` is (height, width, channels), e.g. (None, None, 1); got {input_shape!r}."
        )
    height, width, channels = input_shape
    if not is_integer(channels) or channels < 1:
        raise ValueError(f"{model_name}: the channel count must be a positive int, got {channels!r}.")
    for size in (height, width):
        if size is not None and (not is_integer(size) or size < 1):
            raise ValueError(f"{model_name}: image sizes must be positive ints or None, got {input_shape!r}.")


def check_multiple(input_shape, multiple, model_name, minimum=None, offset=0):
    """Raises a clear error if a static size is not one the model's strides can take.

    Example:
    >>> check_multiple((100, None, 1), 16, "unet")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: unet: input height 100 is not a multiple of 16, the model's total stride; the nearest ...
    """
    minimum = multiple if minimum is None else minimum
    for axis, size in zip(("height", "width"), input_shape[:2]):
        problem = None if size is None else size_problem(size, multiple, offset, minimum)
        if problem:
            raise ValueError(
                f"{model_name}: input {axis} {size} {problem}. Build with input size None and predict "
                "through kfcn.inference.predict (which pads automatically), or change `depth`."
            )


def check_channels_last(model_name):
    """kfcn's models are channels-last; a global channels-first setting is refused, not half-obeyed.

    Example:
    >>> check_channels_last("unet")  # the default setting: fine
    """
    if keras.config.image_data_format() != "channels_last":
        raise ValueError(
            f"{model_name}: kfcn models are channels-last (batch, height, width, channels), but "
            "keras.config.image_data_format() is 'channels_first'. Call "
            "keras.config.set_image_data_format('channels_last') (or set it in ~/.keras/keras.json) and "
            "transpose channels-first arrays with np.moveaxis(x, 1, -1)."
        )


def check_input_range(input_range, model_name):
    """Validates `input_range`: None or `(low, high)` with finite low < high.

    Example:
    >>> check_input_range((0, 255), "unet")
    (0.0, 255.0)
    """
    if input_range is None:
        return None
    try:
        low, high = (float(v) for v in input_range)
    except (TypeError, ValueError):
        raise ValueError(
            f"{model_name}: `input_range` is (low, high) of the raw pixel values, e.g. (0, 255) for 8-bit or "
            f"(0, 65535) for 16-bit images, or None for no scaling; got {input_range!r}."
        ) from None
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ValueError(f"{model_name}: `input_range` needs finite low < high; got {input_range!r}.")
    return low, high


def model_inputs(
    input_shape,
    extra_inputs=None,
    coordinate_channels=False,
    input_range=(0, 255),
    size_rule=(1, 0, 1),
    model_name="model",
):
    """Creates the inputs and the tensor the network starts from.

    The image input takes raw pixel values (kfcn's input contract): with
    `input_range=(low, high)` a `Rescaling` layer named "input_scaling" maps
    [low, high] to [0, 1] inside the graph, so a TF Serving or TFLite client sends the
    pixels as stored. An `InputSizeCheck` then refuses sizes the strides cannot take.

    Args:
        input_shape: `(height, width, channels)` of the image; sizes may be None.
        extra_inputs: optional `{name: channels}` of further maps of the image's size
            (a field-of-view mask, a prior segmentation), concatenated with the image:
            the "position information through masks" of the design.
        coordinate_channels: append `CoordinateChannels` computed from a second input
            named "coordinate_frame" of shape (4,) (see `kfcn.layers.CoordinateChannels`).
        input_range: `(low, high)` of the raw pixel values, or None to feed values as given.
        size_rule: `(multiple, offset, minimum)` of the accepted sides (see `InputSizeCheck`).
        model_name: named in error messages.

    Returns:
        `(inputs, x)`: a single `keras.Input` when there is only the image, else a dict
        of inputs keyed by name; and the tensor to build on.

    Example:
    >>> inputs, x = model_inputs((None, None, 3), {"fov_mask": 1}, coordinate_channels=True)
    >>> sorted(inputs), x.shape[-1]
    (['coordinate_frame', 'fov_mask', 'image'], 6)
    """
    input_range = check_input_range(input_range, model_name)
    image = keras.Input(tuple(input_shape), name=IMAGE_INPUT_NAME)
    inputs = {IMAGE_INPUT_NAME: image}
    multiple, offset, minimum = size_rule
    x = InputSizeCheck(multiple, offset, minimum, model_name=model_name, name="input_size_check")(image)
    if input_range is not None:
        low, high = input_range
        x = keras.layers.Rescaling(1 / (high - low), -low / (high - low), name=INPUT_SCALING_NAME)(x)
    image_features = x
    for name, channels in (extra_inputs or {}).items():
        inputs[name] = keras.Input((*input_shape[:2], channels), name=name)
    if len(inputs) > 1:
        x = keras.layers.Concatenate(name="input_concat")([image_features, *list(inputs.values())[1:]])
    if coordinate_channels:
        frame = keras.Input((4,), name=FRAME_INPUT_NAME)
        inputs[FRAME_INPUT_NAME] = frame
        x = CoordinateChannels(name="coordinate_channels")([x, frame])
    return (image if len(inputs) == 1 else inputs), x
