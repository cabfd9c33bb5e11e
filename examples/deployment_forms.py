"""A shipped model's deployment forms (SavedModel, TFLite float32 / float16 / int8) and their held-out table.

`export_and_score` is what `examples/export_isbi.py`, `examples/export_counter.py` and
`examples/export_camvid.py` run: `export_forms` writes the files and returns, for each form, a
function image -> output map that runs the written file (not the Keras model), so the table
measures what a deployment serves; `held_out_table` scores every form with the task's own score
and states the drift from Keras; the report holds that table with the files and the contract.
The files are staged (`replaced_together`) and the report is written beside its final place, so
that the old forms and the old report stay until all the new ones are written and measured.

Example (a tiny model; the files go into a temporary folder):
>>> import tempfile, kfcn
>>> model = kfcn.models.unet((None, None, 1), filters=2, depth=1, input_range=(0, 255))
>>> images = [np.random.default_rng(0).uniform(0, 255, (16, 16, 1)).astype("float32")]
>>> forms, files, card = export_forms(model, tempfile.mkdtemp(), "tiny", images, (16, 16), {})
>>> sorted(forms), card["output"]["name"]
(['keras', 'saved_model', 'tflite_float16', 'tflite_float32', 'tflite_int8'], 'probabilities')
>>> table = held_out_table(forms, images, lambda outputs: {"mean": float(np.mean(outputs))})  # doctest: +ELLIPSIS
keras           mean ...  max_abs_drift_vs_keras 0  mean_abs_drift_vs_keras 0
...
>>> table["tflite_float32"]["max_abs_drift_vs_keras"] < 1e-4
True
"""

from __future__ import annotations

import kfcn  # noqa: F401  (first: Keras and TensorFlow then start without their C++ log)

# isort: split
import contextlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

from kfcn.atomic import PARTIAL_MARK, atomic_path, check_writable, clean_partials
from kfcn.inference import predict


def tflite_predictor(path, input_name, output_name):
    """image (H, W, C) raw pixels -> the output map of the `.tflite` file at `path` (its signature runner)."""
    runner = Interpreter(model_path=str(path), num_threads=2).get_signature_runner("serving_default")
    return lambda image: runner(**{input_name: image[None].astype("float32")})[output_name][0]


