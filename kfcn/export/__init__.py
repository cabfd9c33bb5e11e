"""Deployment: SavedModel for TF Serving, TFLite with builtin ops only, ONNX.

Every export carries kfcn's input contract: the client sends raw pixel values of
any size; the exported graph scales, pads to the network's stride and crops back.
"""

from kfcn.export.contract import MODEL_CARD_NAME, ServingContract, serving_contract
from kfcn.export.onnx import onnx
from kfcn.export.saved_model import next_version, saved_model
from kfcn.export.tflite import QUANTIZATIONS, tflite, tflite_report

__all__ = [
    "MODEL_CARD_NAME",
    "QUANTIZATIONS",
    "ServingContract",
    "next_version",
    "onnx",
    "saved_model",
    "serving_contract",
    "tflite",
    "tflite_report",
]
