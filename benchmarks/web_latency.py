"""Latency of the web page (LiteRT.js in headless Chromium) beside LiteRT in Python, on one float16 file.

The shipped ISBI U-Net's page (`examples/web_pages.py`, float16, 512x512 tile) is served
from localhost and driven by `web/test/drive_page.mjs`, which picks a 512x512 slice
`--repeats` + 1 times and reads the time the page shows (LiteRT.js's WebAssembly build with
XNNPACK, one thread, plus the page's tile copy and blend; the first pick is the warm-up).
The same `model.tflite` then runs in `ai_edge_litert`'s interpreter with 1 and with 2
threads. Needs what `make test-web` installs (Chromium, web/node_modules).

    KERAS_BACKEND=tensorflow python benchmarks/web_latency.py [--repeats 10] [--screenshot docs/images/web_page.png]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from ai_edge_litert.interpreter import Interpreter  # noqa: E402
from timing import timings  # noqa: E402

from kfcn.cli.serve_web import serve  # noqa: E402
from kfcn.image_io import read_model_input  # noqa: E402
from kfcn.samples import isbi2012_dir  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))
from web_pages import export_page  # noqa: E402


def page_milliseconds(folder, image, repeats, screenshot):
    """The page's own prediction times (ms) for `image`, warm-up first; saves a screenshot if asked."""
    server = serve(folder, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    output = Path(tempfile.mkdtemp(prefix="kfcn-web-latency-"))
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        command = [
            "node",
            str(ROOT / "web" / "test" / "drive_page.mjs"),
            url,
            str(output),
            "--repeat",
            str(repeats + 1),
        ]
        command += ["--screenshot", image.stem, str(image)]
        subprocess.run(command, check=True)
        report = json.loads((output / f"{image.stem}.json").read_text())
        if screenshot:
            _small_png(output / f"{image.stem}_page.png", screenshot)
    finally:
        server.shutdown()
        server.server_close()
    shutil.rmtree(output, ignore_errors=True)
    return report["milliseconds"]


def _small_png(source, target):
    """The screenshot at 800 px wide in 128 colours: a few hundred KB at most for the repository."""
    from PIL import Image

    image = Image.open(source).convert("RGB")
    image = image.resize((800, round(image.height * 800 / image.width)), Image.LANCZOS)
    image.quantize(128, method=Image.Quantize.MEDIANCUT).save(target, optimize=True)
    print(f"wrote {target} ({Path(target).stat().st_size / 1e3:.0f} KB)")


def litert_milliseconds(path, image, threads, repeats):
    runner = Interpreter(model_path=str(path), num_threads=threads).get_signature_runner("serving_default")
    (name,) = runner.get_input_details()
    seconds, _ = timings(lambda: runner(**{name: image[None]}), repeats)
    return [1e3 * s for s in seconds]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--screenshot", default=None, help="save the page after the prediction as this PNG")
    args = parser.parse_args()
    slice_path = isbi2012_dir() / "images" / "slice_20.png"
    with tempfile.TemporaryDirectory(prefix="kfcn-web-page-") as folder:
        report = export_page("isbi", folder)
        page = page_milliseconds(report["folder"], slice_path, args.repeats, args.screenshot)[1:]
        image = read_model_input(slice_path, 1, (0, 255)).astype("float32")
        rows = [("web page: LiteRT.js 2.5.3 (WebAssembly, XNNPACK, 1 thread) in headless Chromium", page)]
        for threads in (1, 2):
            times = litert_milliseconds(report["tflite"]["path"], image, threads, args.repeats)
            rows.append((f"Python: ai_edge_litert interpreter (XNNPACK, {threads} thread{'s' * (threads > 1)})", times))
    print(f"ISBI U-Net float16 TFLite, one 512x512 slice; {platform.machine()}, {os.cpu_count()} cores")
    print("| runtime | best ms | median ms |\n|---|---|---|")
    for name, times in rows:
        print(f"| {name} | {min(times):.0f} | {np.median(times):.0f} |")


if __name__ == "__main__":
    main()
