"""Analysis of any FCN: receptive field (theoretical and effective), translation equivariance, the size facts
tiling and export rely on (`model_geometry`); checks that a model is one (`check_fully_convolutional`)."""

from kfcn.analysis.effective_receptive_field import EffectiveReceptiveField, effective_receptive_field
from kfcn.analysis.fully_convolutional import check_fully_convolutional, check_model_input
from kfcn.analysis.geometry import ModelGeometry, input_range, model_geometry
from kfcn.analysis.receptive_field import ReceptiveField, receptive_field
from kfcn.analysis.translation_equivariance import EquivarianceReport, translation_equivariance

__all__ = [
    "EffectiveReceptiveField",
    "EquivarianceReport",
    "ModelGeometry",
    "ReceptiveField",
    "check_fully_convolutional",
    "check_model_input",
    "effective_receptive_field",
    "input_range",
    "model_geometry",
    "receptive_field",
    "translation_equivariance",
]
