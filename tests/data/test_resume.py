"""A run interrupted and resumed by BackupAndRestore ends with the same weights as an uninterrupted run."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kfcn.data import ResumeCropStream, random_crop_pipeline
from kfcn.models import unet

EPOCHS, STEPS = 2, 3


class _Interrupt(keras.callbacks.Callback):
    """Raises at the start of the second epoch, as Keras' own BackupAndRestore tests do."""

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 1:
            raise RuntimeError("interrupted")


def _pairs():
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (4, 24, 28, 1)).astype("float32")
    labels = (images > 128).astype("int32")
    return tf.data.Dataset.from_tensor_slices((images, labels))


def _fit(backup_dir=None, extra_callbacks=(), resume_stream=True):
    """The same 'command' each time: seeded model, seeded crop stream, fit."""
    keras.utils.set_random_seed(0)
    model = unet((None, None, 1), num_classes=1, filters=2, depth=1)
    model.compile(keras.optimizers.Adam(1e-2), "binary_crossentropy")
    batches = random_crop_pipeline(_pairs(), 16, batch_size=2, augment="geometric", shuffle_buffer=4, seed=5)
    callbacks = [keras.callbacks.BackupAndRestore(str(backup_dir))] if backup_dir else []
    callbacks += [ResumeCropStream(batches)] if resume_stream else []
    model.fit(batches, epochs=EPOCHS, steps_per_epoch=STEPS, callbacks=callbacks + list(extra_callbacks), verbose=0)
    return model.get_weights()


@pytest.fixture(scope="module")
def uninterrupted():
    # Plain CPU kernels are deterministic; on a GPU the comparison would also need
    # tf.config.experimental.enable_op_determinism().
    return _fit()


def _interrupted_then_resumed(backup_dir, resume_stream=True):
    with pytest.raises(RuntimeError, match="interrupted"):
        _fit(backup_dir, [_Interrupt()], resume_stream)
    assert (backup_dir / "training_metadata.json").exists()
    return _fit(backup_dir, resume_stream=resume_stream)


def test_resumed_run_ends_with_the_uninterrupted_weights(tmp_path, uninterrupted):
    resumed = _interrupted_then_resumed(tmp_path / "backup")
    for expected, actual in zip(uninterrupted, resumed):
        np.testing.assert_array_equal(actual, expected)  # the same operations on the same values


def test_without_the_callback_the_resumed_run_sees_other_crops(tmp_path, uninterrupted):
    # The control: restarting the stream at its first batch changes the result, so the test above can fail.
    resumed = _interrupted_then_resumed(tmp_path / "backup", resume_stream=False)
    assert not all(np.allclose(a, b, rtol=1e-6, atol=1e-7) for a, b in zip(uninterrupted, resumed))


def test_stream_position_is_a_function_of_epoch_and_step():
    def pipeline():
        return random_crop_pipeline(_pairs(), 16, batch_size=2, augment="elastic", shuffle_buffer=4, seed=1)

    reference = [x.numpy() for x, _ in pipeline().take(2 * STEPS + 2)]
    batches = pipeline()
    callback = ResumeCropStream(batches)
    callback.set_params({"steps": STEPS, "epochs": 3, "verbose": 0})
    callback.on_epoch_begin(2)  # batches 6, 7, ...
    resumed = [x.numpy() for x, _ in batches.take(2)]
    np.testing.assert_array_equal(resumed[0], reference[2 * STEPS])
    np.testing.assert_array_equal(resumed[1], reference[2 * STEPS + 1])
    assert not np.array_equal(resumed[0], reference[0])


def test_resume_callback_errors():
    pairs = _pairs()
    with pytest.raises(ValueError, match="takes the dataset returned by kfcn.data.random_crop_pipeline"):
        ResumeCropStream(random_crop_pipeline(pairs, 8, repeat=False))
    callback = ResumeCropStream(random_crop_pipeline(pairs, 8))
    callback.set_params({"steps": None, "epochs": 1, "verbose": 0})
    with pytest.raises(ValueError, match="needs `steps_per_epoch`"):
        callback.on_epoch_begin(0)