@contextlib.contextmanager
def replaced_together(output):
    """Yields a staging folder inside `output` to export into; once the block ends without an exception,
    each staged file, and each version folder of a staged SavedModel (other versions stay), replaces its
    namesake in `output` in one quick pass. A stop before then leaves `output` as it was: no mix of old
    and new forms under one report. A killed export's staging folder, marked as a kfcn temporary, is
    removed by the next one."""
    output = check_writable(Path(output), "export folder")
    clean_partials(output)
    staging = output / f"forms{PARTIAL_MARK}{os.getpid()}"
    staging.mkdir()
    try:
        yield staging
        for entry in sorted(staging.iterdir()):
            if entry.is_dir():  # a SavedModel base folder (STEM_serving/VERSION)
                (output / entry.name).mkdir(exist_ok=True)
                for version in sorted(entry.iterdir()):
                    _replace_folder(version, output / entry.name / version.name)
            else:
                os.replace(entry, output / entry.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _replace_folder(new, old):
    aside = old.with_name(f"{old.name}{PARTIAL_MARK}{os.getpid()}-old")
    if old.exists():
        os.replace(old, aside)
    os.replace(new, old)
    shutil.rmtree(aside, ignore_errors=True)


def export_forms(model, output, stem, calibration, input_shape, metadata, staging=None):
    """Writes OUTPUT/STEM_serving/1 (SavedModel) and OUTPUT/STEM_{float32,float16,int8}.tflite (fixed
    `input_shape`; int8 calibrated on the raw `calibration` images), into `staging` (from
    `replaced_together(OUTPUT)`) when given; returns (forms: name -> predictor, files: name -> {path, bytes,
    signatures} for the SavedModel and {path, bytes, ops} for a TFLite file, as they will lie in OUTPUT, the
    SavedModel's model card)."""
    output = Path(output)
    written = Path(staging) if staging is not None else output
    folder = kfcn.export.saved_model(model, written / f"{stem}_serving", version=1, overwrite=True, metadata=metadata)
    options = {"input_shape": input_shape, "metadata": metadata}  # each TFLite card names its training too
    reports = {
        "float32": kfcn.export.tflite(model, written / f"{stem}_float32.tflite", **options),
        "float16": kfcn.export.tflite(model, written / f"{stem}_float16.tflite", "float16", **options),
        "int8": kfcn.export.tflite(model, written / f"{stem}_int8.tflite", "int8", calibration, **options),
    }
    card = json.loads((folder / kfcn.export.MODEL_CARD_NAME).read_text())
    input_name, output_name = card["input"]["name"], card["output"]["name"]
    serve = tf.saved_model.load(str(folder)).signatures["serving_default"]
    forms = {
        "keras": lambda image: predict(model, image),
        "saved_model": lambda image: serve(**{input_name: tf.constant(image[None])})[output_name].numpy()[0],
        **{
            f"tflite_{name}": tflite_predictor(report["path"], input_name, output_name)
            for name, report in reports.items()
        },
    }
    final = {"saved_model": output / folder.relative_to(written)} | {
        f"tflite_{name}": output / Path(report["path"]).relative_to(written) for name, report in reports.items()
    }
    saved_model_bytes = sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())
    files = {
        # what the tables need, so that they come from the report alone (the SavedModel is not committed)
        "saved_model": {
            "path": str(final["saved_model"]),
            "bytes": saved_model_bytes,
            "signatures": card["serving"]["signatures"],
        },
        **{
            f"tflite_{name}": {"path": str(final[f"tflite_{name}"]), "bytes": r["bytes"], "ops": r["ops"]}
            for name, r in reports.items()
        },
    }
    return forms, files, card


def held_out_table(forms, images, score):
    """form -> `score(outputs)` (a dict of the task's figures over the images' output maps) plus the largest
    and the mean |output - Keras output| over the images; prints one line a form as it goes."""
    reference = [forms["keras"](image) for image in images]
    table = {}
    for form, run in forms.items():
        outputs = [run(image) for image in images]
        drifts = [np.abs(output - keras_output) for output, keras_output in zip(outputs, reference)]
        table[form] = score(outputs) | {
            "max_abs_drift_vs_keras": float(f"{max(float(drift.max()) for drift in drifts):.3g}"),
            "mean_abs_drift_vs_keras": float(f"{np.mean([drift.mean() for drift in drifts]):.3g}"),
        }
        print(form.ljust(16) + "  ".join(f"{key} {value:.4g}" for key, value in table[form].items()), flush=True)
    return table


def export_and_score(
    model,
    model_path,
    output,
    stem,
    *,
    calibration,
    input_shape,
    metadata,
    images,
    score,
    report,
    command,
    table_key,
    **entries,
):
    """Exports `model` (read from `model_path`) into `output` as `export_forms` does, scores every form on the
    held-out `images` with `score` (`held_out_table`) and writes the deployment report at `report`: the command,
    the model file, the serving contract's input and output, `entries` (the held-out set), the table under
    `table_key`, the files. Until every form is written and measured, the old forms and the old report stay as
    they were; then the forms replace theirs, and the report its own, in one quick pass. Returns the table."""
    with atomic_path(report) as staged_report, replaced_together(output) as staging:
        forms, files, contract = export_forms(model, output, stem, calibration, input_shape, metadata, staging)
        table = held_out_table(forms, images, score)
        written = {
            "command": command,
            "model": str(model_path),
            "input_contract": contract["input"],
            "output": contract["output"],
            **entries,
            table_key: table,
            "files": files,
        }
        staged_report.write_text(json.dumps(written, indent=2) + "\n")
    print(f"wrote {report}; the exported files are in {output}")
    return table
