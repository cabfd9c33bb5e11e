"""Analysis of any FCN: receptive field (theoretical and effective), translation equivariance; checks that a
model is one (`check_fully_convolutional`)."""

from kfcn.analysis.effective_receptive_field import EffectiveReceptiveField, effective_receptive_field
from kfcn.analysis.fully_convolutional import check_fully_convolutional, check_model_input
from kfcn.analysis.receptive_field import ReceptiveField, receptive_field
from kfcn.analysis.translation_equivariance import EquivarianceReport, translation_equivariance

__all__ = [
    "EffectiveReceptiveField",
    "EquivarianceReport",
    "ReceptiveField",
    "check_fully_convolutional",
    "check_model_input",
    "effective_receptive_field",
    "receptive_field",
    "translation_equivariance",
]
