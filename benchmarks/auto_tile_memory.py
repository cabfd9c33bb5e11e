"""Peak memory of `predict_tiled(tile_size="auto", memory_budget=G)` against the budget G (issue 25 §2).

`kfcn predict --tile auto --memory-gib G` calls `predict_tiled(model, image, "auto",
memory_budget=G GiB, batch_size=4)`: the tile is the largest whose estimated peak fits
G (`kfcn.inference.auto_tile`), or the whole image in one call when that fits. Each
case here runs that call in a fresh process on a uint8 image given as a `.npy` memory
map (a user's large file) or as an array in memory, while a thread samples the
process's resident memory every 5 ms:

- RssAnon (anonymous memory: the heap, the runtime, the model, the image array, the
  tiles, the output) is what the budget bounds, and what "holds" checks;
- total RSS adds file pages (TensorFlow's shared libraries alone are about 600 MB, the
  memory-mapped image more), which are shared and which the kernel may drop at will.

Tiled cases stop after the first `--batches` tile batches (2): every batch has the same
shape, and the second already holds the first one's leftovers, so the peak is reached
by then (`--batches 0` runs every tile; the README lists full runs that agree). A case
whose RssAnon passes 2.5 x its budget + 1 GiB (at most 10 GiB) is stopped and shown as
"> X". No peer: MONAI's `sliding_window_inference` (not installed here) takes a fixed
`roi_size` and has no memory budget; `--compare-old` measures kfcn's former estimate
(a quarter of the summed layer outputs per pixel) beside the current one.

    python benchmarks/auto_tile_memory.py                 # 24 cases, about 10 minutes on 2 cores
    python benchmarks/auto_tile_memory.py --compare-old   # and the former estimate's tiles, twice as long
    python benchmarks/auto_tile_memory.py --quick         # the small model on 2048^2, a smoke test

Linux only (reads /proc). TensorFlow backend unless KERAS_BACKEND says otherwise.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from tiled_memory import write_image  # noqa: E402

BATCH = 4  # kfcn predict's --batch default
GIB = 2**30
MODELS = {
    "tiny": "U-Net filters 4, depth 2",
    "isbi": "the shipped ISBI U-Net (filters 16, depth 4, batch norm)",
    "wide": "U-Net filters 32, depth 4",
}
OLD_PEAK_FRACTION = 0.25  # the former estimate: a quarter of the summed layer outputs per pixel


def memory():
    """(RssAnon, VmRSS) of this process in bytes, from /proc/self/status."""
    values = {}
    with open("/proc/self/status") as status:
        for line in status:
            key = line.split(":", 1)[0]
            if key in ("RssAnon", "VmRSS"):
                values[key] = int(line.split()[1]) * 1024
    return values["RssAnon"], values["VmRSS"]


class PeakSampler:
    """Samples `memory()` every 5 ms in a thread; ends the process (printing a JSON line) past `cap` bytes."""

    def __init__(self, cap):
        self.cap, self.anon, self.total, self._stop = cap, 0, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self):
        anon, total = memory()
        self.anon, self.total = max(self.anon, anon), max(self.total, total)
        if anon > self.cap:
            print(json.dumps({"stopped": anon, "total": self.total}), flush=True)
            os._exit(3)

    def _run(self):
        while not self._stop.is_set():
            self.sample()
            time.sleep(0.005)

    def __enter__(self):
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.sample()


class _Enough(Exception):
    pass


def stop_after(batches, counted):
    """Makes `predict_tiled(progress=True)` stop after `batches` tile batches (0: never), through its tqdm bar."""
    import tqdm.auto

    class Counter:
        def __init__(self, total=None, **kwargs):
            counted["tiles"] = total

        def update(self, count):
            counted["batches"] += 1
            if batches and counted["batches"] >= batches:
                raise _Enough

        def close(self):
            pass

    tqdm.auto.tqdm = Counter


def build(name):
    import keras

    import kfcn

    if name == "isbi":
        return keras.saving.load_model(kfcn.samples.shipped_model_path())
    filters, depth = (32, 4) if name == "wide" else (4, 2)
    return kfcn.models.unet((None, None, 1), num_classes=1, filters=filters, depth=depth)


def old_tile_size(model, image_shape, budget, batch_size):
    """The former `auto_tile_size`: a quarter of the summed layer outputs per pixel, nothing else counted."""
    from kfcn.analysis.geometry import model_geometry
    from kfcn.inference.auto_tile import activation_bytes_per_pixel

    geometry = model_geometry(model)
    per_pixel = OLD_PEAK_FRACTION * activation_bytes_per_pixel(model)
    whole = [
        geometry.valid_input_size(model, side + 2 * geometry.margin, axis) for axis, side in enumerate(image_shape[:2])
    ]
    if whole[0] * whole[1] * per_pixel <= budget:
        return None
    side = int(math.sqrt(budget / (per_pixel * batch_size)))
    candidate = geometry.valid_input_size(model, max(1, side - geometry.multiple - 2 * geometry.margin))
    while candidate > side and candidate > geometry.multiple:
        candidate = geometry.valid_input_size(model, max(1, candidate - 2 * geometry.multiple))
        if candidate > side:
            candidate -= geometry.multiple
    return max(candidate, geometry.valid_input_size(model, 2 * geometry.multiple + 2 * geometry.margin))


def child(name, side, kind, budget_gib, rule, folder, batches):
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import numpy as np

    from kfcn.inference import predict, predict_tiled
    from kfcn.inference.auto_tile import auto_tile_size, estimate_peak_bytes, resident_bytes

    model = build(name)
    predict(model, np.zeros((64, 64), "uint8"))  # the runtime as after a first small prediction
    framework = memory()[0]
    image = np.load(Path(folder) / f"image{side}.npy", mmap_mode="r" if kind == "memmap" else None)
    budget = budget_gib * GIB
    held = resident_bytes(image)
    try:
        tile = auto_tile_size(model, image.shape, budget, BATCH, held_bytes=held)
    except ValueError as error:
        if rule == "new":
            return {"refused": str(error), "framework": framework}
        tile = "refused"
    if rule == "old":
        tile = old_tile_size(model, image.shape, budget, BATCH)
    try:
        estimate = estimate_peak_bytes(model, image.shape, tile, BATCH, held)
    except ValueError:
        estimate = None
    counted = {"batches": 0, "tiles": None}
    stop_after(batches, counted)
    started = time.perf_counter()
    with PeakSampler(min(10 * GIB, 2.5 * budget + GIB)) as sampler:
        try:
            if rule == "new":  # the very call `kfcn predict --tile auto --memory-gib G` makes
                predict_tiled(model, image, "auto", memory_budget=budget, batch_size=BATCH, progress=True)
            elif tile is None:
                predict(model, image)
            else:
                predict_tiled(model, image, tile, batch_size=BATCH, progress=True)
        except _Enough:
            pass
    return {
        "tile": tile,
        "estimate": estimate,
        "framework": framework,
        "anon": sampler.anon,
        "total": sampler.total,
        "seconds": time.perf_counter() - started,
        "batches": counted["batches"],
        "all_batches": math.ceil(counted["tiles"] / BATCH) if counted["tiles"] else 1,
    }


def calibration_child(name, side, tile, folder):
    """RssAnon growth of one whole-image (`tile` 0) or tiled prediction (2 batches of 4 tiles), for the constants."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import numpy as np

    from kfcn.inference import predict, predict_tiled
    from kfcn.inference.auto_tile import BACKEND_MEMORY, working_bytes_per_pixel

    model = build(name)
    predict(model, np.zeros((64, 64), "uint8"))
    framework = memory()[0]
    image = np.load(Path(folder) / f"image{side}.npy", mmap_mode="r" if tile else None)
    before = memory()[0]
    stop_after(2, {"batches": 0, "tiles": None})
    with PeakSampler(10 * GIB) as sampler:
        try:
            predict_tiled(model, image, tile, batch_size=BATCH, progress=True) if tile else predict(model, image)
        except _Enough:
            pass
    return {
        "framework": framework,
        "growth": sampler.anon - before - side * side * 4,  # the float32 output: counted apart
        "pixels": BATCH * tile * tile if tile else side * side,
        "working": working_bytes_per_pixel(model, BACKEND_MEMORY[keras.backend.backend()].frees),
    }


