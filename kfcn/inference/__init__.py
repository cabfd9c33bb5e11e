"""Using FCNs: whole-image, resized and tiled (overlap-tile, blended) prediction of any image size."""

from kfcn.analysis.geometry import ModelGeometry, input_range, model_geometry
from kfcn.inference.erf_overlap import erf_overlap
from kfcn.inference.tiling import predict_tiled
from kfcn.inference.whole import predict, predict_resized

__all__ = [
    "ModelGeometry",
    "erf_overlap",
    "input_range",
    "model_geometry",
    "predict",
    "predict_resized",
    "predict_tiled",
]
