"""Data parallelism with the engines Keras users already run: one scope for TensorFlow and JAX.

`data_parallel()` replicates the model on every local device (and, with several hosts, on
every worker) and splits each global batch among them. Build, compile, fit and predict
inside it; nothing else changes:

    with kfcn.distribute.data_parallel():
        model = kfcn.models.unet((None, None, 1), num_classes=1)
        model.compile(optimizer="adam", loss=kfcn.training.segmentation_loss("ce+j2", 1))
        model.fit(random_crop_pipeline(pairs, 256, batch_size=16), epochs=50, steps_per_epoch=100)
        probabilities = kfcn.inference.predict_tiled(model, huge_image, 512, batch_size=8)

- TensorFlow: `tf.distribute.MirroredStrategy` on one host. Several hosts are refused:
  Keras 3's `model.fit` does not run under `MultiWorkerMirroredStrategy`
  (keras-team/keras#20585), so `data_parallel` says so when `TF_CONFIG` names several
  workers rather than failing inside `fit`.
- JAX: `keras.distribution.DataParallel`; on several hosts call
  `keras.distribution.initialize()` first (coordinator address, process count and id):
  every process then feeds its share of each global batch (tested with two processes).
- PyTorch: Keras has no multi-device training for its PyTorch backend; `data_parallel`
  says so instead of running on one device unnoticed.

For a collection of files, `shard(files, index, count)` gives each worker its share, so
independent processes (one per GPU or host) segment a folder without a scheduler.

Example:
>>> shard(["a.png", "b.png", "c.png", "d.png", "e.png"], 1, 2)
['b.png', 'd.png']
"""

from __future__ import annotations

import contextlib
import json
import os

import keras


def _tf_config_workers():
    """Number of workers that TF_CONFIG names (0 without TF_CONFIG)."""
    text = os.environ.get("TF_CONFIG")
    if not text:
        return 0
    try:
        cluster = json.loads(text).get("cluster", {})
    except ValueError:
        raise ValueError("TF_CONFIG is not valid JSON; see the README's 'Scaling out' section for its form.") from None
    return sum(len(cluster.get(kind, [])) for kind in ("chief", "worker"))


@contextlib.contextmanager
def data_parallel(devices=None):
    """A scope in which models are replicated over `devices` (default: all local devices) and batches split.

    Args:
        devices: TensorFlow device names (`["/gpu:0", "/gpu:1"]`) or JAX devices; None
            for all local ones (several hosts: every device of every worker).

    Yields:
        The number of replicas a global batch is split into.

    Raises:
        NotImplementedError: on the PyTorch backend.

    Example:
    >>> with data_parallel() as replicas:
    ...     model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(1, 3, padding="same")])
    >>> replicas >= 1
    True
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        if _tf_config_workers() > 1:
            raise NotImplementedError(
                "TF_CONFIG names several workers, but Keras 3's model.fit does not run under "
                "MultiWorkerMirroredStrategy (keras-team/keras#20585). Train on several hosts with "
                "KERAS_BACKEND=jax and keras.distribution.initialize(), or on one host (unset TF_CONFIG)."
            )
        strategy = tf.distribute.MirroredStrategy(devices)
        with strategy.scope():
            yield strategy.num_replicas_in_sync
    elif backend == "jax":
        distribution = keras.distribution.DataParallel(devices=devices)
        with distribution.scope():
            yield distribution.device_mesh.devices.size
    else:
        raise NotImplementedError(
            f"Keras supports no multi-device training on its {backend} backend. Use KERAS_BACKEND=tensorflow "
            "(MirroredStrategy) or jax (DataParallel), or shard files over one process per device with "
            "kfcn.distribute.shard / `kfcn predict --shard I/N`."
        )


def replicas():
    """Replicas of the current scope: the TensorFlow strategy's or the JAX distribution's; 1 outside any.

    Example:
    >>> replicas()
    1
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.distribute.get_strategy().num_replicas_in_sync
    if backend == "jax":
        distribution = keras.distribution.distribution()
        return 1 if distribution is None else int(distribution.device_mesh.devices.size)
    return 1


def parse_shard(text):
    """`"I/N"` -> (I, N) with 0 <= I < N: worker I of N.

    Example:
    >>> parse_shard("2/4")
    (2, 4)
    """
    try:
        index, count = (int(part) for part in str(text).split("/"))
    except ValueError:
        raise ValueError(f"--shard takes INDEX/COUNT, e.g. 0/4 for the first of four workers; got {text!r}.") from None
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"--shard {text}: the index must lie in 0..COUNT-1 and COUNT be at least 1.")
    return index, count


def shard(items, index, count):
    """Items `index, index + count, ...` of `items` (sorted the same way on every worker): worker `index`'s share.

    The shares of workers 0..count-1 are disjoint and together hold every item once; they
    differ in size by at most one.
    """
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"A shard index must lie in 0..{count - 1}; got {index} of {count}.")
    return list(items)[index::count]
