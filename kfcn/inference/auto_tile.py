"""The largest tile that fits a memory budget: fewer, larger tiles waste less work on overlap.

The budget bounds the process's peak resident memory while it predicts (anonymous
memory, `RssAnon` on Linux: what the process itself holds, not the shared libraries'
file pages, which the kernel can drop). The estimate adds what lives at once:

    peak = framework + 2 x (weights + optimizer variables)        the runtime and the model
         + the caller's arrays held in memory (the image, `out`)
         + H x W x K x 4                                          the float32 output, unless written into `out`
         + call                                                   (tiled) the traced graph, allocator arenas
         + batch x tile pixels x factor x (working + copies)      the forward pass and kfcn's copies
    working = working_bytes_per_pixel(model, frees)
    copies = PIPELINE_BYTES_PER_INPUT_CHANNEL x C + PIPELINE_BYTES_PER_OUTPUT_CHANNEL x K

`working_bytes_per_pixel` walks the model's layers in order and keeps each tensor
until its last consumer has run (skip connections stay alive for the decoder); a
convolution needs its input and output once more as working buffers (oneDNN reorders
both into its blocked layout). Its largest total is what one forward pass holds at
once. `framework`, `call`, `frees` and `factor` depend on the backend
(`BACKEND_MEMORY`); they and the copies were measured with
`benchmarks/auto_tile_memory.py --calibrate`. Memory the process holds for other
things (other arrays, other models) is not counted: leave room for it.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass

import keras
import numpy as np

_bytes_per_pixel = weakref.WeakKeyDictionary()
_working_per_pixel = weakref.WeakKeyDictionary()  # model -> {frees: bytes}
DEFAULT_BUDGET = 4 * 2**30
MIB = 2**20


@dataclass(frozen=True)
class BackendMemory:
    """What a Keras backend holds while kfcn predicts (measured: see `BACKEND_MEMORY`).

    Attributes:
        framework: bytes the process holds once the backend is imported and has predicted once.
        call: bytes a tiled prediction keeps beyond its tiles (the graph traced or compiled for the
            tile shape, the malloc arenas of the runtime's threads).
        frees: whether a forward pass frees each tensor after its last use (a compiled graph:
            `tf.function`, `jax.jit`) or holds every layer's output until it returns (Keras'
            functional call run eagerly, as on PyTorch).
        factor: measured per-pixel growth over `working_bytes_per_pixel` plus kfcn's own copies.

    Example:
    >>> BACKEND_MEMORY["torch"].frees  # eager: every layer's output lives until the call returns
    False
    """

    framework: int
    call: int
    frees: bool
    factor: float


# Measured with `KERAS_BACKEND=... python benchmarks/auto_tile_memory.py --calibrate` (RssAnon, 2026-11-30,
# 2 cores, Keras 3.15.1; its output is in benchmarks/README.md) and, for `call`, full runs of
# `python benchmarks/auto_tile_memory.py --batches 0`. "slope" is the per-pixel growth of tiled prediction
# (4 tiles a call) over working_bytes_per_pixel + kfcn's copies, for U-Nets of filters 4 depth 2 / the ISBI
# U-Net / filters 32 depth 4.
BACKEND_MEMORY = {
    # TensorFlow 2.21: framework 267 / 293 / 318 MiB with each model (weights 0.03 / 7.8 + 15.6 of Adam / 31
    # MB); slope 0.87 / 0.98 / 0.95, whole image 0.87 / 0.94 / 0.96. Kept beyond the tiles: 0-13 MB after
    # two batches, 89 MiB after 256 batches of 4 x 464^2 and 128 MiB after 36 of 4 x 912^2 (ISBI, 8192^2).
    "tensorflow": BackendMemory(framework=300 * MIB, call=160 * MIB, frees=True, factor=1.0),
    # JAX 0.10.2: framework 279 / 349 / 384 MiB; slope 0.62 / 1.08 / 0.90, whole image 0.62 / 0.88 / 0.97, and
    # 1.31 for the ISBI U-Net's smaller tiles (4 x 256^2); kept beyond the tiles after two batches: 21-59 MB.
    "jax": BackendMemory(framework=330 * MIB, call=160 * MIB, frees=True, factor=1.3),
    # PyTorch 2.13 (CPU): framework 305 / 330 / 435 MiB; Keras' functional call runs eagerly and holds every
    # layer's output until it returns (frees=False); slope 1.05 / 1.01 / 1.02, whole image 0.99 / 1.01 / 1.05,
    # 1.25 for filters 4 depth 2 in an earlier run (TensorFlow imported beside it by keras.utils.
    # set_random_seed); kept beyond the tiles after two batches: 12-136 MB.
    "torch": BackendMemory(framework=380 * MIB, call=192 * MIB, frees=False, factor=1.25),
}
# kfcn's own copies per tile pixel: the tile read as float32, stacked, converted for the model, the
# previous batch still held (input side); the prediction as NumPy, averaged, weighted in float64 while it
# is added into the output (output side). On TensorFlow the per-pixel growth exceeds working_bytes_per_pixel
# by 6-48 B/px with one channel in and one out (`--calibrate` above: whole-image 512^2 and 1024^2 and tiled
# prediction of the three U-Nets; 16 + 32 covers the largest).
PIPELINE_BYTES_PER_INPUT_CHANNEL = 16
PIPELINE_BYTES_PER_OUTPUT_CHANNEL = 32
_CONVOLUTIONS = (
    keras.layers.Conv2D,
    keras.layers.Conv2DTranspose,
    keras.layers.DepthwiseConv2D,
    keras.layers.SeparableConv2D,
)


def activation_bytes_per_pixel(model, itemsize=4):
    """Bytes of every layer's output per input pixel, summed over layers: an upper bound on what
    one forward pass holds at once (frameworks free most of it as they go; see
    `working_bytes_per_pixel` for what they hold).

    Example:
    >>> from kfcn.models import plain_cnn
    >>> activation_bytes_per_pixel(plain_cnn((None, None, 1), num_layers=2, filters=8), itemsize=1)
    20.0
    """
    if model in _bytes_per_pixel and itemsize == 4:
        return _bytes_per_pixel[model]
    from kfcn.analysis import receptive_field

    probe = _probe_size(model, 64)
    total = 0.0
    for layer in receptive_field(model, input_size=tuple(probe)).layers:
        if len(layer.output_shape) == 3 and all(side is not None for side in layer.output_shape):
            total += float(np.prod(layer.output_shape))
    value = total / (probe[0] * probe[1]) * itemsize
    if itemsize == 4:
        _bytes_per_pixel[model] = value
    return value


def working_bytes_per_pixel(model, frees=True):
    """Bytes per input pixel that one forward pass of `model` holds at its peak.

    The layers run in graph order; a tensor lives from the layer that makes it to the
    last layer that reads it (a U-Net's skip connections wait for the decoder), and a
    convolution holds its input and output once more as working buffers. The peak
    over the layers of the tensors alive, divided by the input pixels, is the figure.

    Args:
        model: a functional or Sequential Keras model.
        frees: whether the backend frees a tensor after its last use (TensorFlow and JAX,
            which compile the call); False: every layer's output lives until the call
            returns (PyTorch, which runs Keras' functional call eagerly).

    Example:
    >>> from kfcn.models import plain_cnn
    >>> model = plain_cnn((None, None, 1), num_layers=2, filters=8)
    >>> # at the first conv: its scaled input 1 + output 8 + their working copies 1 + 8 = 18 float32 values
    >>> working_bytes_per_pixel(model)
    72.0
    >>> # all held at the last conv: input 1 + check 1 + scaling 1 + conv 8 + ReLU 8 + its output 1 + copies 8 + 1
    >>> working_bytes_per_pixel(model, frees=False)
    116.0
    """
    cached = _working_per_pixel.setdefault(model, {})
    if frees in cached:
        return cached[frees]
    from kfcn.analysis.graph import functional_model, trace_layers

    graph = functional_model(model, "kfcn.inference.auto_tile")
    probe = _probe_size(model, 1024)
    pixels = probe[0] * probe[1]
    keys, sizes, steps, held = {}, {}, [], []

    def register(tensor):
        keys[id(tensor)] = id(tensor)
        sizes[id(tensor)] = _tensor_bytes(tensor) / pixels
        held.append(tensor)  # ids stay unique while the walk lasts

    def make_probe(tensor):
        shape = tuple(tensor.shape[1:])
        if len(tensor.shape) == 4:
            shape = (*probe, shape[-1])
        new = keras.Input(batch_shape=(1, *shape), dtype=tensor.dtype)
        register(new)
        return new

    def visit(layer, inputs, outputs):
        flat = keras.tree.flatten(outputs)
        for tensor in flat:
            register(tensor)
        steps.append((layer, [keys.get(id(t), id(t)) for t in inputs], [id(t) for t in flat]))

    inputs = keras.tree.map_structure(make_probe, graph.input)
    clone = trace_layers(graph, inputs, visit, keys)
    last_use = {key: index for index, (_, reads, _) in enumerate(steps) for key in reads}
    for tensor in keras.tree.flatten(clone.outputs):
        last_use[keys.get(id(tensor), id(tensor))] = len(steps)
    alive = sum(sizes[keys[id(t)]] for t in keras.tree.flatten(inputs))
    peak = alive
    for index, (layer, reads, made) in enumerate(steps):
        made_bytes = sum(sizes[key] for key in made)
        buffers = sum(sizes.get(key, 0.0) for key in reads) + made_bytes if isinstance(layer, _CONVOLUTIONS) else 0.0
        peak = max(peak, alive + made_bytes + buffers)
        alive += made_bytes
        if frees:
            alive -= sum(sizes.get(key, 0.0) for key in set(reads) | set(made) if last_use.get(key, index) <= index)
    cached[frees] = peak
    return peak


def _probe_size(model, wanted):
    """An input size near `wanted` that the model takes (its own size where it has one)."""
    from kfcn.analysis.geometry import model_geometry

    geometry = model_geometry(model)
    wanted = max(wanted, 4 * geometry.multiple + 2 * geometry.margin)
    return [geometry.input_size[axis] or geometry.valid_input_size(model, wanted, axis) for axis in (0, 1)]


def _tensor_bytes(tensor):
    if len(tensor.shape) != 4 or any(side is None for side in tensor.shape[1:]):
        return 0.0  # not a map (a coordinate frame, a scalar): negligible
    name = keras.backend.standardize_dtype(tensor.dtype)
    itemsize = 2 if name == "bfloat16" else np.dtype(name).itemsize
    return float(np.prod(tensor.shape[1:])) * itemsize


def _model_bytes(model):
    """The weights, and an optimizer's variables if the model file brought them along."""
    variables = list(model.weights)
    optimizer = getattr(model, "optimizer", None)
    variables += list(getattr(optimizer, "variables", []) or [])
    return sum(int(np.prod(v.shape)) * np.dtype(keras.backend.standardize_dtype(v.dtype)).itemsize for v in variables)


def resident_bytes(array):
    """Bytes `array` holds in the process's own memory: 0 for None and for a memory map (its pages
    are the file's, which the kernel can drop), else its size.

    Example:
    >>> resident_bytes(np.zeros((4, 4), "float32")), resident_bytes(None)
    (64, 0)
    """
    if array is None or isinstance(array, np.memmap):
        return 0
    return int(getattr(array, "nbytes", np.asarray(array).nbytes))


def estimate_peak_bytes(model, image_shape, tile_size=None, batch_size=1, held_bytes=0, output_in_place=False):
    """The estimated peak resident memory of predicting an image (the formula in the module docstring).

    Args:
        model: the Keras model.
        image_shape: `(height, width, ...)` of the image.
        tile_size: input tile side or `(rows, cols)`; None: the whole image in one call (mirrored up to
            the next size the model takes).
        batch_size: tiles per model call.
        held_bytes: bytes the caller's arrays hold in memory (`resident_bytes` of the image and of `out`).
        output_in_place: tiled prediction writes into the caller's `out` and allocates no output.

    Returns:
        Bytes (an int).

    Example:
    >>> from kfcn.models import unet
    >>> model = unet((None, None, 1), num_classes=1, filters=4, depth=2)
    >>> whole = estimate_peak_bytes(model, (2048, 2048))
    >>> estimate_peak_bytes(model, (2048, 2048), tile_size=512) < whole
    True
    """
    from kfcn.analysis.geometry import model_geometry

    geometry = model_geometry(model)
    height, width = image_shape[:2]
    if tile_size is None:
        tiles = [
            geometry.input_size[axis] or geometry.valid_input_size(model, side + 2 * geometry.margin, axis)
            for axis, side in enumerate((height, width))
        ]
        batch_size, output_in_place = 1, False  # one call, into a new array (copied into `out` afterwards)
    else:
        tiles = (tile_size, tile_size) if np.ndim(tile_size) == 0 else tuple(tile_size)
        if not geometry.margin:  # `predict_tiled` shrinks a tile to the image where one tile covers an axis
            tiles = [
                tile if fixed is not None else min(tile, geometry.valid_input_size(model, side, axis))
                for axis, (tile, side, fixed) in enumerate(zip(tiles, (height, width), geometry.input_size))
            ]
    outputs = _output_channels(model)
    backend = BACKEND_MEMORY.get(keras.backend.backend(), BACKEND_MEMORY["torch"])  # unknown: the most held
    per_pixel = backend.factor * (
        working_bytes_per_pixel(model, backend.frees)
        + PIPELINE_BYTES_PER_INPUT_CHANNEL * geometry.channels
        + PIPELINE_BYTES_PER_OUTPUT_CHANNEL * outputs
    )
    fixed = backend.framework + 2 * _model_bytes(model)
    output = 0 if output_in_place else height * width * outputs * 4
    overhead = 0 if tile_size is None else backend.call
    return int(fixed + held_bytes + output + overhead + batch_size * tiles[0] * tiles[1] * per_pixel)


def _output_channels(model):
    try:
        channels = keras.tree.flatten(model.outputs)[0].shape[-1]
    except (AttributeError, ValueError, IndexError):
        return 1
    return channels if isinstance(channels, int) else 1


def auto_tile_size(
    model, image_shape, memory_budget=DEFAULT_BUDGET, batch_size=1, overlap=None, held_bytes=0, output_in_place=False
):
    """The input tile side for `predict_tiled(tile_size="auto")`: the largest the model takes whose
    estimated peak memory (`estimate_peak_bytes`) fits `memory_budget` bytes; None when the whole
    image fits (then one call, `predict`, is both exact and cheapest). A model built for one input
    size gets its own size, `(height, width)`, when the image is larger.

    Args:
        model: the Keras model.
        image_shape: `(height, width, ...)` of the image.
        memory_budget: bytes the process may hold at its peak, the framework and model included.
        batch_size: tiles per model call.
        overlap: the overlap `predict_tiled` will use (int, pair, None for its default, "erf"): the
            smallest tile must leave a stride beyond it.
        held_bytes, output_in_place: as in `estimate_peak_bytes`.

    Raises:
        ValueError: the budget is below the estimate for the smallest tile that works; the message
            names the budget that does.

    Example:
    >>> from kfcn.models import unet
    >>> model = unet((None, None, 1), num_classes=1, filters=4, depth=2)
    >>> auto_tile_size(model, (100, 100)) is None                         # small: one call
    True
    >>> auto_tile_size(model, (8192, 8192), memory_budget=2**30) % 4   # a size the model takes
    0
    """
    from kfcn.analysis.geometry import model_geometry

    if not memory_budget > 0:
        raise ValueError(f"`memory_budget` is in bytes and must be positive; got {memory_budget!r}.")
    geometry = model_geometry(model)
    fixed = geometry.input_size

    def estimate(tile):
        return estimate_peak_bytes(model, image_shape, tile, batch_size, held_bytes, output_in_place)

    # A model built for one size takes tiles of that size: the whole image in one call only when it fits.
    too_large = any(side is not None and given + 2 * geometry.margin > side for side, given in zip(fixed, image_shape))
    whole = None if too_large else estimate(None)
    if whole is not None and whole <= memory_budget:
        return None
    if None not in fixed:
        return _fitting(estimate, tuple(fixed), memory_budget, whole, batch_size)
    axis = fixed.index(None)  # the side to choose (both, unless one is fixed)

    def shape(side):
        return side if fixed == (None, None) else tuple(given or side for given in fixed)

    shared = overlap if overlap is not None else _default_overlap(geometry)
    shared = 0 if isinstance(shared, str) else max(np.ravel(shared))  # "erf" fits itself to the tile
    smallest = geometry.valid_input_size(
        model, max(2 * geometry.multiple, int(shared) + geometry.multiple) + 2 * geometry.margin, axis
    )
    if estimate(shape(smallest)) > memory_budget:
        single = None
        if batch_size > 1:
            single = estimate_peak_bytes(model, image_shape, shape(smallest), 1, held_bytes, output_in_place)
        return _fitting(estimate, shape(smallest), memory_budget, whole, batch_size, single)
    # The estimate grows with the tile: bisect on sides, then step to a size the model takes.
    low, high = smallest, max(smallest, *image_shape[:2]) + 2 * geometry.margin + geometry.multiple
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if estimate(shape(middle)) <= memory_budget else (low, middle)
    side = low
    while side > smallest and (
        geometry.output_size(model, side, axis) is None or estimate(shape(side)) > memory_budget
    ):
        side -= 1
    return shape(side)


def _default_overlap(geometry):
    """`predict_tiled`'s overlap when none is given, for the smallest tile."""
    if geometry.margin or math.isinf(geometry.context):
        return 0
    return 2 * geometry.context


def _fitting(estimate, tile, memory_budget, whole, batch_size, single=None):
    """`tile` if its estimate fits the budget, else an error naming the budget that would.

    `single`: the estimate of the same tile one per call, when `batch_size` is larger."""
    needed = estimate(tile)
    if needed <= memory_budget:
        return tile
    least = needed if whole is None else min(needed, whole)
    least_gib = math.ceil(least / 2**30 * 100) / 100
    fewer = "" if single is None else f" (one per call: {single / 2**30:.2f} GiB, batch_size=1, --batch 1)"
    raise ValueError(
        f"A memory budget of {memory_budget / 2**30:.2f} GiB is too small for this model: its smallest tile that "
        f"works ({tile} px, {batch_size} per call) needs an estimated {needed / 2**30:.2f} GiB, the framework and "
        f"model included{'' if whole is None else f', and the whole image in one call {whole / 2**30:.2f} GiB'}. "
        f"Pass memory_budget={int(least_gib * 2**30)} bytes ({least_gib:.2f} GiB, `kfcn predict --memory-gib "
        f"{least_gib:.2f}`) or more, fewer tiles per call{fewer}, or an `out=` memory map so that the output is "
        "not held in memory."
    )
