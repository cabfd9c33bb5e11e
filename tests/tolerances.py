"""Tolerances for one result computed two ways, each derived from what differs between the two.

Where the two ways are the same sequence of operations on the same values (a resumed run
against an uninterrupted one on one machine, a model against its reloaded copy), tests
assert bit-identical results and need nothing from here. Where they differ, the
difference has a source with a size:

- **Reordered sums.** A float32 sum of n terms in another order (another kernel, another
  split between devices) changes by at most (n - 1)·ε·Σ|terms| (Higham, *Accuracy and
  Stability of Numerical Algorithms*, 2nd ed., §4.2); for terms of one sign, n·ε relative.
- **Reordered networks.** Tiled against whole-image prediction, exported against Keras,
  LiteRT (XNNPACK) against TensorFlow (oneDNN): every output pixel sees the same inputs
  and weights, but each layer's dot products of K = kh·kw·c_in terms may be summed in
  another order, a relative change of at most K·ε of that layer's Σ|w·x|. To first order
  and with variance-preserving (He-initialised or trained) layers, whose activations
  stay of the order of the output, the changes add up: ε·ΣK times the output's scale.
- **float16 weights.** A weight rounded to float16 moves by at most 2^-11 relative; a
  layer's pre-activations by at most 2^-11 of their Σ|w·x|; over L weighted layers, to
  first order, L·2^-11 times the output's scale.

Example:
>>> from kfcn.models import plain_cnn
>>> model = plain_cnn((None, None, 1), num_layers=2, filters=4, kernel_size=3)
>>> fan_in(model)  # 3·3·1 (1 -> 4 channels) + 3·3·4 (4 -> 1)
45
>>> reordered_network_atol(model, np.zeros(3)) == 45 * EPS32
True
"""

import numpy as np

EPS32 = float(np.finfo(np.float32).eps)  # 2^-23: the spacing of float32 at 1
FLOAT16_ROUNDING = 2.0**-11  # the largest relative change of a number rounded to float16


def reordered_sum_rtol(terms):
    """Relative change of a float32 sum of `terms` same-signed terms summed in another order."""
    return terms * EPS32


def _kernels(model):
    """`(kernel, terms per output)` of every weighted layer, nested models included."""
    import keras

    kernels = []
    for layer in model._flatten_layers(include_self=False):
        kernel = getattr(layer, "kernel", None)
        if kernel is None or len(kernel.shape) < 2:
            continue
        shape = tuple(kernel.shape)
        if isinstance(layer, keras.layers.Conv2DTranspose):  # (kh, kw, out, in): at most kh·kw·in terms
            terms = shape[0] * shape[1] * shape[3]
        else:  # Conv2D (kh, kw, in, out), Dense (in, out): all axes but the last
            terms = int(np.prod(shape[:-1]))
        kernels.append((kernel, terms))
    return kernels


def fan_in(model):
    """Σ over the model's kernels of the terms each output's dot product sums (kh·kw·c_in for a 2-D kernel)."""
    return sum(terms for _, terms in _kernels(model))


def _scale(reference):
    return max(1.0, float(np.max(np.abs(reference)))) if np.size(reference) else 1.0


def reordered_network_atol(model, reference):
    """Absolute tolerance for `model`'s outputs computed with every dot product summed in another order."""
    return EPS32 * fan_in(model) * _scale(reference)


def float16_weights_atol(model, reference):
    """Absolute tolerance for `model`'s outputs with float16-rounded weights (float32 arithmetic)."""
    return FLOAT16_ROUNDING * len(_kernels(model)) * _scale(reference)
