"""Input checks shared by kfcn layers: clear errors instead of backend tracebacks.

Checks of constructor arguments (`pool_size`, ...) are in `kfcn.arguments`.
"""

from __future__ import annotations


def require_rank4(shape, layer_name: str, what: str = "input") -> None:
    """Raises a ValueError unless `shape` is (batch, height, width, channels)."""
    if len(shape) != 4:
        raise ValueError(
            f"{layer_name} expects its {what} as a 4-D tensor (batch, height, width, "
            f"channels) in channels-last layout, but got shape {tuple(shape)} "
            f"(rank {len(shape)}). Add a batch axis with x[None] or an explicit "
            "channel axis with x[..., None]."
        )
