"""Runs a model on batches of NumPy tiles: inputs by name, coordinate frames, test-time augmentation."""

from __future__ import annotations

import weakref

import keras
import numpy as np

from kfcn.analysis.geometry import model_geometry

# (number of 90° rotations, flip left-right) for the dihedral test-time augmentations.
TTA_TRANSFORMS = {
    "flips": [(0, False), (0, True), (2, False), (2, True)],
    "d4": [(k, flip) for k in range(4) for flip in (False, True)],
}


def check_image(image, channels, what="image", input_range=None):
    """Returns `image` as (H, W, C), or raises a clear error naming the shape and the fix.

    With `input_range` (the raw pixel range the model scales in its graph) the values
    are checked against it too (see `check_pixel_range`).

    Example:
    >>> check_image(np.zeros((4, 5)), channels=1).shape
    (4, 5, 1)
    """
    image = np.asarray(image) if not isinstance(image, np.memmap) else image
    if image.dtype == bool or not (np.issubdtype(image.dtype, np.number)) or np.iscomplexobj(image):
        raise ValueError(f"The {what} must hold real numbers (raw pixel values); got dtype {image.dtype}.")
    if image.ndim in (2, 3) and 0 in image.shape[:2]:
        raise ValueError(f"The {what} is empty (shape {image.shape}); it needs at least one row and one column.")
    if image.ndim == 2 and channels == 1:
        image = image[..., None]
    if image.ndim != 3:
        raise ValueError(
            f"The {what} must be (height, width, channels) — one image, no batch axis — got shape {image.shape}."
        )
    if image.shape[-1] != channels:
        raise ValueError(
            f"The model expects {channels} channel(s) but the {what} has {image.shape[-1]} "
            f"(shape {image.shape}). Convert it (e.g. grayscale <-> RGB) first."
        )
    check_pixel_range(image, input_range, what)
    return image


def check_pixel_range(image, input_range, what="image"):
    """Refuses values a model that takes raw pixels in `input_range` would misread.

    kfcn's input contract: images are raw pixel values, as stored; a model scales
    them in its graph. So an image outside the model's range (a 16-bit image for an
    8-bit model) is refused, and so is a float image whose values all lie in [0, 1]
    when the model takes e.g. [0, 255] (an image someone already scaled: it would
    look black to the network). Integer images are never taken as pre-scaled. NaN is
    left to `check_finite`. `input_range=None` checks nothing.

    Example:
    >>> check_pixel_range(np.array([[0, 255]], np.uint8), (0, 255))  # fine
    >>> check_pixel_range(np.array([[0.0, 0.5]]), (0, 255))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: The image's values lie in [0, 0.5], but the model takes raw pixel values in [0, 255]: ...
    """
    if input_range is None:
        return
    low, high = input_range
    with np.errstate(invalid="ignore"):
        smallest, largest = float(np.nanmin(image)), float(np.nanmax(image))
    if not (np.isfinite(smallest) and np.isfinite(largest)):
        check_finite(image, what)
    span = high - low
    tolerance = 0.01 * span
    if smallest < low - tolerance or largest > high + tolerance:
        raise ValueError(
            f"The {what}'s values lie in [{smallest:g}, {largest:g}], outside the raw pixel range "
            f"[{low:g}, {high:g}] that the model was built for (its input_range). Pass images of that bit "
            "depth, or rebuild/retrain the model with a matching input_range (e.g. (0, 65535) for 16-bit)."
        )
    if np.issubdtype(image.dtype, np.floating) and high - low > 2 and low >= 0 and 0 < largest <= 1:
        raise ValueError(
            f"The {what}'s values lie in [{smallest:g}, {largest:g}], but the model takes raw pixel values in "
            f"[{low:g}, {high:g}]: it scales them itself. Pass the pixels as stored (e.g. the uint8 array), "
            f"or multiply a [0, 1] image by {high:g}."
        )


def check_finite(array, what="image"):
    """Raises a clear error if a float array holds NaN or infinite values.

    Example:
    >>> check_finite(np.array([[1.0, np.nan]]))
    Traceback (most recent call last):
    ...
    ValueError: The image contains NaN or infinite values; clean or mask them before predicting.
    """
    if np.issubdtype(np.asarray(array[:1, :1]).dtype, np.floating) and not np.all(np.isfinite(array)):
        raise ValueError(f"The {what} contains NaN or infinite values; clean or mask them before predicting.")


