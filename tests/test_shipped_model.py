"""The shipped ISBI U-Net reproduces the validation figures its model card states."""

import json
import sys
from pathlib import Path

import keras
import pytest

from kfcn.inference import input_range
from kfcn.samples import shipped_model_path
from kfcn.saving import load_model

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="one backend is enough")


def test_held_out_scores_match_the_model_card():
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        from validate_isbi import HELD_OUT, validation_table
    finally:
        sys.path.pop(0)
    stated = json.loads((ROOT / "saved_models" / "unet_isbi_validation.json").read_text())
    assert stated["held_out"] == HELD_OUT == [f"slice_{index}" for index in range(20, 25)]
    model = load_model(shipped_model_path())
    assert input_range(model) == (0, 255)
    measured = validation_table(model)
    for name, row in measured["per_slice"].items():
        for key, value in row.items():
            assert value == pytest.approx(stated["plain"]["per_slice"][name][key], abs=2e-4), (name, key)
