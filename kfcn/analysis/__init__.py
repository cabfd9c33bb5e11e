"""Analysis of any FCN: receptive field (theoretical and effective), translation equivariance."""

from kfcn.analysis.receptive_field import ReceptiveField, receptive_field

__all__ = ["ReceptiveField", "receptive_field"]
