"""The README's CamVid figure: each shipped CamVid network on three validation images, with the class legend.

    KERAS_BACKEND=tensorflow python examples/camvid_figure.py   # writes docs/images/camvid_predictions.png

Needs CamVid (SegNet's split, `../shared/datasets/camvid` or `--data`). The shipped networks are
`saved_models/camvid_unet.keras` and `saved_models/camvid_segnet.keras`, made by `kfcn train --recipe
camvid-unet` and `--recipe camvid-segnet` (their cards: `saved_models/camvid_unet.md`, `camvid_segnet.md`);
`--model` draws other files instead (repeat it for several). `examples/camvid_segmentation.py --figure`
draws the two networks that script trains.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from camvid_segmentation import DEFAULT_DATA, figure, read_split, shown_images

import kfcn
from kfcn.saving import load_model

SHIPPED = {"unet": "U-Net", "segnet": "SegNet"}  # saved_models/camvid_NETWORK.keras, in the figure's order
OUTPUT = Path("docs/images/camvid_predictions.png")


def shipped_models(folder=Path("saved_models")):
    """{panel name: path} of the shipped CamVid networks that are in `folder`, the U-Net first.

    Example:
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> (folder / "camvid_segnet.keras").touch()
    >>> {name: path.name for name, path in shipped_models(folder).items()}
    {'shipped SegNet': 'camvid_segnet.keras'}
    """
    paths = {f"shipped {name}": folder / f"camvid_{network}.keras" for network, name in SHIPPED.items()}
    return {name: path for name, path in paths.items() if path.is_file()}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="CamVid folder with val/images and val/labels")
    parser.add_argument(
        "--model", type=Path, action="append", help="a CamVid .keras; repeat for several (default: the shipped ones)"
    )
    parser.add_argument("--output", default=str(OUTPUT))
    args = parser.parse_args()
    if not (Path(args.data) / "val").is_dir():
        raise SystemExit(f"No CamVid validation split under {args.data}; pass --data.")
    models = {path.stem: path for path in args.model} if args.model else shipped_models()
    if not models:
        raise SystemExit("No shipped CamVid network under saved_models/ (run from the repository) and no --model.")
    images, labels = read_split(Path(args.data), "val")
    shown = shown_images(len(images))
    predictions = {}
    for name, path in models.items():
        model = load_model(path)
        predictions[name] = {index: kfcn.inference.predict(model, images[index]).argmax(-1) for index in shown}
    figure(
        args.output,
        images,
        labels,
        predictions,
        title=f"{' and '.join(path.name for path in models.values())} on CamVid validation images "
        "(11 classes; void is not scored)",
    )


if __name__ == "__main__":
    main()
