"""A tiling plan and its run: where each tile of an image starts, how its output is weighted, and
the loop that predicts the tiles and blends them into the output.

`kfcn.inference.predict` runs a plan of one tile per axis (the whole image, mirrored up to a
size the model takes); `kfcn.inference.predict_tiled` plans many (see its module for the rules).
"""

from __future__ import annotations

import math

import numpy as np

from kfcn.inference.runner import check_finite


class AxisPlan:
    """Tile positions and blending windows along one axis.

    Valid-padding models carry their own context: tiles start half the overlap before
    the image and read mirrored pixels there, as the overlap-tile strategy does. Tiles of
    "same" models stay inside the image (mirrored at the far end up to the next multiple
    of the stride, as whole-image prediction pads it), the last one flush with that end,
    as MONAI's sliding window places them: a tile that touches the image border sees at
    that border exactly what whole-image prediction sees, so its edge band there needs no
    trimming, and no tile is spent on pixels outside the image.

    Args:
        size: the image's side along this axis.
        tile: the input tile side; output: the model's output side for it.
        margin: input pixels the model consumes on each side (valid padding), else 0.
        multiple: the model's total stride: tile starts are multiples of it.
        overlap: output pixels shared by adjacent tiles.
        blend: "none", "linear" or "gaussian".
        trim: output pixels at a tile edge that padding spoils ("same" models), never weighted.

    Example:
    >>> plan = AxisPlan(size=100, tile=48, output=48, margin=0, multiple=8, overlap=16, blend="none")
    >>> plan.starts  # the last tile flush with 104, the image mirrored up to the stride
    [0, 32, 56]
    >>> float(plan.normaliser.min())  # every pixel covered
    1.0
    """

    def __init__(self, size, tile, output, margin, multiple, overlap, blend, trim=0):
        self.size, self.tile, self.output, self.margin = size, tile, output, margin
        self.before, self.after = overlap // 2, overlap - overlap // 2
        self.step = (output - overlap) // multiple * multiple
        if margin:
            lead = math.ceil(self.before / multiple) * multiple
            reach = size + lead - output + self.after
        else:
            last = max(math.ceil(size / multiple) * multiple - output, 0)
            reach = last
        if reach > 0 and self.step < multiple:
            raise ValueError(
                f"Tile size {tile} is too small: its output ({output} px) minus the overlap ({overlap} px) "
                f"leaves less than one stride ({multiple} px). The overlap comes from the receptive field; "
                f"use tiles of at least {tile + overlap + multiple - (output - overlap) % multiple} px "
                "or a smaller overlap."
            )
        if margin:
            count = math.ceil(reach / self.step) + 1 if reach > 0 else 1
            self.starts = [k * self.step - lead for k in range(count)]
        else:
            self.starts = list(range(0, last, self.step)) + [last] if last > 0 else [0]
        self.count = len(self.starts)
        window = _window(output, overlap, self.before, self.after, blend, min(trim, self.before))
        self.windows = [window] * self.count
        if not margin:  # a side at the image border is sound: keep it whole
            first = _window(output, overlap, 0, self.after, blend, min(trim, self.before), trim_start=False)
            last = _window(output, overlap, self.before, 0, blend, min(trim, self.before), trim_end=False)
            self.windows[0], self.windows[-1] = first, last
            if self.count == 1:
                self.windows[0] = _window(output, overlap, 0, 0, blend, 0)
        self.normaliser = np.zeros(size, dtype="float64")
        for k in range(self.count):
            start = self.output_start(k)
            low, high = max(start, 0), min(start + output, size)
            self.normaliser[low:high] += self.windows[k][low - start : high - start]
        if np.any(self.normaliser <= 0):
            raise AssertionError("internal error: tiles do not cover the image")

    def output_start(self, k):
        return self.starts[k]

    def input_indices(self, k):
        start = self.output_start(k) - self.margin
        return _reflect(np.arange(start, start + self.tile), self.size)


def _reflect(indices, size):
    if size == 1:
        return np.zeros_like(indices)
    period = 2 * (size - 1)
    indices = np.mod(indices, period)
    return np.where(indices > size - 1, period - indices, indices)


