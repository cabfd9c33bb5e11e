"""Effective receptive field (Luo et al. 2017): where an output unit really looks."""

from __future__ import annotations

import math
from dataclasses import dataclass

import keras
import numpy as np

from kfcn.analysis.fully_convolutional import check_fully_convolutional, check_model_input
from kfcn.analysis.geometry import input_range
from kfcn.analysis.gradients import input_gradient
from kfcn.analysis.receptive_field import receptive_field
from kfcn.arguments import check_integer


@dataclass
class EffectiveReceptiveField:
    """Result of `effective_receptive_field`.

    Attributes:
        heatmap: (H, W) mean |∂y_centre / ∂x|, normalised to sum 1.
        centre: (row, col) of the output unit studied (also its input position).
        sigma: (rows, cols) standard deviation of the heat map (a Gaussian fit by moments).
        radius_95: radius (px) of the centred square that holds 95 % of the gradient mass.
        theoretical_size: side of the theoretical receptive field.
        coverage: (2 · radius_95 + 1) / theoretical_size: the fraction of the
            theoretical field that the effective one spans (Luo et al. find it small).
    """

    heatmap: np.ndarray
    centre: tuple
    sigma: tuple
    radius_95: int
    theoretical_size: float
    coverage: float

    def save_png(self, path, scale=2):
        """Writes the heat map (log scale, hot colours) with the theoretical field outlined in cyan."""
        from PIL import Image, ImageDraw

        heat = np.log10(self.heatmap / self.heatmap.max() + 1e-6)
        heat = np.clip((heat + 6) / 6, 0, 1)
        rgb = np.stack([np.clip(3 * heat, 0, 1), np.clip(3 * heat - 1, 0, 1), np.clip(3 * heat - 2, 0, 1)], -1)
        image = Image.fromarray((rgb * 255).astype(np.uint8)).resize(
            (self.heatmap.shape[1] * scale, self.heatmap.shape[0] * scale), Image.NEAREST
        )
        draw = ImageDraw.Draw(image)
        if math.isfinite(self.theoretical_size):
            half = self.theoretical_size / 2
            row, col = self.centre
            box = [
                (col - half + 0.5) * scale,
                (row - half + 0.5) * scale,
                (col + half + 0.5) * scale - 1,
                (row + half + 0.5) * scale - 1,
            ]
            draw.rectangle(box, outline=(0, 255, 255))
        from kfcn.atomic import atomic_path

        with atomic_path(path) as temporary:
            image.save(temporary, format="PNG")
        return path


def effective_receptive_field(model, input_shape, samples=8, reinitialize=False, seed=0, probes=None):
    """Measures the effective receptive field of the centre output unit.

    The gradient of the centre output unit (summed over its channels) with respect to
    the input is averaged in absolute value over `samples` random inputs (and, with
    `reinitialize=True`, over fresh random weights for each sample, as Luo et al. do
    for untrained networks). Works on every backend.

    Args:
        model: a Keras model with one image input.
        input_shape: (H, W, C) of the probe inputs; a size the model accepts.
        samples: number of random inputs averaged. They are drawn as the model takes its
            input: uniform over its raw pixel range where it has one (kfcn's builders'
            `input_range`, e.g. 0-255), else standard normal.
        reinitialize: draw new weights for every sample (clones the model).
        seed: seed of the random inputs.
        probes: optional (N, H, W, C) array of inputs to average over instead of random
            ones (e.g. crops of real images: the ERF of a trained network depends on its
            input); `input_shape` must then be (H, W, C) and `samples` is ignored.

    Returns:
        An `EffectiveReceptiveField`.

    Raises:
        ValueError: the model is not fully convolutional (`check_fully_convolutional`),
            or `input_shape` has other channels or, for a model built for one size,
            another size than the model takes.

    Example:
    >>> from kfcn.models import plain_cnn
    >>> erf = effective_receptive_field(plain_cnn((None, None, 1), num_layers=3, filters=4), (21, 21, 1), samples=2)
    >>> erf.radius_95 <= 3 and erf.theoretical_size == 7
    True
    """
    if len(tuple(input_shape)) != 3:
        raise ValueError(f"`input_shape` is (height, width, channels), e.g. (64, 64, 1); got {input_shape!r}.")
    samples = check_integer("samples", samples, minimum=1, meaning="the number of random inputs to average")
    check_fully_convolutional(model, "effective_receptive_field")
    check_model_input(model, input_shape, "effective_receptive_field")
    height, width, _ = input_shape
    if probes is not None:
        probes = np.asarray(probes, dtype="float32")
        if probes.ndim != 4 or probes.shape[1:] != tuple(input_shape):
            raise ValueError(f"`probes` must be (N, *input_shape) = (N, {height}, {width}, ...); got {probes.shape}.")
        samples = len(probes)
    rng = np.random.default_rng(seed)
    pixel_range = input_range(model)

    def random_input():
        if pixel_range is None:
            return rng.normal(size=(1, *input_shape)).astype("float32")
        return rng.uniform(*pixel_range, size=(1, *input_shape)).astype("float32")

    output_shape = model.compute_output_shape((1, *input_shape))
    out_h, out_w = output_shape[1], output_shape[2]
    centre_out = (out_h // 2, out_w // 2)
    offset = ((height - out_h) // 2, (width - out_w) // 2)
    total = np.zeros((height, width), dtype="float64")
    for sample in range(samples):
        network = keras.models.clone_model(model) if reinitialize else model
        x = probes[[sample]] if probes is not None else random_input()

        def centre_unit(tensor, network=network):
            output = network(tensor, training=False)
            return output[:, centre_out[0], centre_out[1], :]

        total += np.abs(input_gradient(centre_unit, x)[0]).sum(-1)
    if total.sum() == 0:
        raise ValueError("The centre output does not depend on the input (zero gradient everywhere).")
    heatmap = total / total.sum()
    centre = (centre_out[0] + offset[0], centre_out[1] + offset[1])
    rows, cols = np.arange(height) - centre[0], np.arange(width) - centre[1]
    sigma = (
        float(np.sqrt(np.sum(heatmap.sum(1) * rows**2))),
        float(np.sqrt(np.sum(heatmap.sum(0) * cols**2))),
    )
    chebyshev = np.maximum(np.abs(rows)[:, None], np.abs(cols)[None, :])
    radius_95 = 0
    while heatmap[chebyshev <= radius_95].sum() < 0.95:
        radius_95 += 1
    theoretical = receptive_field(model, input_size=(height, width)).size[0]
    coverage = (2 * radius_95 + 1) / theoretical if math.isfinite(theoretical) else 0.0
    return EffectiveReceptiveField(heatmap, centre, sigma, radius_95, theoretical, float(coverage))
