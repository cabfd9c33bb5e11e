"""The README's quick start, reduced to seconds, run against an installed kfcn wheel (`make test-wheel`).

Run from a directory outside the repository, in a fresh virtual environment holding only the
wheel and its declared dependencies: it fails if the wheel misses a module, the sample data,
the shipped model, or a dependency it needs.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402

import kfcn  # noqa: E402

installed = Path(kfcn.__file__).resolve()
assert Path(sys.prefix).resolve() in installed.parents, f"kfcn comes from {installed}, not from the wheel's venv"

# A U-Net for binary masks; predict an image of a size it was not built for.
model = kfcn.models.unet((None, None, 1), num_classes=1, filters=4, depth=2, batch_norm=True)
model.compile("adam", keras.losses.BinaryCrossentropy())
image = np.random.default_rng(0).integers(0, 256, (150, 130)).astype("uint8")
assert kfcn.inference.predict(model, image).shape == (150, 130, 1)
assert kfcn.inference.predict_tiled(model, image, tile_size=64, progress=False).shape == (150, 130, 1)
assert kfcn.analysis.receptive_field(model).required_multiple == 4

# The shipped sample data, through kfcn.data, into a short fit.
root = kfcn.data.isbi2012_dir()
pairs = kfcn.data.folder_dataset(root / "images", root / "labels", label_mode="binary", verbose=False)
# (No weight_map="unet" here: it costs minutes on the 25 full slices.)
batches = kfcn.data.random_crop_pipeline(pairs, 64, batch_size=2, augment="elastic", seed=0)
history = model.fit(batches, epochs=1, steps_per_epoch=2, verbose=0)
assert np.isfinite(history.history["loss"][-1])

# The shipped model is inside the package and loads.
shipped = keras.saving.load_model(kfcn.samples.shipped_model_path())
assert shipped.count_params() > 0
print(f"wheel quick start: ok ({installed.parent})")