def calibrate(models, folder):
    """Prints the figures behind `kfcn.inference.auto_tile`'s constants."""
    from kfcn.inference.auto_tile import PIPELINE_BYTES_PER_INPUT_CHANNEL, PIPELINE_BYTES_PER_OUTPUT_CHANNEL

    copies = PIPELINE_BYTES_PER_INPUT_CHANNEL + PIPELINE_BYTES_PER_OUTPUT_CHANNEL
    print(
        "model  framework  whole 512^2  1024^2   slope | tiled 2048^2: 4 x 256^2  4 x 512^2   slope  intercept |"
        " working+copies  slope/(w+c)\n"
        "        MiB        B/px (growth beyond the output, per pixel)            B/px      MB   |   B/px"
    )
    for name in models:
        for side in (512, 1024, 2048):
            if not (Path(folder) / f"image{side}.npy").exists():
                write_image(Path(folder) / f"image{side}.npy", side)
        cases = [(512, 0), (1024, 0), (2048, 256), (2048, 512)]
        results = [run_child(("calibrate", name, side, tile), folder, 0) for side, tile in cases]
        per_pixel = [r["growth"] / r["pixels"] for r in results]
        whole = (results[1]["growth"] - results[0]["growth"]) / (results[1]["pixels"] - results[0]["pixels"])
        tiled = (results[3]["growth"] - results[2]["growth"]) / (results[3]["pixels"] - results[2]["pixels"])
        intercept = results[2]["growth"] - tiled * results[2]["pixels"]
        working = results[0]["working"] + copies
        print(
            f"{name:5s} {results[0]['framework'] / 2**20:>8.0f}   {per_pixel[0]:>8.0f} {per_pixel[1]:>8.0f} "
            f"{whole:>7.0f} |              {per_pixel[2]:>8.0f} {per_pixel[3]:>10.0f} {tiled:>7.0f} "
            f"{intercept / 1e6:>9.0f}  | {working:>10.0f}    whole {whole / working:.2f}, tiled {tiled / working:.2f}",
            flush=True,
        )


