"""The examples' figures: rows of titled pictures saved as one PNG (matplotlib, no display needed).

A figure should read without its caption: every panel has a title, a panel drawn through a
colour map has a colour bar that says what the colours measure, and colours that stand for
classes are named in a legend under the panels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def legend_handles(entries):
    """Matplotlib patches for legend entries.

    Args:
        entries: `(colour, label)` pairs (a filled square of that RGB 0-255 colour), or dicts
            `{"label": str, "face": colour or None, "edge": colour or None}` as
            `kfcn.rendering.overlay_legend` gives them (face: the fill; edge: an outline).
    """
    from matplotlib.patches import Patch

    handles = []
    for entry in entries:
        if not isinstance(entry, dict):
            colour, label = entry
            entry = {"label": label, "face": colour, "edge": None}
        face = np.asarray(entry["face"], float) / 255 if entry.get("face") is not None else "none"
        edge = np.asarray(entry["edge"], float) / 255 if entry.get("edge") is not None else (0.5, 0.5, 0.5)
        handles.append(Patch(facecolor=face, edgecolor=edge, linewidth=2 if entry.get("edge") is not None else 0.5,
                             label=entry["label"]))  # fmt: skip
    return handles


def save_panels(path, rows, panel_size=(2.4, 2.6), fontsize=8, dpi=90, legend=None, legend_columns=None, title=None):
    """Saves a grid of pictures as a PNG at `path` and says so.

    Args:
        path: the PNG to write (its folder is created).
        rows: a list of rows, each a list of panels `(picture, title, options)`, `options` a
            dict for `matplotlib.axes.Axes.imshow` (or None), plus an optional
            `"colorbar": "what the colours measure"` that draws a labelled colour bar beside
            the panel (for a 2-D picture drawn through `cmap`).
        panel_size: (width, height) of one panel in inches.
        legend: entries for `legend_handles` (class colours, what a tint or outline means),
            drawn under the panels.
        legend_columns: columns of the legend (default: up to 6 a row).
        title: a line above the whole figure.
    """
    plt = _pyplot()
    columns = max(len(row) for row in rows)
    legend_rows = -(-len(legend) // (legend_columns or min(len(legend), 6))) if legend else 0
    height = panel_size[1] * len(rows) + (0.3 if title else 0) + 0.3 * legend_rows
    figure, axes = plt.subplots(
        len(rows), columns, figsize=(panel_size[0] * columns, height), squeeze=False, layout="constrained"
    )
    for row_axes, row in zip(axes, rows):
        for axis in row_axes:
            axis.set_axis_off()
        for axis, (picture, panel_title, options) in zip(row_axes, row):
            options = dict(options or {})
            colorbar = options.pop("colorbar", None)
            shown = axis.imshow(picture, **options)
            axis.set_title(panel_title, fontsize=fontsize)
            if colorbar:
                bar = figure.colorbar(shown, ax=axis, fraction=0.046, pad=0.03)
                bar.set_label(colorbar, fontsize=fontsize - 1)
                bar.ax.tick_params(labelsize=fontsize - 1)
    if title:
        figure.suptitle(title, fontsize=fontsize + 1)
    if legend:
        figure.legend(
            handles=legend_handles(legend),
            loc="outside lower center",
            ncol=legend_columns or min(len(legend), 6),
            fontsize=fontsize,
            frameon=False,
        )
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=dpi)
    plt.close(figure)
    print(f"wrote {path}")
