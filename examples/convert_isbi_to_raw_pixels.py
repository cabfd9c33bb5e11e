"""One-off migration (2026-11-26): the shipped U-Net was trained on images scaled to [0, 1];
kfcn's input contract is now raw pixel values with the scaling inside the graph. This
rebuilds the same architecture with `input_range=(0, 255)`, copies the weights, checks
that `model(raw)` equals `old_model(raw / 255)`, and saves it in place.

    KERAS_BACKEND=tensorflow python examples/convert_isbi_to_raw_pixels.py
"""

import kfcn  # noqa: F401  (first: Keras and TensorFlow then start without their C++ log)

# isort: split
import keras
import numpy as np

from kfcn.saving import load_model, save_model

path = kfcn.samples.shipped_model_path()
old = load_model(path)
if kfcn.inference.input_range(old) is not None:
    raise SystemExit(f"{path} already takes raw pixels {kfcn.inference.input_range(old)}.")
new = kfcn.models.unet(
    (None, None, 1), num_classes=1, filters=16, depth=4, batch_norm=True, input_range=(0, 255), name="unet_isbi"
)
new.set_weights(old.get_weights())
raw = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 1)).astype("float32")
difference = np.abs(keras.ops.convert_to_numpy(new(raw)) - keras.ops.convert_to_numpy(old(raw / 255))).max()
print(f"max |new(raw) - old(raw / 255)| = {difference:.2e}")
assert difference < 1e-5
save_model(new, path)
print(f"saved {path}")
