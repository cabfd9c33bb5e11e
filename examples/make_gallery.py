"""The README's gallery: `kfcn predict` with the shipped model on held-out ISBI slices, overlays side by side.

    KERAS_BACKEND=tensorflow python examples/make_gallery.py    # writes docs/images/isbi_overlays.png

The overlays are exactly what `kfcn predict slice.png --output out/` writes (out/slice_overlay.png);
this script only runs the command, puts three of them in one picture with a title on each,
and names what the tint and the outline mean (`kfcn.rendering.overlay_legend`).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from figures import save_panels
from PIL import Image

from kfcn.cli import main as kfcn
from kfcn.rendering import overlay_legend
from kfcn.samples import isbi2012_dir

SLICES = ("slice_20", "slice_22", "slice_24")  # held out from training
OUTPUT = Path("docs/images/isbi_overlays.png")


def main():
    with tempfile.TemporaryDirectory() as folder:
        images = [str(isbi2012_dir() / "images" / f"{name}.png") for name in SLICES]
        if kfcn(["predict", *images, "--output", folder]) != 0:
            raise SystemExit("kfcn predict failed")
        overlays = [np.asarray(Image.open(Path(folder) / f"{name}_overlay.png").convert("RGB")) for name in SLICES]
    panels = [(picture, f"{name}_overlay.png (held-out slice)", None) for name, picture in zip(SLICES, overlays)]
    legend = overlay_legend(["membrane (p ≤ 0.5)", "cell interior (p > 0.5)"])
    save_panels(
        OUTPUT,
        [panels],
        panel_size=(3.3, 3.2),
        fontsize=9,
        dpi=110,
        legend=legend,
        title="kfcn predict with the shipped U-Net: cell interior where its probability is above 0.5",
    )


if __name__ == "__main__":
    main()
