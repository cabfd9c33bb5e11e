"""Input checks shared by kfcn layers: clear errors instead of backend tracebacks."""

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


def normalize_pair(value, name: str) -> tuple[int, int]:
    """Turns an int or a pair of ints into a pair of positive ints."""
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and v >= 1 for v in pair):
        raise ValueError(f"`{name}` must be a positive int or a pair of them, got {value!r}.")
    return pair
