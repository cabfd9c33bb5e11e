"""The web pages of the shipped models, with their held-out scores in the model card (`make web`).

    KERAS_BACKEND=tensorflow python examples/web_pages.py --output build/web
    kfcn serve-web build/web/isbi        # then open http://127.0.0.1:8000/

isbi: the ISBI 2012 membrane U-Net on 512x512 tiles (a whole slice in one call); counter:
the VGG cell counter on 256x256 tiles (a whole image in one call), whose page shows the
count, the sum of the density map. Both float16 by default (`--quantize`).
"""

import argparse
import json
from pathlib import Path

import keras

from kfcn.export.web import web
from kfcn.samples import shipped_model_path

ROOT = Path(__file__).resolve().parents[1]
SAVED = ROOT / "saved_models"


def isbi_metadata():
    validation = json.loads((SAVED / "unet_isbi_validation.json").read_text())
    scores = json.loads((SAVED / "unet_isbi_deployment.json").read_text())["metrics_mean_over_held_out_slices"]
    float16 = scores["tflite_float16"]
    return {
        "task": "ISBI 2012 EM membranes: probability of cell interior (membranes are 0)",
        "held_out": ", ".join(validation["held_out"]),
        "held_out_scores": f"pixel error {float16['pixel_error']}, membrane Dice {float16['membrane_dice']} "
        "(float16 TFLite, mean over the held-out slices)",
    }


def counter_metadata():
    card = json.loads((SAVED / "vgg_cells_counter.json").read_text())
    result = card["result"]
    return {
        "task": "cell counting: a density map whose sum is the count (VGG synthetic cells)",
        "held_out": f"{result['test_images']} VGG synthetic cell images",
        "held_out_scores": f"count MAE {result['mae']:.2f} cells ({result['relative_mae']:.1%} of the count)",
    }


PAGES = {
    "isbi": (shipped_model_path, isbi_metadata, (512, 512)),
    "counter": (lambda: SAVED / "vgg_cells_counter.keras", counter_metadata, (256, 256)),
}


def export_page(name, output, quantize="float16", runtime=None):
    """Writes the page of shipped model `name` ("isbi" or "counter") into `output`/`name`; returns the report."""
    path, metadata, tile = PAGES[name]
    import kfcn.layers  # noqa: F401  (registers kfcn's layers with Keras)

    model = keras.saving.load_model(path())
    return web(model, Path(output) / name, quantize, tile, runtime=runtime, overwrite=True, metadata=metadata())


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default="build/web", help="folder of the pages (default build/web)")
    parser.add_argument("--quantize", default="float16", choices=("float16", "float32"))
    parser.add_argument("--pages", nargs="+", default=sorted(PAGES), choices=sorted(PAGES))
    args = parser.parse_args()
    for name in args.pages:
        report = export_page(name, args.output, args.quantize)
        folder = report["folder"]
        print(f"wrote {folder} ({report['bytes'] / 1e6:.1f} MB); serve it with `kfcn serve-web {folder}`")


if __name__ == "__main__":
    main()
