"""Analysis of any FCN: receptive field (theoretical and effective), translation equivariance."""

from kfcn.analysis.effective_receptive_field import EffectiveReceptiveField, effective_receptive_field
from kfcn.analysis.receptive_field import ReceptiveField, receptive_field
from kfcn.analysis.translation_equivariance import EquivarianceReport, translation_equivariance

__all__ = [
    "EffectiveReceptiveField",
    "EquivarianceReport",
    "ReceptiveField",
    "effective_receptive_field",
    "receptive_field",
    "translation_equivariance",
]
