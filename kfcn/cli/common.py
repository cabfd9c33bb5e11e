"""Pieces the `kfcn` verbs share: loading the model, quiet imports, tables, JSON."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

SHIPPED = "the shipped ISBI 2012 membrane U-Net"


def add_model_option(parser, default_shipped=True):
    """`--model PATH` (default: the shipped ISBI U-Net) and `--unsafe`."""
    parser.add_argument(
        "--model",
        default=None,
        help="a .keras file" + (f" (default: {SHIPPED})" if default_shipped else ""),
    )
    add_unsafe_option(parser)


def add_unsafe_option(parser):
    parser.add_argument("--unsafe", action="store_true", help="load a trusted .keras file that holds code (Lambda)")


def model_path(args):
    """The `.keras` file the command uses: `args.model`, or the shipped U-Net when none is given."""
    if args.model is None:
        from kfcn.samples import shipped_model_path

        return shipped_model_path()
    return Path(args.model)


def load(args):
    """The model of `args.model` (or the shipped one), loaded in safe mode unless `--unsafe`."""
    from kfcn.saving import load_model

    return load_model(model_path(args), safe_mode=not args.unsafe)


def quiet_backend_import(verbose, tensorflow=False):
    """Imports Keras (and with it the backend: TensorFlow, JAX or PyTorch) without its start-up log.

    `verbose`: show it (sets `KFCN_STARTUP_LOG=1`, see `kfcn.startup`). `tensorflow`: also import
    TensorFlow now (for tf.data or export) when another backend runs Keras.
    """
    from kfcn.startup import STARTUP_LOG_VARIABLE, quiet_startup

    if verbose:
        os.environ[STARTUP_LOG_VARIABLE] = "1"
    with quiet_startup():
        import keras  # noqa: F401

        if tensorflow or keras.backend.backend() == "tensorflow":
            try:
                import tensorflow as tf
            except ImportError:
                raise ImportError(
                    "this verb reads data with tf.data (or exports with TensorFlow) and needs TensorFlow: "
                    "pip install tensorflow"
                ) from None

            tf.get_logger().setLevel("ERROR")
            if keras.backend.backend() != "tensorflow":
                tf.config.set_visible_devices([], "GPU")  # tf.data only: leave the GPUs to JAX or PyTorch
            tf.config.list_logical_devices()  # the device set-up logs now, while stderr is silenced


def shown_path(value):
    """A path as a card or a committed report shows it: relative to the working folder (or to the folder
    above it: data beside the project, `../shared/...`), or inside the kfcn package; else its name alone
    (no absolute path of the machine that wrote it); other values as they are.

    Example:
    >>> shown_path(str(Path.cwd() / "runs" / "a")), shown_path(str(Path.cwd().parent / "data")), shown_path(3)
    ('runs/a', '../data', 3)
    """
    if not isinstance(value, str) or not Path(value).is_absolute():
        return value
    path = Path(value).resolve()
    package = Path(__file__).resolve().parents[1]  # kfcn/
    bases = [(Path.cwd(), ""), (package.parent, "")]
    if len(Path.cwd().parts) > 2:  # the folder above the working one, unless that is the root
        bases.append((Path.cwd().parent, "../"))
    for base, above in bases:
        try:
            return above + str(path.relative_to(base))
        except ValueError:
            continue
    return path.name


def file_sha256(path):
    """The SHA-256 of a file's bytes, in hex: which model file a report was made from.

    Example:
    >>> import tempfile
    >>> with tempfile.NamedTemporaryFile() as file:
    ...     _ = file.write(b"abc"); file.flush()
    ...     file_sha256(file.name)[:16]
    'ba7816bf8f01cfea'
    """
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def table(names, rows, columns, first="image", footer=None):
    """Aligned columns, one row per name, then an optional footer row (NaN prints "-").

    Example:
    >>> print(table(["a.png"], [{"x": 0.5}], [("score", "x", ".2f")]))
    image      score
    ----------------
    a.png       0.50
    """

    def cell(value, spec):
        return "-" if isinstance(value, float) and np.isnan(value) else format(value, spec)

    footer_names = [footer[0]] if footer else []
    width = max(len(first), *(len(name) for name in [*names, *footer_names]))
    widths = [max(len(header), 9) for header, _, _ in columns]
    lines = [first.ljust(width) + "".join(f"  {h:>{w}}" for (h, _, _), w in zip(columns, widths))]
    rule = "-" * len(lines[0])
    lines.append(rule)
    body = list(zip(names, rows))
    if footer:
        body.append(footer)
    for index, (name, row) in enumerate(body):
        if footer and index == len(body) - 1:
            lines.append(rule)
        cells = [cell(row[key], spec) for _, key, spec in columns]
        lines.append(name.ljust(width) + "".join(f"  {c:>{w}}" for c, w in zip(cells, widths)))
    return "\n".join(lines)


def json_ready(value):
    """NaN and infinity become null, NumPy scalars Python numbers: the file stays strict JSON.

    Example:
    >>> json_ready({"a": [float("nan"), np.float32(2.0)]})
    {'a': [None, 2.0]}
    """
    if isinstance(value, dict):
        return {key: json_ready(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def write_json(path, report):
    """Writes `report` as indented strict JSON, atomically."""
    import json

    from kfcn.atomic import atomic_path

    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(json_ready(report), indent=2, allow_nan=False) + "\n")


def check_json_path(path, option="--json"):
    """A JSON output path that can be written, checked before minutes of work."""
    from kfcn.atomic import check_writable

    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{option} {path} is a folder; give a .json file name.")
    check_writable(path.parent, f"{option} folder")
    return path
