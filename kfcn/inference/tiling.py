"""Overlap-tile prediction (Ronneberger et al. 2015), generalised to any fully convolutional model.

Along each axis, tile k's output covers image pixels [start_k, start_k + P), P being the
model's output size for the input tile size T, and consecutive starts are `step` apart,
a multiple of the model's total stride, so every tile sees the same pooling grid as
whole-image prediction. Valid-padding models read `margin` more pixels on each side,
which they consume themselves; their first tile starts half the overlap before the
image, in mirrored context (reflect indexing into the image, so no padded copy of a
large image is ever made). Tiles of "same" models stay inside the image mirrored up to
the next multiple of the stride (exactly what whole-image prediction sees), the last one
flush with its end, as in MONAI's sliding window: no tile is spent outside the image.
Tiled and whole-image outputs are therefore equal:

- valid-padding models with `overlap=0`: exactly, everywhere;
- "same" models with `overlap=None`: tiles overlap by the receptive field, and with
  `blend="none"` each tile keeps only pixels at least half the field away from its
  edges inside the image (a tile edge on the image border sees the same zero padding
  as whole-image prediction), so every kept pixel is computed from the same input
  values as in whole-image prediction: equal to float round-off, everywhere.

`blend="linear"` or `"gaussian"` instead averages overlapping outputs with a window
(as MONAI's `sliding_window_inference` does), for smoother seams. For "same" models
the window is zero in the band at each tile edge that the receptive field says
padding spoils (as far as the overlap allows), so blending mixes only sound values.

Windows are separable, so the normalising weight sum is an outer product of two 1-D
sums: memory is the output plus one tile batch.
"""

from __future__ import annotations

import math

import keras
import numpy as np

from kfcn.arguments import check_integer, is_integer, normalize_pair
from kfcn.inference.plan import AxisPlan, run_plan
from kfcn.inference.runner import TileRunner, check_image

BLENDS = ("none", "linear", "gaussian")


def _check_arguments(blend, batch_size, extra_inputs, image_size, geometry):
    """Every argument of `predict_tiled` that can be checked before a tile is predicted."""
    if not isinstance(blend, str) or blend not in BLENDS:
        raise ValueError(f"`blend` must be one of {BLENDS}, got {blend!r}.")
    check_integer("batch_size", batch_size, 1, meaning="tiles per model call", accepted="a positive int, e.g. 4")
    for name, array in (extra_inputs or {}).items():
        if name not in geometry.extra_inputs:
            raise ValueError(
                f"`extra_inputs` has {name!r}, which is not a map input of the model "
                f"(its map inputs besides the image: {list(geometry.extra_inputs)})."
            )
        if np.shape(array)[:2] != image_size:
            raise ValueError(
                f"extra_inputs[{name!r}] has shape {np.shape(array)}; it must cover the image: {image_size} "
                "followed by its channels."
            )


def check_out(out, image_size, channels=None):
    """Refuses an `out` array that `predict_tiled` could not fill: its shape, dtype, or a read-only array.

    Checked before any tile is predicted, so a refused `out` (a memmap on disk) is left as it was.

    Args:
        out: the array given as `predict_tiled(out=...)`, or None (nothing to check).
        image_size: `(height, width)` of the image.
        channels: output channels of the model, where known.

    Example:
    >>> check_out(np.zeros((4, 4, 1), "float32"), (4, 4), 1)  # fine
    >>> check_out(np.zeros((4, 4, 1), "float32"), (4, 5), 1)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: `out` has shape (4, 4, 1); it must be (height, width, classes) = (4, 5, 1): ...
    """
    if out is None:
        return
    shape = np.shape(out)
    if len(shape) != 3 or shape[:2] != tuple(image_size) or channels not in (None, shape[2]):
        expected = ", ".join(str(v) for v in (*image_size, "classes" if channels is None else channels))
        raise ValueError(
            f"`out` has shape {shape}; it must be (height, width, classes) = ({expected}): the image's size and "
            "the model's output channels."
        )
    if not np.issubdtype(out.dtype, np.floating):
        raise ValueError(f"`out` must be a float array (e.g. float32) to hold probabilities; got dtype {out.dtype}.")
    if not getattr(getattr(out, "flags", None), "writeable", True):
        opened = f" (a np.memmap opened with mode {out.mode!r})" if isinstance(out, np.memmap) else ""
        raise ValueError(
            f"`out` is read-only{opened}, so the prediction cannot be written into it. Open the file with mode "
            '"r+" (to overwrite it) or "w+" (to create it), e.g. np.memmap(path, "float32", mode="w+", '
            f"shape={tuple(out.shape)}), or pass out=None to get a new array."
        )


