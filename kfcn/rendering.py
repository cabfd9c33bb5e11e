"""Pictures of predictions: class overlays on the input image and heat maps of value maps.

NumPy only, so the command line and the examples draw the same pictures on every backend.
"""

from __future__ import annotations

import numpy as np

from kfcn.arrays import one_channel

# Class k is drawn in PALETTE[k % len(PALETTE)]: distinct, colour-blind friendly (Okabe-Ito);
# class 0 is the background and is not tinted by default.
PALETTE = np.array(
    [
        (0, 0, 0),  # black (background)
        (213, 94, 0),  # vermillion
        (0, 158, 115),  # bluish green
        (0, 114, 178),  # blue
        (230, 159, 0),  # orange
        (204, 121, 167),  # reddish purple
        (86, 180, 233),  # sky blue
        (240, 228, 66),  # yellow
    ],
    dtype=np.float32,
)


def class_map(prediction, threshold=0.5):
    """(H, W) int32 classes of a prediction: `p > threshold` for one channel, else the arg-max.

    Example:
    >>> class_map(np.array([[[0.2], [0.7]]])).tolist()
    [[0, 1]]
    """
    prediction = np.asarray(prediction)
    if prediction.ndim != 3:
        raise ValueError(f"A prediction is (H, W, K); got shape {prediction.shape}.")
    if prediction.shape[-1] == 1:
        return (prediction[..., 0] > threshold).astype(np.int32)
    return prediction.argmax(-1).astype(np.int32)


def to_display(image, value_range=(0, 255)):
    """(H, W, 3) uint8 of a raw image: values mapped from `value_range` (None: the image's own min-max).

    Example:
    >>> to_display(np.array([[[0.0], [255.0]]]))[..., 0].tolist()
    [[0, 255]]
    """
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 2:
        image = image[..., None]
    low, high = value_range if value_range is not None else (float(np.nanmin(image)), float(np.nanmax(image)))
    scaled = (image - low) / max(high - low, 1e-12)
    scaled = np.clip(np.nan_to_num(scaled), 0, 1)
    if scaled.shape[-1] == 1:
        scaled = np.repeat(scaled, 3, axis=-1)
    return (scaled[..., :3] * 255).round().astype(np.uint8)


def overlay(image, classes, alpha=0.35, value_range=(0, 255), outline=True, background=0):
    """The image with each class tinted in its palette colour (class k: `PALETTE[k]`), region outlines drawn.

    The background class is left untinted, so the image stays readable; its outlines
    against other classes are drawn in the other class's colour.

    Args:
        image: (H, W) or (H, W, C) raw pixel values.
        classes: (H, W) integer class map (`class_map(prediction)`).
        alpha: opacity of the tint.
        value_range: the image's pixel range (None: its own min-max).
        outline: draw the boundary between classes in full colour.
        background: class drawn without tint (None: tint every class).

    Returns:
        (H, W, 3) uint8.

    Example:
    >>> picture = overlay(np.zeros((4, 4)), np.eye(4, dtype=int))
    >>> picture.shape, picture.dtype.name
    ((4, 4, 3), 'uint8')
    """
    classes = np.asarray(classes)
    if classes.shape != np.shape(image)[:2]:
        raise ValueError(f"The class map is {classes.shape} but the image is {np.shape(image)[:2]}; they must match.")
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must lie in [0, 1]; got {alpha}.")
    if value_range is None:  # the whole image's range, not each strip's
        value_range = (float(np.nanmin(image)), float(np.nanmax(image))) if np.size(image) else (0, 1)
    # Strip by strip, so that a large image costs its uint8 picture plus one strip's temporaries.
    picture = np.empty((*classes.shape, 3), np.uint8)
    height = classes.shape[0]
    for top in range(0, height, OVERLAY_STRIP_ROWS):
        bottom = min(top + OVERLAY_STRIP_ROWS, height)
        above, below = max(top - 1, 0), min(bottom + 1, height)  # a row of context on each side for the outlines
        picture[top:bottom] = _tint(
            to_display(image[top:bottom], value_range), classes[above:below], top - above, alpha, outline, background
        )
    return picture


