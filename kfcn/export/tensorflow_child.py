"""The child process of `kfcn.export.backend.run_in_tensorflow_child`: `python -m kfcn.export.tensorflow_child REQUEST`.

Runs under `KERAS_BACKEND=tensorflow`: loads the saved model named in the request (a JSON file),
calls `kfcn.export.<function>(model, **kwargs)` and prints `{"result": ...}` as its last line, or
`{"error": type, "message": ...}` and exits 1. A program of its own, so that the exporters, which
import `kfcn.export.backend`, are not imported back by it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(request_path):
    request = json.loads(Path(request_path).read_text())
    import kfcn.export
    from kfcn.saving import load_model

    try:
        model = load_model(request["model"])
        result = getattr(kfcn.export, request["function"])(model, **request["kwargs"])
    except Exception as error:  # handed to the parent, which raises it again
        print(json.dumps({"error": type(error).__name__, "message": str(error)}))
        sys.exit(1)
    print(json.dumps({"result": result}, default=str))


if __name__ == "__main__":
    main(sys.argv[1])
