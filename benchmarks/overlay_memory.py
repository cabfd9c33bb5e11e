"""Peak memory and time of drawing a segmentation overlay on a large image: kfcn vs scikit-image.

kfcn.rendering.overlay (what `kfcn predict` writes as STEM_overlay.png) against
skimage.color.label2rgb(kind="overlay") followed by skimage.segmentation.mark_boundaries,
the usual way to draw the same picture. Each case runs in a fresh process; "peak" is
the process's peak resident memory (ru_maxrss) minus what it held with the inputs loaded.

    python benchmarks/overlay_memory.py             # 4096^2 and 8192^2
    python benchmarks/overlay_memory.py --sizes 2048
"""

from __future__ import annotations

import argparse
import subprocess
import sys

CASE = r"""
import resource, sys, time
import numpy as np
side, who = int(sys.argv[1]), sys.argv[2]
rng = np.random.default_rng(0)
image = rng.integers(0, 256, (side, side), dtype=np.uint8)
classes = np.zeros((side, side), np.int64)
classes[side // 4 : 3 * side // 4, side // 4 : 3 * side // 4] = 1  # one square object, outlined
classes[: side // 8] = 2
if who == "kfcn":
    from kfcn.rendering import overlay
    draw = lambda: overlay(image, classes)
else:
    from skimage.color import label2rgb
    from skimage.segmentation import mark_boundaries
    def draw():
        tinted = label2rgb(classes, image, alpha=0.35, bg_label=0, kind="overlay")
        return (mark_boundaries(tinted, classes) * 255).astype(np.uint8)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
picture = draw()
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(f"{(peak - before) / 2**20:.2f} {seconds:.2f} {picture.shape} {picture.dtype}")
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[4096, 8192])
    args = parser.parse_args()
    print(f"{'image':>7} {'who':>13} {'peak above inputs GiB':>22} {'seconds':>8}  output")
    for side in args.sizes:
        for who in ("kfcn", "scikit-image"):
            done = subprocess.run([sys.executable, "-c", CASE, str(side), who], capture_output=True, text=True)
            if done.returncode:
                print(f"{side:>6}² {who:>13} failed: {done.stderr.strip().splitlines()[-1]}")
                continue
            peak, seconds, *output = done.stdout.split()
            print(f"{side:>6}² {who:>13} {float(peak):>22.2f} {float(seconds):>8.2f}  {' '.join(output)}")


if __name__ == "__main__":
    main()