def _window(length, overlap, before, after, blend, trim, trim_start=True, trim_end=True):
    """Per-axis weights of one tile's output: zero in the `trim` band at each edge that is trimmed."""
    position = np.arange(length, dtype="float64")
    if blend == "none":
        return ((position >= before) & (position < length - after)).astype("float64")
    inside = (position >= (trim if trim_start else 0)) & (position < length - (trim if trim_end else 0))
    if blend == "linear":
        ramp = overlap - 2 * trim
        distance = np.minimum(position - trim, length - 1 - trim - position)
        window = np.ones(length) if ramp <= 0 else np.minimum(1.0, (distance + 1) / (ramp + 1))
        window = np.maximum(window, 1e-4)  # an untrimmed border side: the only tile there
    else:
        sigma = 0.125 * length
        window = np.exp(-((position - (length - 1) / 2) ** 2) / (2 * sigma**2))
        window = np.maximum(window / window.max(), 1e-4)
    return np.where(inside, window, 0.0)


def run_plan(runner, image, rows, cols, batch_size, extra_inputs, out, progress):
    """Predicts every tile of the plan (`rows` x `cols`, two `AxisPlan`s) with `runner`, `batch_size`
    tiles a call, and blends them into `out` (or a new float32 array): `(H, W, K)`.

    Example:
    >>> from kfcn.inference.runner import TileRunner
    >>> from kfcn.models import unet
    >>> model = unet((None, None, 1), num_classes=1, filters=4, depth=2)
    >>> image = np.random.default_rng(0).random((20, 30, 1), "float32") * 255
    >>> rows, cols = (AxisPlan(size, 16, 16, 0, 4, 8, "none") for size in (20, 30))
    >>> run_plan(TileRunner(model), image, rows, cols, 4, None, None, progress=False).shape
    (20, 30, 1)
    """
    height, width = image.shape[:2]
    positions = [(i, j) for i in range(rows.count) for j in range(cols.count)]
    results = None
    bar = _progress_bar(len(positions), progress)
    for first in range(0, len(positions), batch_size):
        batch = positions[first : first + batch_size]
        tiles = np.stack([_read(image, rows.input_indices(i), cols.input_indices(j)) for i, j in batch])
        check_finite(tiles)
        frames = np.array(
            [[rows.output_start(i) - rows.margin, cols.output_start(j) - cols.margin, height, width] for i, j in batch],
            dtype="float32",
        )
        extras = None
        if extra_inputs:
            extras = {
                name: np.stack(
                    [_read(np.asarray(array), rows.input_indices(i), cols.input_indices(j)) for i, j in batch]
                )
                for name, array in extra_inputs.items()
            }
        predictions = runner(tiles.astype("float32"), frames, extras)
        if results is None:
            results = out if out is not None else np.empty((height, width, predictions.shape[-1]), "float32")
            if results.shape != (height, width, predictions.shape[-1]):
                raise ValueError(f"`out` has shape {results.shape}, expected {(height, width, predictions.shape[-1])}.")
            results[...] = 0.0
        for (i, j), prediction in zip(batch, predictions):
            _accumulate(results, prediction, rows, cols, i, j)
        bar.update(len(batch))
    bar.close()
    # Normalise strip by strip: no image-sized temporary.
    strip = max(1, 2**22 // max(1, width * results.shape[-1]))
    for top in range(0, height, strip):
        weights = np.outer(rows.normaliser[top : top + strip], cols.normaliser)[..., None]
        results[top : top + strip] /= weights.astype("float32")
    return results


class _NoProgress:
    def update(self, count):
        pass

    def close(self):
        pass


def _progress_bar(total, progress):
    if not progress:
        return _NoProgress()
    from tqdm.auto import tqdm  # imported here: `import kfcn.inference` stays light

    return tqdm(total=total, desc="tiles", unit="tile")


def _read(image, row_indices, col_indices):
    # One contiguous block read (a memmap reads only this), then mirrored re-indexing.
    low_r, high_r = row_indices.min(), row_indices.max() + 1
    low_c, high_c = col_indices.min(), col_indices.max() + 1
    block = np.asarray(image[low_r:high_r, low_c:high_c])
    tile = block[np.ix_(row_indices - low_r, col_indices - low_c)]
    return tile.astype("float32", copy=False)


def _accumulate(results, prediction, rows, cols, i, j):
    top, left = rows.output_start(i), cols.output_start(j)
    r0, r1 = max(top, 0), min(top + rows.output, rows.size)
    c0, c1 = max(left, 0), min(left + cols.output, cols.size)
    if r0 >= r1 or c0 >= c1:
        return
    weights = np.outer(rows.windows[i][r0 - top : r1 - top], cols.windows[j][c0 - left : c1 - left])
    results[r0:r1, c0:c1] += prediction[r0 - top : r1 - top, c0 - left : c1 - left] * weights[..., None]
