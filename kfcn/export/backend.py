"""Exports need TensorFlow's graph: models of the JAX and PyTorch backends are re-exported in a child.

Under the TensorFlow backend the model is traced directly. Under JAX or PyTorch the
model's variables cannot enter a TensorFlow graph, so it is saved to a temporary
`.keras` file (architecture and weights, no optimizer) and a child Python process
with `KERAS_BACKEND=tensorflow` loads it and runs the same export. The exported
artefact is identical in layout and numerically equal to float tolerance.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import keras


def on_tensorflow():
    return keras.backend.backend() == "tensorflow"


def run_in_tensorflow_child(model, function, kwargs):
    """Saves `model`, then calls `kfcn.export.<function>(loaded, **kwargs)` in a TensorFlow child process
    (`kfcn.export.tensorflow_child`).

    Returns what the child's function returned (JSON-serialisable).
    """
    from kfcn.saving import save_model

    with tempfile.TemporaryDirectory(prefix="kfcn-export-") as folder:
        model_path = Path(folder) / "model.keras"
        save_model(model, model_path)
        request = Path(folder) / "request.json"
        request.write_text(json.dumps({"model": str(model_path), "function": function, "kwargs": kwargs}))
        environment = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"}
        result = subprocess.run(
            [sys.executable, "-m", "kfcn.export.tensorflow_child", str(request)],
            env=environment,
            capture_output=True,
            text=True,
        )
        lines = result.stdout.strip().splitlines()
        answer = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else None
        if result.returncode != 0 or answer is None:
            if answer and "error" in answer:
                error_type = {"ValueError": ValueError, "FileExistsError": FileExistsError}.get(answer["error"])
                raise (error_type or RuntimeError)(answer["message"])
            tail = result.stderr.strip().splitlines()
            raise RuntimeError(
                f"Export under the TensorFlow backend (child process for a {keras.backend.backend()} model) failed: "
                + (tail[-1] if tail else "no message")
            )
        return answer["result"]
