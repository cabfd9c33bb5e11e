"""The README's gallery: `kfcn predict` with the shipped model on held-out ISBI slices, overlays side by side.

    KERAS_BACKEND=tensorflow python examples/make_gallery.py    # writes docs/images/isbi_overlays.png

The overlays are exactly what `kfcn predict slice.png --output out/` writes (out/slice_overlay.png);
this script only runs the command and puts three of them in one picture.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from kfcn.cli import main as kfcn
from kfcn.samples import isbi2012_dir

SLICES = ("slice_20", "slice_22", "slice_24")  # held out from training
OUTPUT = Path("docs/images/isbi_overlays.png")


def main():
    with tempfile.TemporaryDirectory() as folder:
        images = [str(isbi2012_dir() / "images" / f"{name}.png") for name in SLICES]
        if kfcn(["predict", *images, "--output", folder]) != 0:
            raise SystemExit("kfcn predict failed")
        tiles = [Image.open(Path(folder) / f"{name}_overlay.png").convert("RGB") for name in SLICES]
    side = 320
    strip = np.full((side, len(tiles) * side + (len(tiles) - 1) * 8, 3), 255, np.uint8)
    for index, tile in enumerate(tiles):
        strip[:, index * (side + 8) : index * (side + 8) + side] = np.asarray(tile.resize((side, side), Image.LANCZOS))
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(strip).save(OUTPUT)
    print(f"wrote {OUTPUT}")


if __name__ == "__main__":
    main()
