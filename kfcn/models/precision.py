"""Running a trained model in mixed precision without rebuilding it by hand."""

from __future__ import annotations

import keras

POLICIES = ("float32", "mixed_bfloat16", "mixed_float16", "bfloat16", "float16")


def with_policy(model, policy):
    """A copy of `model` whose layers compute in `policy` (e.g. "mixed_bfloat16"), with the same weights.

    Every layer but the last gets the policy; the last keeps float32 (Keras' advice: the
    output activation, softmax or sigmoid, in full precision), so outputs are float32.
    Mixed policies keep the weights in float32 and compute in bfloat16/float16: about
    twice the throughput on GPUs and on CPUs with native BF16 (AVX-512 BF16, AMX); on
    CPUs without it bfloat16 is emulated and slower.

    "float32" undoes a mixed policy: a model that was trained or loaded computing in
    bfloat16/float16 comes back computing in float32 (the form to export or to run on
    a CPU without native BF16); a model that already computes in float32 is returned
    itself.

    Args:
        model: a functional or Sequential Keras model.
        policy: one of `POLICIES`.

    Example:
    >>> from kfcn.models import unet
    >>> model = unet((None, None, 1), num_classes=1, filters=4, depth=2)
    >>> fast = with_policy(model, "mixed_bfloat16")
    >>> fast.layers[3].compute_dtype, fast.layers[-1].compute_dtype
    ('bfloat16', 'float32')
    >>> with_policy(fast, "float32").layers[3].compute_dtype
    'float32'
    >>> with_policy(model, "float32") is model
    True
    """
    if policy not in POLICIES:
        raise ValueError(f"`policy` must be one of {', '.join(POLICIES)}; got {policy!r}.")
    if policy == "float32" and computes_in_float32(model):
        return model
    last = model.layers[-1].name

    def clone(layer):
        config = layer.get_config()
        config["dtype"] = "float32" if layer.name == last else policy
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy


def computes_in_float32(model):
    """Whether every layer of `model` computes and keeps its weights in float32 (no mixed or half policy).

    Example:
    >>> from kfcn.models import unet
    >>> model = unet((None, None, 1), num_classes=1, filters=4, depth=2)
    >>> computes_in_float32(model), computes_in_float32(with_policy(model, "mixed_bfloat16"))
    (True, False)
    """
    return all(
        layer.dtype_policy.compute_dtype == "float32"
        and layer.dtype_policy.variable_dtype == "float32"
        and (not isinstance(layer, keras.Model) or computes_in_float32(layer))  # a nested encoder's own layers
        for layer in model.layers
    )