def _check_tile(model, geometry, tile, axis):
    """The output side for input tile side `tile` along `axis`, or an error naming the nearest sizes that fit."""
    output = geometry.output_size(model, tile, axis)
    if output is not None:
        return output
    if geometry.input_size[axis] is not None:
        from kfcn.analysis.fully_convolutional import fixed_size_error

        fixed = tuple(tile if side is None else side for side in geometry.input_size)
        raise fixed_size_error(model, (tile, tile), "predict_tiled", f"pass tile_size={fixed}, the model's own size")
    following = geometry.valid_input_size(model, tile, axis)
    lowest = max(0, tile - 4 * geometry.multiple - 2 * geometry.margin - 2)
    previous = next((size for size in range(tile - 1, lowest, -1) if geometry.output_size(model, size, axis)), None)
    raise ValueError(
        f"Tile size {tile} does not fit this model (total stride {geometry.multiple}"
        f"{f', valid-padding margin {geometry.margin}' if geometry.margin else ''}); "
        f"the next size that does is {following}"
        f"{f' (the previous one is {previous})' if previous else ''}: pass tile_size={following}."
    )


def predict_tiled(
    model,
    image,
    tile_size,
    overlap=None,
    blend="none",
    batch_size=4,
    tta=None,
    extra_inputs=None,
    out=None,
    progress=True,
    policy=None,
    memory_budget=None,
    engine="keras",
):
    """Predicts an image of any size tile by tile, with bounded memory.

    Args:
        model: any Keras image-to-image model (one image input; a
            "coordinate_frame" input is filled with each tile's global position;
            other map inputs come from `extra_inputs`).
        image: (H, W, C) or (H, W) array; a `np.memmap` or `tifffile.memmap` works,
            and only the tiles being predicted are read.
        tile_size: input tile side or (rows, cols); it must suit the model
            (multiples of its stride, or a valid-padding size; the error says which).
            When one tile covers the image (its context included), or the model is
            built for one size that the image fits, the image is predicted whole in one
            call (`predict`), which is exact and cheapest. "auto": the largest tile whose estimated peak memory fits
            `memory_budget` (`kfcn.inference.auto_tile`); the whole image in one call
            when it fits.
        overlap: output pixels shared by adjacent tiles (int or pair). None: the
            receptive field for "same" models (exact away from the border; for a deep
            U-Net that is about 200 px, so use tiles of 512 or more, or a smaller
            overlap from `kfcn.analysis.effective_receptive_field`), 0 for
            valid-padding models (they carry their context), a quarter tile for
            models with global context (no tiling can be exact for those). "erf": twice
            the 95 % radius of the effective receptive field, measured once per model on
            crops of the image (`kfcn.inference.erf_overlap`): far cheaper than the exact
            overlap for deep U-Nets, and not exact.
        blend: "none" (keep the central part of each tile), "linear" or "gaussian".
        batch_size: tiles per model call.
        tta: None, "flips" or "d4": test-time augmentation per tile.
        extra_inputs: `{name: (H, W, c) array}` for further map inputs of the model.
        out: optional preallocated (H, W, K) float32 array or memmap to write into.
        progress: show a progress bar.
        policy: None (the model as it is) or a Keras dtype policy ("mixed_bfloat16",
            "mixed_float16", "float32") to compute in (`kfcn.models.with_policy`); the
            output stays float32.
        memory_budget: bytes `tile_size="auto"` keeps the process's peak resident memory within
            (default 4 GiB): the framework, the model, the image and the output included
            (`kfcn.inference.auto_tile.estimate_peak_bytes`).
        engine: "keras", or "litert" to run each tile through a float32 TFLite
            conversion of the model with LiteRT's XNNPACK kernels, the fastest on CPUs
            (converted once per model and tile shape; see `kfcn.inference.litert`).

    Returns:
        (H, W, K) float32 prediction (`out` if given).

    Example:
    >>> from kfcn.models import unet
    >>> model = unet((None, None, 1), num_classes=1, filters=4, depth=2, padding="valid")
    >>> image = np.random.randint(0, 256, (50, 70), dtype=np.uint8)
    >>> predict_tiled(model, image, tile_size=60, progress=False).shape
    (50, 70, 1)
    """
    if out is not None and np.ndim(image) in (2, 3):  # before any work: a refused memmap is left as it was
        check_out(out, tuple(np.shape(image)[:2]), _output_channels(model))
    if isinstance(tile_size, str):
        if tile_size != "auto":
            raise ValueError(f"`tile_size` must be an int, a pair or 'auto'; got {tile_size!r}.")
        from kfcn.inference.auto_tile import DEFAULT_BUDGET, auto_tile_size, resident_bytes

        budget = DEFAULT_BUDGET if memory_budget is None else memory_budget
        batch = batch_size if is_integer(batch_size) else 1
        held = resident_bytes(image) + resident_bytes(out)
        tile_size = auto_tile_size(model, np.shape(image), budget, batch, overlap, held, out is not None)
        if tile_size is None:  # the whole image fits: one call, exact
            return _predict_whole(model, image, tta, extra_inputs, policy, engine, out)
    tiles = normalize_pair("tile_size", tile_size, 1, meaning="input tile side in pixels")
    if _built_for_a_size_the_image_fits(model, np.shape(image)[:2]):  # one call, whatever the tile
        return _predict_whole(model, image, tta, extra_inputs, policy, engine, out)
    runner = TileRunner(model, tta, policy, engine)
    geometry = runner.geometry
    image = check_image(image, geometry.channels, input_range=geometry.input_range)
    height, width = image.shape[:2]
    _check_arguments(blend, batch_size, extra_inputs, (height, width), geometry)
    outputs = [_check_tile(model, geometry, tile, axis) for axis, tile in enumerate(tiles)]
    overlaps = _checked_overlap(overlap, tiles, outputs)
    if all(side + 2 * geometry.margin <= tile for side, tile in zip((height, width), tiles)):
        return _predict_whole(model, image, tta, extra_inputs, policy, engine, out)  # one tile covers it: one call
    if isinstance(overlap, str):  # "erf" (checked above): measured on the image, kept below a tile's output
        from kfcn.inference.erf_overlap import erf_overlap

        overlaps = (min(erf_overlap(model, image), min(outputs) - geometry.multiple),) * 2
    elif overlap is None:
        overlaps = _default_overlaps(geometry, outputs)
    if not geometry.margin:
        tiles, outputs, overlaps = _fit_covered_axes(model, geometry, (height, width), tiles, outputs, overlaps)
    # Blending never uses the band at a tile edge that padding spoils ("same" models).
    trim = 0 if geometry.margin else min(geometry.context, max(tiles))
    rows, cols = (
        AxisPlan(size, tile, output, (tile - output) // 2, geometry.multiple, ov, blend, trim)
        for size, tile, output, ov in zip((height, width), tiles, outputs, overlaps)
    )
    return run_plan(runner, image, rows, cols, batch_size, extra_inputs, out, progress)


def _checked_overlap(overlap, tiles, outputs):
    """The overlap pair asked for, checked against the tiles' outputs; None for None or "erf" (found later)."""
    if isinstance(overlap, str) and overlap != "erf":
        raise ValueError(f"`overlap` must be an int, a pair, None or 'erf'; got {overlap!r}.")
    if overlap is None or isinstance(overlap, str):
        return None
    overlaps = normalize_pair("overlap", overlap, 0, meaning="output pixels shared by adjacent tiles")
    for tile, output, shared in zip(tiles, outputs, overlaps):
        if shared >= output:
            raise ValueError(
                f"`overlap` ({shared} px) must be smaller than a tile's output ({output} px for tile_size "
                f"{tile}); use a smaller overlap or larger tiles."
            )
    return overlaps


def _fit_covered_axes(model, geometry, image_size, tiles, outputs, overlaps):
    """Along an axis one tile covers, the smallest tile that covers it (as whole-image prediction takes)
    with no overlap; a "same"-padded model's `(tiles, outputs, overlaps)`."""
    tiles, outputs, overlaps = map(list, (tiles, outputs, overlaps))
    for axis, size in enumerate(image_size):
        if geometry.input_size[axis] is not None:  # a fixed side: every tile has it
            continue
        smallest = geometry.valid_input_size(model, size, axis)
        if smallest < tiles[axis]:
            tiles[axis], outputs[axis], overlaps[axis] = smallest, geometry.output_size(model, smallest, axis), 0
    return tiles, outputs, overlaps


def _default_overlaps(geometry, outputs):
    """The overlap that makes tiles exact: none for valid padding (tiles carry their context), the
    receptive field for "same" models, a quarter tile for global context (nothing is exact there)."""
    if geometry.margin:
        return (0, 0)
    if math.isinf(geometry.context):
        return tuple(output // 4 for output in outputs)
    return (2 * geometry.context,) * 2


def _predict_whole(model, image, tta, extra_inputs, policy, engine, out):
    from kfcn.inference.whole import predict

    result = predict(model, image, tta=tta, extra_inputs=extra_inputs, policy=policy, engine=engine)
    if out is None:
        return result
    out[...] = result
    return out


def _built_for_a_size_the_image_fits(model, image_size):
    """A model built for one input size predicts an image that fits it (mirrored up to it) in one call."""
    from kfcn.analysis.geometry import model_geometry

    geometry = model_geometry(model)
    fixed = geometry.input_size
    return None not in fixed and all(side + 2 * geometry.margin <= own for side, own in zip(image_size, fixed))


def _output_channels(model):
    """The model's output channels where its graph states them, else None."""
    try:
        channels = keras.tree.flatten(model.outputs)[0].shape[-1]
    except (AttributeError, ValueError, IndexError):  # a subclassed model: refused later, by the geometry
        return None
    return channels if isinstance(channels, int) else None
