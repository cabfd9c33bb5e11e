import numpy as np
import pytest
import tensorflow as tf

from kfcn.data import random_crop_pipeline


def _dataset(images):
    """A label that is a function of the pixels: label = image > 0.5 (so misalignment shows)."""

    def gen():
        for image in images:
            yield image, (image > 0.5).astype("int32")

    return tf.data.Dataset.from_generator(
        gen,
        output_signature=(tf.TensorSpec((None, None, 1), tf.float32), tf.TensorSpec((None, None, 1), tf.int32)),
    )


def _smooth_images(rng, sizes):
    images = []
    for height, width in sizes:
        y, x = np.mgrid[0:height, 0:width]
        phase = rng.uniform(0, 6)
        images.append((0.5 + 0.5 * np.sin(x / 7.0 + phase) * np.cos(y / 5.0))[..., None].astype("float32"))
    return images


@pytest.mark.parametrize("augment", [None, "geometric", "elastic", "full"])
def test_labels_stay_aligned_under_every_augmentation(rng, augment):
    images = _smooth_images(rng, [(70, 90), (64, 64), (100, 50)])
    batches = random_crop_pipeline(_dataset(images), (32, 32), batch_size=4, augment=augment, seed=3)
    for x, y in batches.take(5):
        x, y = x.numpy(), y.numpy()
        assert x.shape == (4, 32, 32, 1) and y.shape == (4, 32, 32, 1)
        assert set(np.unique(y)) <= {0.0, 1.0}, "labels must never be interpolated"
        if augment in ("full",):
            continue  # intensity changes the image, not the label
        # Bilinear (image) and nearest (label) resampling may disagree within a pixel
        # of the 0.5 level line; everywhere clearly above or below it they must agree.
        clear = np.abs(x - 0.5) > 0.1
        agreement = np.mean((x[clear] > 0.5) == (y[clear] > 0.5))
        assert agreement > 0.995, f"label misaligned with image ({agreement:.4f})"


def test_deterministic_with_seed(rng):
    images = _smooth_images(rng, [(70, 90), (64, 64), (100, 50)])

    def first_batches(seed):
        return [x.numpy() for x, _ in random_crop_pipeline(_dataset(images), 24, 2, "elastic", seed=seed).take(3)]

    for a, b in zip(first_batches(7), first_batches(7)):
        np.testing.assert_array_equal(a, b)
    assert not all(np.array_equal(a, b) for a, b in zip(first_batches(7), first_batches(8)))


def test_small_images_are_reflect_padded_and_frame_is_global(rng):
    images = _smooth_images(rng, [(20, 24)])
    batches = random_crop_pipeline(_dataset(images), 32, batch_size=1, coordinate_frame=True, seed=0)
    x, y = next(iter(batches))
    assert x["image"].shape == (1, 32, 32, 1)
    top, left, height, width = x["coordinate_frame"].numpy()[0]
    assert (height, width) == (20, 24) and top <= 0 and left <= 0
    with pytest.raises(tf.errors.InvalidArgumentError, match="too small for 64x64 crops"):
        next(iter(random_crop_pipeline(_dataset(images), 64, batch_size=1, seed=0)))


def test_weight_maps_travel_with_the_crop(rng):
    images = _smooth_images(rng, [(48, 48)])
    batches = random_crop_pipeline(
        _dataset(images), 32, batch_size=2, augment="geometric", weight_map=lambda label: 1.0 + label, seed=1
    )
    x, y, w = next(iter(batches))
    np.testing.assert_array_equal(w.numpy(), 1.0 + y.numpy()[..., 0])


def test_one_hot_labels(rng):
    images = _smooth_images(rng, [(40, 40)])
    _, y = next(iter(random_crop_pipeline(_dataset(images), 16, batch_size=1, one_hot=2, seed=0)))
    assert y.shape == (1, 16, 16, 2) and np.all(y.numpy().sum(-1) == 1)


def test_feeds_model_fit(rng):
    import keras

    from kfcn.models import unet

    images = _smooth_images(rng, [(40, 50), (60, 45)])
    model = unet((None, None, 1), num_classes=1, filters=4, depth=2)
    model.compile("adam", "binary_crossentropy")
    batches = random_crop_pipeline(_dataset(images), 16, batch_size=2, augment="geometric", weight_map="unet", seed=0)
    history = model.fit(batches, steps_per_epoch=3, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert isinstance(model, keras.Model)
