"""The examples' figures: rows of titled pictures saved as one PNG (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path


def save_panels(path, rows, panel_size=(2.4, 2.6), fontsize=8, dpi=90):
    """Saves a grid of pictures as a PNG at `path` and says so.

    Args:
        path: the PNG to write (its folder is created).
        rows: a list of rows, each a list of panels `(picture, title, imshow_options)`,
            `imshow_options` a dict for `matplotlib.axes.Axes.imshow` (or None).
        panel_size: (width, height) of one panel in inches.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = max(len(row) for row in rows)
    figure, axes = plt.subplots(
        len(rows), columns, figsize=(panel_size[0] * columns, panel_size[1] * len(rows)), squeeze=False
    )
    for row_axes, row in zip(axes, rows):
        for axis in row_axes:
            axis.set_axis_off()
        for axis, (picture, title, options) in zip(row_axes, row):
            axis.imshow(picture, **(options or {}))
            axis.set_title(title, fontsize=fontsize)
    figure.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=dpi)
    plt.close(figure)
    print(f"wrote {path}")
