"""Peak memory of tiled prediction, memory map in and memory map out, against image size (issue 13, target 5).

Each size runs in a fresh process: a uint8 image written to a `.npy` memory map is
predicted tile by tile into a float32 `.npy` memory map (`kfcn.inference.predict_tiled`
with `out=`), while a thread samples the process's anonymous resident memory (`RssAnon`
in /proc/self/status: the heap, the model, the tile batches; mapped file pages, which
the kernel may drop at will, are not counted). Beside it, MONAI's
`sliding_window_inference` on the same image, which needs the image and its output as
in-memory tensors. The target: kfcn's peak at 8192^2 within 1.5x of its peak at 2048^2.

    python benchmarks/tiled_memory.py                  # 2048^2 and 8192^2, about 10 minutes on 2 cores
    python benchmarks/tiled_memory.py --sizes 512 1024 # a smoke test

Linux only (reads /proc). The network is small (U-Net filters 8, depth 4): its tiles'
activations are the same at every image size, so a small one keeps the run short
without changing what is measured.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

TILE, OVERLAP, BATCH, FILTERS = 512, 128, 4, 8


def anonymous_rss():
    """The process's anonymous resident memory in bytes (RssAnon), from /proc/self/status."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    raise OSError("RssAnon not in /proc/self/status (Linux only)")


class PeakSampler:
    """Samples `anonymous_rss()` every `interval` seconds in a thread; `.peak` is the largest."""

    def __init__(self, interval=0.01):
        self.interval, self.peak, self._stop = interval, anonymous_rss(), threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, anonymous_rss())
            time.sleep(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, anonymous_rss())


def write_image(path, side):
    """A random uint8 image written strip by strip into a .npy memory map (never whole in memory)."""
    import numpy as np

    image = np.lib.format.open_memmap(path, mode="w+", dtype="uint8", shape=(side, side))
    rng = np.random.default_rng(0)
    for top in range(0, side, 512):
        image[top : top + 512] = rng.integers(0, 256, image[top : top + 512].shape, dtype="uint8")
    image.flush()
    del image


def child_kfcn(side, folder):
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import numpy as np

    import kfcn

    model = kfcn.models.unet((None, None, 1), num_classes=1, filters=FILTERS, depth=4)
    warm = np.zeros((1024, 1024), "uint8")
    kfcn.inference.predict_tiled(model, warm, TILE, overlap=OVERLAP, blend="gaussian", batch_size=BATCH, progress=False)
    image_path, output_path = Path(folder) / "image.npy", Path(folder) / "output.npy"
    write_image(image_path, side)
    image = np.load(image_path, mmap_mode="r")
    out = np.lib.format.open_memmap(output_path, mode="w+", dtype="float32", shape=(side, side, 1))
    baseline = anonymous_rss()
    started = time.perf_counter()
    with PeakSampler() as sampler:
        kfcn.inference.predict_tiled(
            model, image, TILE, overlap=OVERLAP, blend="gaussian", batch_size=BATCH, out=out, progress=False
        )
        out.flush()
    return {"seconds": time.perf_counter() - started, "baseline": baseline, "peak": sampler.peak}


def child_monai(side, folder):
    import numpy as np
    import torch
    from monai.inferers import sliding_window_inference

    sys.path.insert(0, str(Path(__file__).parent))
    from prediction_paths import torch_unet

    torch.set_num_threads(os.cpu_count())
    network = torch_unet(FILTERS, 4)
    image_path = Path(folder) / "image.npy"
    write_image(image_path, side)
    baseline = anonymous_rss()
    started = time.perf_counter()
    with PeakSampler() as sampler, torch.inference_mode():
        image = torch.from_numpy(np.load(image_path, mmap_mode="r")[None, None].astype("float32"))
        output = sliding_window_inference(
            image.contiguous(memory_format=torch.channels_last),
            (TILE, TILE),
            BATCH,
            network,
            overlap=0.25,
            mode="gaussian",
        )
        np.save(Path(folder) / "output.npy", output[0, 0].numpy())
    return {"seconds": time.perf_counter() - started, "baseline": baseline, "peak": sampler.peak}


def run_child(which, side):
    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, __file__, "--child", which, str(side), folder]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode:
            raise SystemExit(f"{which} at {side}^2 failed:\n{result.stderr[-3000:]}")
        return json.loads(result.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs=2, default=[2048, 8192], metavar=("SMALL", "LARGE"))
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        which, side, folder = args.child
        result = (child_kfcn if which == "kfcn" else child_monai)(int(side), folder)
        print(json.dumps(result))
        return
    from importlib.metadata import version

    print(
        f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores; Keras {version('keras')}, TensorFlow "
        f"{version('tensorflow')}, torch {version('torch')}, MONAI {version('monai')}; U-Net filters {FILTERS}, "
        f"depth 4; tiles {TILE}, overlap {OVERLAP} px, gaussian, {BATCH} per call; memmap in, memmap out (kfcn)"
    )
    print(f"{'':34s}" + "".join(f"{side:>7d}^2 peak   time" for side in args.sizes) + "   growth")
    for which, label in (("kfcn", "kfcn predict_tiled (TensorFlow)"), ("monai", "MONAI sliding_window_inference")):
        results = [run_child(which, side) for side in args.sizes]
        cells = "".join(f"{(r['peak'] / 2**20):>10.0f} MiB {r['seconds']:>5.0f} s" for r in results)
        growth = results[1]["peak"] / results[0]["peak"]
        print(f"{label:34s}{cells}   {growth:.2f}x")
    print("peak = largest anonymous resident memory (RssAnon) during prediction, model and runtime included;")
    print("target: kfcn's growth from the small to the large image <= 1.5x")


if __name__ == "__main__":
    main()
