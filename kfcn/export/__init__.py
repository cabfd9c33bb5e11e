"""Deployment: SavedModel for TF Serving, TFLite with builtin ops only, ONNX, a web page (TFLite in the browser).

Every export carries kfcn's input contract: the client sends raw pixel values of
any size (as float32, or as stored: uint8, uint16); the exported graph scales, pads
to the network's stride and crops back. A JSON model card goes with every file.
"""

from kfcn.export.contract import INPUT_DTYPES, MODEL_CARD_NAME, ServingContract, model_card_path, serving_contract
from kfcn.export.onnx import onnx
from kfcn.export.saved_model import next_version, saved_model
from kfcn.export.tflite import QUANTIZATIONS, tflite, tflite_report
from kfcn.export.web import web

__all__ = [
    "INPUT_DTYPES",
    "MODEL_CARD_NAME",
    "QUANTIZATIONS",
    "ServingContract",
    "model_card_path",
    "next_version",
    "onnx",
    "saved_model",
    "serving_contract",
    "tflite",
    "tflite_report",
    "web",
]
