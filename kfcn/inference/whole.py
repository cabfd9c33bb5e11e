"""Whole-image and resized prediction."""

from __future__ import annotations

import numpy as np

from kfcn.analysis.geometry import model_geometry
from kfcn.arguments import normalize_pair
from kfcn.inference.plan import AxisPlan, run_plan
from kfcn.inference.runner import TileRunner, check_finite, check_image


def predict(model, image, tta=None, extra_inputs=None, policy=None, engine="keras"):
    """Predicts one image of any size in a single model call, returning the image's size.

    The image is mirrored at its bottom/right border up to the next size the model
    takes (a multiple of its total stride); for a valid-padding U-Net it is also
    mirrored by the model's margin on every side (the overlap-tile context), so the
    output covers the whole image. Padding is then cropped away.

    Args:
        model: any Keras image-to-image model (see `predict_tiled` for inputs).
        image: (H, W, C) or (H, W) array.
        tta: None, "flips" or "d4" test-time augmentation.
        extra_inputs: `{name: (H, W, c) array}` for further map inputs.
        policy: None (the model as it is) or a Keras dtype policy ("mixed_bfloat16",
            "mixed_float16", "float32") to compute in (`kfcn.models.with_policy`); the
            output stays float32.
        engine: "keras", or "litert" to run a float32 TFLite conversion of the model
            with LiteRT's XNNPACK kernels, the fastest on CPUs (converted once per
            model and input shape; see `kfcn.inference.litert`).

    Returns:
        (H, W, K) float32.

    Raises:
        ValueError: the model is not fully convolutional (a classifier), or is built
            for a fixed input size smaller than the image (the message says how to tile,
            resize or rebuild); the image does not suit the model (channels, pixel
            range, NaN).

    Example:
    >>> import numpy as np
    >>> from kfcn.models import unet
    >>> model = unet((None, None, 1), num_classes=2, filters=4, depth=3)
    >>> predict(model, np.random.randint(0, 256, (50, 37), dtype=np.uint8)).shape
    (50, 37, 2)
    """
    runner = TileRunner(model, tta, policy, engine)
    geometry = runner.geometry
    image = check_image(image, geometry.channels, input_range=geometry.input_range)
    check_finite(image)
    for name, array in (extra_inputs or {}).items():
        if np.shape(array)[:2] != image.shape[:2]:
            raise ValueError(
                f"extra_inputs[{name!r}] has shape {np.shape(array)}, but it must cover the image: "
                f"({image.shape[0]}, {image.shape[1]}, channels)."
            )
    _check_fixed_size(model, geometry, image.shape[:2])
    plans = []
    for axis, size in enumerate(image.shape[:2]):
        tile = geometry.valid_input_size(model, size + 2 * geometry.margin, axis)
        output = geometry.output_size(model, tile, axis)
        plans.append(AxisPlan(size, tile, output, (tile - output) // 2, geometry.multiple, 0, "none"))
    return run_plan(runner, image, plans[0], plans[1], 1, extra_inputs, None, progress=False)


def _check_fixed_size(model, geometry, image_size):
    """A model built for one input size takes images up to that size (mirrored up to it), no larger."""
    from kfcn.analysis.fully_convolutional import fixed_size_error

    fixed = geometry.input_size
    if any(side is not None and given + 2 * geometry.margin > side for side, given in zip(fixed, image_size)):
        tile = tuple(given if side is None else side for side, given in zip(fixed, image_size))
        raise fixed_size_error(
            model,
            image_size,
            "kfcn.inference.predict",
            f"predict the image tile by tile (predict_tiled(model, image, tile_size={tile})), resize it "
            f"(predict_resized(model, image, {tile})) or crop it",
        )


def predict_resized(model, image, size, labels=False, tta=None):
    """The resize alternative: resize to `size`, predict, resize the prediction back.

    Probabilities come back bilinearly; with `labels=True` the class labels
    (argmax, or > 0.5 for one channel) are taken at the model's resolution and come
    back with nearest-neighbour resizing. Compare with `predict_tiled`: resizing
    changes the scale the network sees.

    Args:
        model: any Keras image-to-image model.
        image: (H, W, C) or (H, W) array.
        size: (rows, cols) to predict at, or one int for a square (e.g. the training crop size).
        labels: return (H, W) int32 labels instead of (H, W, K) probabilities.
        tta: None, "flips" or "d4".

    Example:
    >>> import numpy as np
    >>> from kfcn.models import unet
    >>> model = unet((None, None, 1), num_classes=2, filters=4, depth=2)
    >>> predict_resized(model, np.random.randint(0, 256, (100, 60), dtype=np.uint8), (32, 32)).shape
    (100, 60, 2)
    """
    geometry = model_geometry(model)
    image = check_image(image, geometry.channels, input_range=geometry.input_range)
    check_finite(image)
    size = normalize_pair("size", size, meaning="the resolution to predict at")
    height, width = image.shape[:2]
    small = resize(image.astype("float32"), size, "bilinear", antialias=True)
    prediction = predict(model, small, tta=tta)
    if labels:
        small_labels = (prediction[..., 0] > 0.5) if prediction.shape[-1] == 1 else prediction.argmax(-1)
        resized = resize(small_labels[..., None].astype("float32"), (height, width), "nearest")
        return resized[..., 0].astype("int32")
    return resize(prediction, (height, width), "bilinear")


def resize(image, size, interpolation, antialias=False):
    """Resizes an (H, W, C) NumPy array with `keras.ops.image.resize` (any backend); NumPy out.

    Example:
    >>> import numpy as np
    >>> resize(np.ones((4, 6, 1), "float32"), (2, 3), "bilinear").shape
    (2, 3, 1)
    """
    import keras

    resized = keras.ops.image.resize(image[None], tuple(size), interpolation=interpolation, antialias=antialias)
    return np.asarray(keras.ops.convert_to_numpy(resized)[0], dtype="float32")
