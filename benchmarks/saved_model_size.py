"""Size on disk and memory once loaded of the shipped ISBI U-Net as a SavedModel: kfcn's export beside Keras' own.

kfcn: `kfcn.export.saved_model` (TF Serving layout, serving signatures that check requests).
Peer: Keras' `model.export(path, format="tf_saved_model")` on the same model, which stores every
weight twice (keras-team/keras#23553). Each folder is loaded by `tf.saved_model.load` in a fresh
process, which then answers one 512x512 slice; its resident memory is read before the load and
after the answer (psutil), and the two answers are compared.

    KERAS_BACKEND=tensorflow python benchmarks/saved_model_size.py
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import kfcn  # noqa: E402
from kfcn.export import saved_model  # noqa: E402
from kfcn.saving import load_model  # noqa: E402

# Run in a child: the resident memory of a process that loads one SavedModel and answers one image.
CHILD = """
import json, os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np, psutil, tensorflow as tf
folder, signature, argument, image = sys.argv[1], sys.argv[2], sys.argv[3], np.load(sys.argv[4])
process = psutil.Process()
before = process.memory_info().rss
served = tf.saved_model.load(folder)
function = served.signatures[signature] if signature != "-" else served.serve
answer = function(**{argument: tf.constant(image)}) if signature != "-" else function(tf.constant(image))
answer = next(iter(answer.values())) if isinstance(answer, dict) else answer
np.save(sys.argv[5], np.asarray(answer))
print(json.dumps({"rss_added": process.memory_info().rss - before}))
"""


def folder_bytes(folder, pattern="*"):
    return sum(path.stat().st_size for path in Path(folder).rglob(pattern) if path.is_file())


def load_and_answer(folder, signature, argument, image_file, answer_file):
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(folder), signature, argument, str(image_file), str(answer_file)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])["rss_added"], np.load(answer_file)


def main():
    model = load_model(kfcn.samples.shipped_model_path())
    image = np.asarray(kfcn.data.read_image(kfcn.samples.isbi2012_dir() / "images" / "slice_20.png"), "float32")
    parameters = model.count_params()
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        np.save(scratch / "image.npy", image[None])
        ours = saved_model(model, scratch / "kfcn")
        model.export(str(scratch / "keras"), format="tf_saved_model", verbose=False)
        rows = {}
        for name, folder, signature, argument in (
            ("kfcn.export.saved_model", ours, "serving_default", "pixels_0_255"),
            ("keras model.export (peer)", scratch / "keras", "-", "-"),
        ):
            memory, answer = load_and_answer(folder, signature, argument, scratch / "image.npy", scratch / "a.npy")
            rows[name] = (folder_bytes(folder / "variables"), folder_bytes(folder), memory, answer)
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; keras {keras.__version__}, "
        f"tensorflow {tf.__version__}; the shipped ISBI U-Net, {parameters:,} parameters "
        f"({4 * parameters / 1e6:.1f} MB as float32); one 512x512 slice answered"
    )
    print(f"{'SavedModel':<28}{'variables MB':>14}{'folder MB':>11}{'bytes/param':>13}{'RSS added MB':>14}")
    for name, (variables, total, memory, _) in rows.items():
        sizes = f"{variables / 1e6:>14.1f}{total / 1e6:>11.1f}{variables / parameters:>13.2f}"
        print(f"{name:<28}{sizes}{memory / 1e6:>14.0f}")
    answers = [answer for *_, answer in rows.values()]
    print(f"max |difference| between the two answers: {float(np.max(np.abs(answers[0] - answers[1]))):.2e}")


if __name__ == "__main__":
    main()
