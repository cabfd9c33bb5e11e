"""Data: folders, crop pipelines, augmentation, weight and density maps, synthetic images, label noise.

Each name loads its own module on first use (PEP 562), so the NumPy/SciPy helpers
(`unet_weight_map`, `density_map`, `degrade`, `perturb_contours`, `touching_ellipses`,
`bulge_disk_galaxy`, ...) work on JAX and PyTorch without TensorFlow, which only the
tf.data pipelines (`folder_dataset`, `random_crop_pipeline`, `PairedAugmenter`,
`tfds_datasets`) import.

Example:
>>> import numpy as np
>>> from kfcn.data import unet_weight_map
>>> unet_weight_map(np.eye(8, dtype="uint8")).shape
(8, 8)
"""

import importlib

# name -> the module that defines it. TensorFlow's: augment, crops, folder, tfds_datasets.
_HOMES = {
    "PairedAugmenter": "kfcn.data.augment",
    "elastic_deformation": "kfcn.data.augment",
    "ResumeCropStream": "kfcn.data.crops",
    "random_crop_pipeline": "kfcn.data.crops",
    "folder_dataset": "kfcn.data.folder",
    "load_pair": "kfcn.data.folder",
    "pair_files": "kfcn.data.folder",
    "degrade": "kfcn.data.degradation",
    "density_map": "kfcn.data.density",
    "dots_from_image": "kfcn.data.density",
    "three_class_labels": "kfcn.data.ellipses",
    "touching_ellipses": "kfcn.data.ellipses",
    "perturb_contours": "kfcn.data.label_noise",
    "bulge_disk_galaxy": "kfcn.data.sersic",
    "sersic_b": "kfcn.data.sersic",
    "sersic_image": "kfcn.data.sersic",
    "unet_weight_map": "kfcn.data.weight_map",
    "read_image": "kfcn.image_io",
    "isbi2012_dir": "kfcn.samples",
    "shipped_model_path": "kfcn.samples",
}
_SUBMODULES = (
    "augment",
    "crops",
    "degradation",
    "density",
    "ellipses",
    "folder",
    "label_noise",
    "sersic",
    "tfds_datasets",
    "weight_map",
)

# A module never shares a name with a function: importing `kfcn.data.<module>` sets that attribute
# on this package, and would hide the function of the same name.
__all__ = sorted(_HOMES)


def __getattr__(name):
    if name not in _HOMES and name not in _SUBMODULES:
        raise AttributeError(f"module 'kfcn.data' has no attribute {name!r}")
    home = _HOMES.get(name, f"kfcn.data.{name}")
    try:
        module = importlib.import_module(home)
    except ModuleNotFoundError as error:
        if error.name is None or error.name.split(".")[0] not in ("tensorflow", "tensorflow_datasets"):
            raise
        raise ModuleNotFoundError(
            f"kfcn.data.{name} is built on tf.data and needs {error.name.split('.')[0]}, which is not "
            f"installed: pip install tensorflow (the NumPy helpers, such as kfcn.data.unet_weight_map, "
            f"work without it).",
            name=error.name,
        ) from error
    value = module if name in _SUBMODULES else getattr(module, name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__():
    return sorted(set(globals()) | set(_HOMES) | set(_SUBMODULES))
