"""The README's receptive-field figure: where the shipped U-Net's centre output really looks.

    KERAS_BACKEND=tensorflow python examples/erf_figure.py   # writes docs/images/erf_unet_isbi.png

The measurement is `kfcn inspect MODEL --erf PNG`'s (`kfcn.analysis.effective_receptive_field`
on 8 random inputs drawn over the model's pixel range, on an input at least as large as the
theoretical field and 256 px), so this script prints the radius that `kfcn inspect` prints;
it only draws it with a colour bar, a scale in pixels and a legend for the two squares.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
from figures import legend_handles

from kfcn.analysis import effective_receptive_field, receptive_field
from kfcn.inference import model_geometry
from kfcn.samples import shipped_model_path
from kfcn.saving import load_model

OUTPUT = Path("docs/images/erf_unet_isbi.png")


def measure(model, samples=8):
    """The effective receptive field as `kfcn inspect --erf` measures it, and the input side it used."""
    geometry = model_geometry(model)
    field = receptive_field(model)
    finite = [int(math.ceil(value)) for value in field.size if math.isfinite(value)]
    static = tuple(model.inputs[0].shape[1:3])
    side = static if all(static) else (geometry.valid_input_size(model, max([256, *finite]) + 2 * geometry.margin),) * 2
    return effective_receptive_field(model, (*side, geometry.channels), samples=samples), side


def draw(erf, side, samples, path, title):
    """The gradient share on a log scale around the output pixel, both squares outlined and named."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    row, col = erf.centre
    height, width = erf.heatmap.shape
    extent = (-col - 0.5, width - col - 0.5, height - row - 0.5, -row - 0.5)  # px from the output pixel
    relative = np.log10(np.maximum(erf.heatmap / erf.heatmap.max(), 1e-6))
    figure, axis = plt.subplots(figsize=(5.6, 4.6), layout="constrained")
    shown = axis.imshow(relative, cmap="inferno", vmin=-6, vmax=0, extent=extent, interpolation="nearest")
    bar = figure.colorbar(shown, ax=axis, fraction=0.046, pad=0.03)
    bar.set_label("log10 of |∂ centre output / ∂ input pixel|, relative to its maximum", fontsize=8)
    bar.ax.tick_params(labelsize=8)
    squares = []
    if math.isfinite(erf.theoretical_size):
        half = erf.theoretical_size / 2
        squares.append(
            (half, {"edgecolor": (0, 1, 1), "linestyle": "-"}, f"theoretical field: {erf.theoretical_size:g} px")
        )
    radius = erf.radius_95 + 0.5
    squares.append(
        (radius, {"edgecolor": (1, 1, 1), "linestyle": "--"}, f"95 % of the gradient: within {erf.radius_95} px")
    )
    for half, style, _ in squares:
        axis.add_patch(Rectangle((-half, -half), 2 * half, 2 * half, fill=False, linewidth=1.5, **style))
    axis.set_xlabel("px from the output pixel (columns)", fontsize=8)
    axis.set_ylabel("px from the output pixel (rows)", fontsize=8)
    axis.tick_params(labelsize=8)
    axis.set_title(title + f"\n(mean over {samples} random {side[0]}×{side[1]} inputs)", fontsize=9)
    entries = [
        {"label": label, "face": None, "edge": tuple(255 * np.array(style["edgecolor"]))} for _, style, label in squares
    ]
    handles = legend_handles(entries)
    for handle, (_, style, _) in zip(handles, squares):
        handle.set_linestyle(style["linestyle"])
    axis.legend(handles=handles, loc="lower left", fontsize=8, facecolor=(0.2, 0.2, 0.2), labelcolor="white")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    print(f"wrote {path}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(shipped_model_path()), help="a .keras file (default: the shipped U-Net)")
    parser.add_argument("--output", default=str(OUTPUT))
    args = parser.parse_args()
    model = load_model(args.model)
    samples = 8
    erf, side = measure(model, samples)
    print(
        f"effective receptive field at {side[0]}x{side[1]}: 95 % of the gradient within {erf.radius_95} px of the "
        f"centre ({erf.coverage:.0%} of the theoretical {erf.theoretical_size:g} px)"
    )
    draw(erf, side, samples, args.output, f"Effective receptive field of {Path(args.model).name}")


if __name__ == "__main__":
    main()
