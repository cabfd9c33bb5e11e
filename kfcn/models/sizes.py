"""Size arithmetic: which input sizes a model takes, and what size comes out."""

from __future__ import annotations


def unet_valid_output_size(input_size, depth=4, convs_per_level=2, kernel_size=3):
    """Output size of a valid-padding U-Net for a given input size (572 -> 388 at depth 4).

    Every level loses `convs_per_level * (kernel_size - 1)` pixels to its
    convolutions, and every pooling needs an even size.

    Raises:
        ValueError: if the size does not fit, naming the nearest sizes that do.

    Example:
    >>> unet_valid_output_size(572)
    388
    """
    shrink = convs_per_level * (kernel_size - 1)
    size = input_size
    for _ in range(depth):
        size -= shrink
        if size <= 0 or size % 2:
            smaller, larger = _neighbouring_valid_sizes(input_size, depth, shrink)
            raise ValueError(
                f"A valid-padding U-Net of depth {depth} cannot take input size {input_size}: a "
                f"pooling would see an odd or empty map. The nearest valid input sizes are "
                f"{smaller} and {larger} (or use kfcn.inference.predict, which pads and tiles)."
            )
        size //= 2
    size -= shrink
    if size <= 0:
        raise ValueError(
            f"Input size {input_size} is too small for a valid-padding U-Net of depth {depth}; "
            f"the smallest is {unet_valid_input_size(1, depth, convs_per_level, kernel_size)[0]}."
        )
    for _ in range(depth):
        size = 2 * size - shrink
    return size


def unet_valid_input_size(min_output_size, depth=4, convs_per_level=2, kernel_size=3):
    """The smallest valid-padding U-Net input whose output is at least `min_output_size`.

    Returns:
        `(input_size, output_size)`.

    Example:
    >>> unet_valid_input_size(388)
    (572, 388)
    """
    shrink = convs_per_level * (kernel_size - 1)
    bottom = 1
    while True:
        output = bottom
        for _ in range(depth):
            output = 2 * output - shrink
        if output >= min_output_size:
            return _input_for_bottom(bottom, depth, shrink), output
        bottom += 1


def _input_for_bottom(bottom, depth, shrink):
    size = bottom + shrink
    for _ in range(depth):
        size = 2 * size + shrink
    return size


def _neighbouring_valid_sizes(size, depth, shrink):
    sizes = [_input_for_bottom(b, depth, shrink) for b in range(1, size + 2)]
    smaller = max([s for s in sizes if s < size], default=None)
    larger = min(s for s in sizes if s > size)
    return smaller, larger