def run_child(case, folder, batches):
    command = [sys.executable, __file__, "--child", *map(str, case), folder, str(batches)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = result.stdout.strip().splitlines()
    if not lines:
        raise SystemExit(f"case {case} failed:\n{result.stderr[-3000:]}")
    return json.loads(lines[-1])


def row(case, result):
    name, side, kind, budget_gib, rule = case
    cells = f"{name:5s} {side:>5d}^2 {kind:6s} {budget_gib:>3g} GiB  {rule:3s} "
    if "refused" in result:
        least = re.search(r"\((\d+\.\d+) GiB, `kfcn predict", result["refused"])
        return cells + f"refused: the smallest tile needs an estimated {least.group(1) if least else '?'} GiB"
    if "stopped" in result:
        cap = result["stopped"] / GIB
        return cells + f"{'':>10s} {'':>9s} > {cap:>5.2f} GiB (stopped) {'':>8s} NO"
    tile = "whole" if result["tile"] is None else str(result["tile"])
    estimate = "-" if result["estimate"] is None else f"{result['estimate'] / GIB:.2f}"
    anon, total = result["anon"] / GIB, result["total"] / GIB
    holds = "yes" if result["anon"] <= budget_gib * GIB else "NO"
    batches = f"{result['batches']}/{result['all_batches']}" if result["tile"] is not None else "1/1"
    return cells + (
        f"{tile:>10s} {estimate:>9s} {anon:>9.2f} {total:>9.2f} {holds:>5s} {anon / budget_gib:>6.0%} "
        f"{batches:>9s} {result['seconds']:>6.0f} s"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the small model on 2048^2 only: a smoke test")
    parser.add_argument("--compare-old", action="store_true", help="also measure the former estimate's tiles")
    parser.add_argument("--batches", type=int, default=2, help="tile batches measured per case (0: all)")
    parser.add_argument("--models", nargs="+", choices=list(MODELS), help="default: tiny and isbi (--calibrate: all)")
    parser.add_argument("--sides", nargs="+", type=int, default=[2048, 8192])
    parser.add_argument("--budgets", nargs="+", type=float, default=[1, 2, 4], help="GiB")
    parser.add_argument("--kinds", nargs="+", default=["memmap", "array"], choices=["memmap", "array"])
    parser.add_argument("--calibrate", action="store_true", help="print the figures behind the estimate's constants")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child and args.child[0] == "calibrate":
        name, side, tile, folder, _ = args.child[1:]
        print(json.dumps(calibration_child(name, int(side), int(tile), folder)))
        return
    if args.child:
        name, side, kind, budget, rule, folder, batches = args.child
        print(json.dumps(child(name, int(side), kind, float(budget), rule, folder, int(batches))))
        return
    if args.quick:
        args.models, args.sides, args.budgets = ["tiny"], [2048], [1, 2]
    args.models = args.models or (list(MODELS) if args.calibrate else list(MODELS)[:2])
    from importlib.metadata import version

    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    print(
        f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores; Keras {version('keras')}, backend {backend} "
        f"{version({'torch': 'torch', 'jax': 'jax'}.get(backend, 'tensorflow'))}; batch {BATCH}, default overlap, "
        f"blend none; tiled cases measured over {args.batches or 'all'} tile batches"
    )
    for name in args.models:
        print(f"  {name}: {MODELS[name]}")
    if args.calibrate:
        with tempfile.TemporaryDirectory() as folder:
            calibrate(args.models, folder)
        return
    print(
        "model  image  input  budget rule       tile  estimate   RssAnon  totalRSS holds   use   batches   time"
        "\n                                                    GiB       GiB       GiB"
    )
    rules = ["new", "old"] if args.compare_old else ["new"]
    with tempfile.TemporaryDirectory() as folder:
        for side in args.sides:
            write_image(Path(folder) / f"image{side}.npy", side)
        for name in args.models:
            for side in args.sides:
                for kind in args.kinds:
                    for budget in args.budgets:
                        for rule in rules:
                            case = (name, side, kind, budget, rule)
                            print(row(case, run_child(case, folder, args.batches)), flush=True)
    print(
        "RssAnon: the process's peak anonymous resident memory during the call (runtime, model, image array,\n"
        "output and tiles included), what the budget bounds; totalRSS adds file pages (shared libraries, the\n"
        "memory-mapped image). use = RssAnon / budget. new: kfcn's estimate (kfcn.inference.auto_tile); old: the\n"
        "former one (0.25 x summed layer outputs). No peer: MONAI (not installed) has no memory-budgeted tiling."
    )


if __name__ == "__main__":
    main()
