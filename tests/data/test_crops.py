import numpy as np
import pytest
import tensorflow as tf

from kfcn.data import random_crop_pipeline
from kfcn.data.augment import flips_and_rot90, horizontal_flip


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


@pytest.mark.parametrize("augment", [None, "geometric", "elastic", "full", horizontal_flip, flips_and_rot90])
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


def _constant_pairs(label_values, image=None, size=(20, 20)):
    labels = np.resize(np.asarray(label_values, np.int32), size)[..., None]
    image = np.zeros(size + (1,), np.float32) if image is None else image
    return tf.data.Dataset.from_tensors((image, labels))


@pytest.mark.parametrize("crop_size", [np.int64(16), 16, (16, 12), [np.int32(16), 12], np.array([16, 12])])
def test_crop_sizes_as_numpy_integers_and_pairs(crop_size):
    x, _ = next(iter(random_crop_pipeline(_constant_pairs([0, 1]), crop_size, batch_size=1, seed=0)))
    expected = (16, 16) if np.ndim(crop_size) == 0 else (16, 12)
    assert x.shape == (1, *expected, 1)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"crop_size": 0}, "`crop_size` must be positive, got 0"),
        ({"crop_size": -8}, "`crop_size` must be positive"),
        ({"crop_size": (16, 0)}, "`crop_size` must be positive"),
        ({"crop_size": 64.0}, r"`crop_size` must be an integer, got 64.0 \(float\)"),
        ({"crop_size": (16, 16, 1)}, r"`crop_size` must be an integer or a \(height, width\) pair"),
        ({"crop_size": "64"}, r"`crop_size` must be an integer, got '64' \(str\)"),
        ({"crop_size": True}, "`crop_size` must be an integer"),
        ({"batch_size": 0}, "`batch_size` must be positive, got 0"),
        ({"batch_size": -1}, "`batch_size` must be positive"),
        ({"batch_size": 2.0}, "`batch_size` must be an integer"),
        ({"one_hot": 0}, "`one_hot` must be positive"),
        ({"shuffle_buffer": -1}, "`shuffle_buffer` must be >= 0"),
        ({"augment": "rotate"}, "`augment` must be None, a callable or one of"),
        ({"augment": 3}, "`augment` must be None, a callable or one of"),
        ({"weight_map": "gauss"}, "`weight_map` must be None, 'unet' or a callable"),
        ({"value_range": (255, 0)}, r"`value_range` must be \(low, high\) with low < high"),
        ({"value_range": 255}, r"`value_range` must be \(low, high\)"),
    ],
)
def test_bad_arguments_are_refused_up_front(kwargs, message):
    arguments = {"crop_size": 16, **kwargs}
    with pytest.raises(ValueError, match=message):
        random_crop_pipeline(_constant_pairs([0, 1]), **arguments)


def test_bad_datasets_are_refused_up_front():
    with pytest.raises(ValueError, match="takes a tf.data.Dataset of \\(image, label\\) pairs, got ndarray"):
        random_crop_pipeline(np.zeros((4, 8, 8, 1)), 4)
    flat = tf.data.Dataset.from_tensors((tf.zeros((8, 8)), tf.zeros((8, 8), tf.int32)))
    with pytest.raises(ValueError, match=r"image \(H, W, C\), label \(H, W, 1\).*image\[\.\.\., None\]"):
        random_crop_pipeline(flat, 4)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"one_hot": 2}, r"one_hot=2 needs labels in 0..1, but a label holds other values.*labels // 255"),
        # TensorFlow escapes the quotes in assertion messages.
        ({"weight_map": "unet"}, r"weight_map=\W*unet\W* needs 0/1 masks.*label_mode=\W*binary"),
    ],
)
def test_raw_masks_are_refused_where_they_give_wrong_targets(kwargs, message):
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        next(iter(random_crop_pipeline(_constant_pairs([0, 255]), 16, seed=0, **kwargs)))
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        next(iter(random_crop_pipeline(_constant_pairs([0, -1]), 16, seed=0, **kwargs)))
    # Class indices pass, and one_hot gives exactly one 1 per pixel at the class index.
    x, y, *weights = next(iter(random_crop_pipeline(_constant_pairs([0, 1]), 16, seed=0, **kwargs)))
    if "one_hot" in kwargs:
        assert np.all(y.numpy().sum(-1) == 1)


def test_sparse_labels_of_several_classes_still_pass_without_one_hot():
    _, y = next(iter(random_crop_pipeline(_constant_pairs([0, 4, 7]), 16, batch_size=1, seed=0)))
    assert set(np.unique(y.numpy())) <= {0.0, 4.0, 7.0}


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_images_are_refused(bad):
    image = np.zeros((20, 20, 1), np.float32)
    image[3, 4] = bad
    with pytest.raises(tf.errors.InvalidArgumentError, match="an image has NaN or infinite pixel values"):
        next(iter(random_crop_pipeline(_constant_pairs([0, 1], image), 16, seed=0)))


def test_intensity_augmentation_scales_with_the_pixel_range(rng):
    images = _smooth_images(rng, [(40, 40), (36, 44)])

    def crops(scale, value_range):
        pairs = _dataset(images).map(lambda image, label: (image * scale, label))
        batches = random_crop_pipeline(pairs, 24, 2, augment="intensity", seed=4, value_range=value_range)
        return np.concatenate([x.numpy() for x, _ in batches.take(3)])

    unit = crops(1.0, (0, 1))
    eight_bit = crops(255.0, (0, 255))
    np.testing.assert_allclose(eight_bit, 255.0 * unit, rtol=1e-4, atol=1e-3)
    plain = np.concatenate([x.numpy() for x, _ in random_crop_pipeline(_dataset(images), 24, 2, seed=4).take(3)])
    # The same windows; brightness (up to 0.1 of the range) and noise (0.02 of it) visibly change the pixels.
    change = 255.0 * (unit - plain)
    assert 1.0 < np.std(change - change.mean(axis=(1, 2, 3), keepdims=True)) < 20.0


def test_horizontal_flip_mirrors_left_right_only_about_half_the_time():
    image = tf.reshape(tf.range(12.0), (3, 4, 1))  # every pixel distinct: any other motion would show
    maps = 100.0 + image
    mirrored = image[:, ::-1]
    flips = 0
    for seed in range(200):
        flipped, flipped_maps = horizontal_flip(image, maps, tf.constant([7, seed]))
        assert np.array_equal(flipped_maps, 100.0 + flipped), "image and maps must move together"
        if np.array_equal(flipped, mirrored):
            flips += 1
        else:
            assert np.array_equal(flipped, image), "only a left-right mirror, never another motion"
    assert 70 <= flips <= 130  # Binomial(200, 1/2): outside this range with probability < 1e-4