OVERLAY_STRIP_ROWS = 512


def _tint(display, classes, first, alpha, outline, background):
    """`overlay` of one strip: `display` (n, W, 3) uint8, `classes` the strip's rows with their neighbours,
    the strip's first row at `first`."""
    rows = slice(first, first + display.shape[0])
    own = classes[rows]
    tinted = own != background if background is not None else np.ones(own.shape, bool)
    colours = PALETTE[own % len(PALETTE)].astype(np.float32)
    base = display.astype(np.float32)
    picture = np.where(tinted[..., None], (1 - alpha) * base + alpha * colours, base)
    if outline:
        # A pixel of a tinted class that touches another class is drawn in its own colour.
        edge = np.zeros(classes.shape, bool)
        edge[:-1] |= classes[:-1] != classes[1:]
        edge[1:] |= classes[1:] != classes[:-1]
        edge[:, :-1] |= classes[:, :-1] != classes[:, 1:]
        edge[:, 1:] |= classes[:, 1:] != classes[:, :-1]
        edge = edge[rows] & tinted
        picture = np.where(edge[..., None], colours, picture)
    return picture.round().astype(np.uint8)


def overlay_legend(class_names, alpha=0.35, outline=True, background=0):
    """What `overlay` draws, as legend entries: one a class, in class order.

    A tinted class shows its tint as it looks over a mid-grey pixel (the palette colour
    blended at `alpha`) and, with `outline=True`, its outline colour as the edge; the
    background class is named as untinted.

    Args:
        class_names: the name of each class, class 0 first.
        alpha, outline, background: as given to `overlay`.

    Returns:
        A list of dicts `{"label": str, "face": (r, g, b) or None, "edge": (r, g, b) or None}`,
        colours in 0-255 (`examples/figures.py` draws them as a matplotlib legend).

    Example:
    >>> [entry["label"] for entry in overlay_legend(["membrane", "cell interior"])]
    ['membrane: not tinted', 'cell interior: tinted, its boundary outlined']
    >>> overlay_legend(["membrane", "cell interior"])[1]["edge"]
    (213, 94, 0)
    """
    entries = []
    for index, name in enumerate(class_names):
        if background is not None and index == background:
            entries.append({"label": f"{name}: not tinted", "face": None, "edge": None})
            continue
        colour = PALETTE[index % len(PALETTE)]
        tint = (1 - alpha) * 128 + alpha * colour
        entries.append(
            {
                "label": f"{name}: tinted, its boundary outlined" if outline else f"{name}: tinted",
                "face": tuple(int(value) for value in tint.round()),
                "edge": tuple(int(value) for value in colour) if outline else None,
            }
        )
    return entries


def heat_map(values, value_range=None, colormap="magma"):
    """(H, W, 3) uint8 picture of a value map (density, error, one channel) through a matplotlib colour map.

    Args:
        values: (H, W) or (H, W, 1) array.
        value_range: (low, high) mapped to the ends of the colour map; None: 0 (or the
            minimum, if negative) to the maximum.
        colormap: a matplotlib colour map name.

    Example:
    >>> heat_map(np.arange(6.0).reshape(2, 3)).shape
    (2, 3, 3)
    """
    from matplotlib import colormaps

    values = one_channel(values, "A heat map shows one channel: its values", dtype=np.float32)
    if value_range is None:
        finite = values[np.isfinite(values)]
        low = min(0.0, float(finite.min())) if finite.size else 0.0
        high = float(finite.max()) if finite.size else 1.0
    else:
        low, high = value_range
    scaled = np.clip(np.nan_to_num((values - low) / max(high - low, 1e-12)), 0, 1)
    return (colormaps[colormap](scaled)[..., :3] * 255).round().astype(np.uint8)
