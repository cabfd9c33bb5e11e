"""The sample data and the trained model that ship inside the kfcn package (no TensorFlow needed).

Both live under `kfcn/assets/`, so they are found the same way from a source checkout, an
editable install and an installed wheel.
"""

from __future__ import annotations

from pathlib import Path

ASSETS = Path(__file__).resolve().parent / "assets"


def _shipped(path, what):
    if not path.exists():
        raise FileNotFoundError(
            f"{what} is missing from the installed kfcn package (expected at {path}). Reinstall kfcn "
            "from its wheel or a full source checkout (`pip install --force-reinstall <wheel or directory>`)."
        )
    return path


def isbi2012_dir() -> Path:
    """The shipped 25-slice copy of the ISBI 2012 membrane data: `images/`, `labels/` and a README.

    Images are 512×512 8-bit grayscale PNGs, labels 8-bit PNGs (255 = cell interior,
    0 = membrane; read them with `label_mode="binary"`).

    Example:
    >>> sorted(p.name for p in isbi2012_dir().iterdir())
    ['README.md', 'images', 'labels']
    """
    return _shipped(ASSETS / "isbi2012", "The ISBI 2012 sample data")


def shipped_model_path(name: str = "unet_isbi") -> Path:
    """Path of a trained model shipped with kfcn, a `.keras` file for `keras.saving.load_model`.

    `"unet_isbi"`: a U-Net trained on the ISBI 2012 slices (its model card is
    `saved_models/README.md` in the source repository).

    Example:
    >>> shipped_model_path().name
    'unet_isbi.keras'
    """
    models = ASSETS / "models"
    path = models / f"{name}.keras"
    if not path.exists() and models.is_dir():
        available = sorted(p.stem for p in models.glob("*.keras"))
        raise ValueError(f"kfcn ships no model named {name!r}; the shipped models are {available}.")
    return _shipped(path, f"The shipped model {name!r}")