class TileRunner:
    """Calls `model` on a batch of tiles with the inputs it needs.

    Args:
        model: a Keras model with one (batch, height, width, channels) image input,
            optionally a "coordinate_frame" input (filled from each tile's position)
            and further map inputs (given in `extra_inputs`).
        tta: None, "flips" (identity, flips, 180°) or "d4" (all 8 flips and 90°
            rotations; square tiles only), averaged after undoing each transform.
        policy: None (the model as it is) or a Keras dtype policy such as
            "mixed_bfloat16": the model runs as `kfcn.models.with_policy(model, policy)`
            (made once per model and policy); "float32" runs a model saved in a mixed
            policy in float32.
        engine: "keras" (the model's backend) or "litert": a float32 TFLite
            conversion run by LiteRT's XNNPACK kernels, the fastest on CPUs
            (`kfcn.inference.litert`; "same"-padded single-input models).

    Raises:
        ValueError: (when called) the model's output holds NaN or infinite values for finite tiles (a
            diverged model's weights, or an overflow in reduced precision): a map of it would be silently
            wrong.
    """

    def __init__(self, model, tta=None, policy=None, engine="keras"):
        from kfcn.finite_weights import check_finite_weights
        from kfcn.inference.litert import check_engine, litert_call

        self.geometry = model_geometry(model)
        if tta not in (None, *TTA_TRANSFORMS):
            raise ValueError(f"`tta` must be None, 'flips' or 'd4'; got {tta!r}.")
        check_engine(engine, self.geometry, policy)
        check_finite_weights(model)
        self.transforms = TTA_TRANSFORMS[tta] if tta else [(0, False)]
        self.policy = policy
        self.model = _with_policy(model, policy) if policy else model
        self._call = litert_call(self.model) if engine == "litert" else _compiled_call(self.model)

    def __call__(self, tiles, frames=None, extras=None):
        """tiles: (B, h, w, C); frames: (B, 4) or None; extras: {name: (B, h, w, c)}."""
        total = None
        for turns, flip in self.transforms:
            if turns % 2 and tiles.shape[1] != tiles.shape[2]:
                raise ValueError("tta='d4' needs square tiles; use tta='flips' for rectangular ones.")
            inputs = self._inputs(_forward(tiles, turns, flip), frames, extras, turns, flip)
            output = self._call(inputs)
            output = keras.tree.flatten(output)[0]
            output = np.asarray(keras.ops.convert_to_numpy(output), dtype="float32")
            output = _backward(output, turns, flip)
            total = output if total is None else total + output
        if not np.all(np.isfinite(total)):  # the inputs are finite (check_image): the model made them
            raise ValueError(
                "The model's output holds NaN or infinite values for a finite input, so its maps would be "
                "meaningless: its weights are finite (checked), so an activation overflowed, as the huge weights of "
                "a diverging training run make them"
                + (
                    f", or as the {self.policy!r} policy's narrower range can (predict in float32: policy='float32')"
                    if self.policy not in (None, "float32")
                    else ""
                )
                + ". Use a model file from before the divergence."
            )
        return total / len(self.transforms)

    def _inputs(self, tiles, frames, extras, turns, flip):
        geometry = self.geometry
        if geometry.frame_input is None and not geometry.extra_inputs:
            return tiles
        inputs = {geometry.image_input: tiles}
        if geometry.frame_input is not None:
            if turns or flip:
                raise ValueError("Test-time augmentation would scramble coordinate channels; use tta=None.")
            inputs[geometry.frame_input] = frames.astype("float32")
        for name in geometry.extra_inputs:
            if extras is None or name not in extras:
                raise ValueError(f"The model has an input {name!r}: pass it as extra_inputs={{{name!r}: array}}.")
            inputs[name] = _forward(extras[name], turns, flip)
        return inputs


def _forward(batch, turns, flip):
    batch = np.rot90(batch, turns, axes=(1, 2)) if turns else batch
    return np.ascontiguousarray(batch[:, :, ::-1] if flip else batch)


def _backward(batch, turns, flip):
    batch = batch[:, :, ::-1] if flip else batch
    return np.ascontiguousarray(np.rot90(batch, -turns, axes=(1, 2)) if turns else batch)


def _with_policy(model, policy):
    """`kfcn.models.with_policy`, cached per model: the copy lives as long as the model."""
    from kfcn.models.precision import computes_in_float32, with_policy

    if policy == "float32" and computes_in_float32(model):
        return model  # not cached: a copy that is the model itself would keep the model alive
    copies = _policy_copies.setdefault(model, {})
    if policy not in copies:
        copies[policy] = with_policy(model, policy)
    return copies[policy]


_policy_copies = weakref.WeakKeyDictionary()


def _compiled_call(model):
    """A compiled inference call. On TensorFlow a `tf.function` traced once per tile
    shape: Keras' own `predict_on_batch` relaxes shapes to None on the second shape
    (`reduce_retracing`), which models that compute sizes in Python (keras-cv's
    DeepLabV3Plus did) cannot take. Elsewhere, and inside a TensorFlow strategy of several
    replicas (`kfcn.distribute.data_parallel`), Keras' `predict_on_batch`, which splits
    the tiles among the devices (JAX: the active `keras.distribution`)."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        if tf.distribute.has_strategy() and tf.distribute.get_strategy().num_replicas_in_sync > 1:
            return model.predict_on_batch
    if model in _compiled_calls:  # one compiled function per model: traced once per tile shape
        return _compiled_calls[model]
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        reference = weakref.ref(model)  # the cache must not keep the model alive
        call = tf.function(lambda inputs: reference()(inputs, training=False), autograph=False)
    else:
        reference = weakref.ref(model)
        call = lambda inputs: reference().predict_on_batch(inputs)  # noqa: E731
    _compiled_calls[model] = call
    return call


_compiled_calls = weakref.WeakKeyDictionary()
