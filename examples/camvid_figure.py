"""The README's CamVid figure: the shipped U-Net on three validation images, with the class legend.

    KERAS_BACKEND=tensorflow python examples/camvid_figure.py   # writes docs/images/camvid_predictions.png

Needs CamVid (SegNet's split, `../shared/datasets/camvid` or `--data`). The shipped model is
`saved_models/camvid_unet.keras`, made by `kfcn train --recipe camvid-unet` (its card:
`saved_models/camvid_unet.md`); `examples/camvid_segmentation.py --figure` draws the two
networks that script trains the same way.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from camvid_segmentation import DEFAULT_DATA, figure, read_split, shown_images

import kfcn
from kfcn.saving import load_model

MODEL = Path("saved_models/camvid_unet.keras")
OUTPUT = Path("docs/images/camvid_predictions.png")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="CamVid folder with val/images and val/labels")
    parser.add_argument("--model", default=str(MODEL))
    parser.add_argument("--output", default=str(OUTPUT))
    args = parser.parse_args()
    if not (Path(args.data) / "val").is_dir():
        raise SystemExit(f"No CamVid validation split under {args.data}; pass --data.")
    images, labels = read_split(Path(args.data), "val")
    model = load_model(args.model)
    shown = {index: kfcn.inference.predict(model, images[index]).argmax(-1) for index in shown_images(len(images))}
    figure(
        args.output,
        images,
        labels,
        {"shipped U-Net": shown},
        title=f"{Path(args.model).name} on CamVid validation images (11 classes; void is not scored)",
    )


if __name__ == "__main__":
    main()
