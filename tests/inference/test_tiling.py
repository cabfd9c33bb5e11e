import numpy as np
import pytest

from kfcn.inference import model_geometry, predict, predict_resized, predict_tiled
from kfcn.models import plain_cnn, segnet, unet
from tests.tolerances import reordered_network_atol, reordered_sum_rtol

pytestmark = pytest.mark.backend


@pytest.fixture
def image(rng):
    return 255 * rng.random((83, 70)).astype("float32")


@pytest.mark.parametrize("tile", [44, 60, (92, 48)])
def test_valid_unet_tiled_equals_whole_image_everywhere(image, tile):
    model = unet((None, None, 1), num_classes=2, filters=4, depth=2, padding="valid")
    whole = predict(model, image)
    tiled = predict_tiled(model, image, tile, batch_size=3, progress=False)
    assert whole.shape == (83, 70, 2)
    np.testing.assert_allclose(tiled, whole, atol=reordered_network_atol(model, whole))


@pytest.mark.parametrize("tile", [64, 96, (48, 160)])
def test_same_unet_tiled_equals_whole_image_everywhere(image, tile):
    # Tiles stay inside the (stride-padded) image: at its border they see what the whole image sees.
    model = unet((None, None, 1), num_classes=2, filters=4, depth=2)
    whole = predict(model, image)
    tiled = predict_tiled(model, image, tile, progress=False)
    np.testing.assert_allclose(tiled, whole, atol=reordered_network_atol(model, whole))


def test_a_tile_larger_than_the_image_shrinks_to_the_whole_image(rng):
    model = unet((None, None, 1), num_classes=1, filters=4, depth=2)
    image = 255 * rng.random((30, 70)).astype("float32")
    whole = predict(model, image)
    np.testing.assert_allclose(
        predict_tiled(model, image, 64, progress=False), whole, atol=reordered_network_atol(model, whole)
    )


def test_whole_image_of_valid_unet_equals_direct_call_with_mirror_padding(rng):
    # predict() mirrors the margin on every side: compare with doing it by hand.
    model = unet((None, None, 1), num_classes=1, filters=4, depth=2, padding="valid")
    image = 255 * rng.random((24, 24)).astype("float32")
    margin = model_geometry(model).margin
    padded = np.pad(image, margin, mode="reflect")[None, ..., None]
    direct = np.asarray(model.predict(padded, verbose=0))[0]
    np.testing.assert_allclose(predict(model, image), direct, atol=reordered_network_atol(model, direct))


def test_same_models_pad_to_their_multiple(rng):
    model = unet((None, None, 3), num_classes=3, filters=4, depth=3)
    image = 255 * rng.random((50, 37, 3)).astype("float32")
    padded = np.pad(image, ((0, 6), (0, 3), (0, 0)), mode="reflect")[None]
    direct = np.asarray(model.predict(padded, verbose=0))[0, :50, :37]
    np.testing.assert_allclose(predict(model, image), direct, atol=reordered_network_atol(model, direct))


@pytest.mark.parametrize("blend", ["linear", "gaussian"])
def test_blended_tiles_stay_close_to_whole_image(image, blend):
    model = plain_cnn((None, None, 1), num_layers=3, filters=4)
    whole = predict(model, image)
    tiled = predict_tiled(model, image, 32, overlap=12, blend=blend, progress=False)
    np.testing.assert_allclose(tiled, whole, atol=reordered_network_atol(model, whole))


def test_segnet_tiles(image):
    model = segnet((None, None, 1), num_classes=2, filters=2, depth=2)
    whole = predict(model, image)
    tiled = predict_tiled(model, image, 48, overlap=2 * model_geometry(model).context, progress=False)
    np.testing.assert_allclose(tiled, whole, atol=reordered_network_atol(model, whole))


def test_coordinate_channel_models_get_global_frames(image):
    model = unet((None, None, 1), num_classes=1, filters=4, depth=2, coordinate_channels=True)
    whole = predict(model, image)
    tiled = predict_tiled(model, image, 64, progress=False)
    np.testing.assert_allclose(tiled, whole, atol=reordered_network_atol(model, whole))


def test_extra_input_maps_are_tiled_too(image):
    model = unet((None, None, 1), num_classes=1, filters=4, depth=2, padding="valid", extra_inputs={"fov": 1})
    mask = (np.arange(70)[None, :] < 35).astype("float32").repeat(83, 0)[..., None]
    whole = predict(model, image, extra_inputs={"fov": mask})
    tiled = predict_tiled(model, image, 60, extra_inputs={"fov": mask}, progress=False)
    np.testing.assert_allclose(tiled, whole, atol=reordered_network_atol(model, whole))
    with pytest.raises(ValueError, match="extra_inputs"):
        predict(model, image)


def test_memmap_input_and_output(tmp_path, rng):
    model = plain_cnn((None, None, 1), num_layers=2, filters=2)
    source = np.lib.format.open_memmap(tmp_path / "in.npy", mode="w+", dtype="float32", shape=(100, 90, 1))
    source[:] = 255 * rng.random((100, 90, 1))
    target = np.lib.format.open_memmap(tmp_path / "out.npy", mode="w+", dtype="float32", shape=(100, 90, 1))
    result = predict_tiled(model, source, 32, out=target, progress=False)
    assert result is target
    whole = predict(model, np.asarray(source))
    atol = reordered_network_atol(model, whole)
    np.testing.assert_allclose(np.asarray(target)[2:-2, 2:-2], whole[2:-2, 2:-2], atol=atol)


def test_test_time_augmentation_of_an_equivariant_model_changes_nothing(rng):
    # A 1x1 convolution commutes with flips and rotations.
    model = plain_cnn((None, None, 1), num_layers=1, kernel_size=1)
    image = 255 * rng.random((16, 16)).astype("float32")
    # The same products, flipped back, then the mean of 8 (or 4) equal values: n·ε relative.
    whole = predict(model, image)
    atol = reordered_network_atol(model, whole)
    np.testing.assert_allclose(predict(model, image, tta="d4"), whole, rtol=reordered_sum_rtol(8), atol=atol)
    tiled = predict_tiled(model, image, 8, tta="flips", progress=False)
    np.testing.assert_allclose(tiled, whole, rtol=reordered_sum_rtol(4), atol=atol)


def test_predict_resized(rng):
    model = unet((None, None, 1), num_classes=3, filters=4, depth=2)
    image = 255 * rng.random((100, 60)).astype("float32")
    probabilities = predict_resized(model, image, (32, 32))
    assert probabilities.shape == (100, 60, 3)
    np.testing.assert_allclose(probabilities.sum(-1), 1.0, atol=1e-5)
    labels = predict_resized(model, image, (32, 32), labels=True)
    assert labels.shape == (100, 60) and set(np.unique(labels)) <= {0, 1, 2}


def test_errors_are_clear(rng):
    model = unet((None, None, 1), num_classes=2, filters=4, depth=2, padding="valid")
    image = 255 * rng.random((50, 50)).astype("float32")
    with pytest.raises(ValueError, match="next size that does is 44"):
        predict_tiled(model, image, 42, progress=False)
    same = unet((None, None, 1), num_classes=2, filters=4, depth=2)
    with pytest.raises(ValueError, match="too small"):
        predict_tiled(same, image, 32, progress=False)
    with pytest.raises(ValueError, match="expects 1 channel"):
        predict(same, 255 * rng.random((20, 20, 3)))
    with pytest.raises(ValueError, match="no batch axis"):
        predict(same, 255 * rng.random((2, 20, 20, 1)))
    bad = image.copy()
    bad[3, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        predict_tiled(same, bad, 64, progress=False)
    with pytest.raises(ValueError, match="blend"):
        predict_tiled(same, image, 64, blend="max", progress=False)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"overlap": -2}, r"`overlap` .* must be a non-negative int or a pair of them \(rows, cols\), got -2"),
        ({"overlap": (4, -1)}, r"`overlap` .* a non-negative int or a pair"),
        ({"overlap": 64}, r"smaller than a tile's output \(64 px"),
        ({"overlap": 2.5}, r"`overlap` .* got 2.5 \(float\)"),
        ({"tile_size": 0}, r"`tile_size` .* a positive int or a pair"),
        ({"tile_size": -64}, r"`tile_size` .* a positive int or a pair"),
        ({"tile_size": 64.5}, r"`tile_size` .* got 64.5 \(float\)"),
        ({"tile_size": (64, 64, 64)}, r"`tile_size` .* pair of them \(rows, cols\), got \(64, 64, 64\)"),
        ({"tile_size": True}, r"`tile_size` .* got True \(bool\)"),
        ({"overlap": (4, False)}, r"`overlap` .* a non-negative int or a pair"),
        ({"batch_size": True}, "`batch_size`.*positive int"),
        ({"tile_size": "64"}, "an int, a pair or .auto."),
        ({"tile_size": 62}, r"next size that does is 64 \(the previous one is 60\): pass tile_size=64"),
        ({"batch_size": 0}, "`batch_size`.*positive int"),
        ({"batch_size": 2.0}, "`batch_size`.*positive int"),
        ({"blend": "max"}, "`blend` must be one of"),
        ({"blend": None}, "`blend` must be one of"),
        ({"out": np.zeros((50, 49, 2), "float32")}, r"`out` has shape \(50, 49, 2\)"),
        ({"out": np.zeros((50, 50, 2), "int32")}, "float array"),
        ({"extra_inputs": {"fov": np.zeros((50, 50, 1))}}, "not a map input of the model"),
    ],
)
def test_bad_arguments_are_named_before_any_tile_runs(rng, changes, message):
    model = unet((None, None, 1), num_classes=2, filters=4, depth=2)  # "same": total stride 4
    image = (rng.random((50, 50)) * 255).astype("float32")
    with pytest.raises(ValueError, match=message):
        predict_tiled(model, image, **{"tile_size": 64, "progress": False, **changes})


def test_empty_image_is_named(rng):
    model = unet((None, None, 1), num_classes=2, filters=4, depth=2)
    with pytest.raises(ValueError, match="empty"):
        predict_tiled(model, np.zeros((0, 50), "uint8"), 64, progress=False)


def test_valid_model_names_only_the_sizes_that_exist():
    # Valid-padding depth 2: margin 20, so 40 would give an empty output; 44 is the smallest size.
    model = unet((None, None, 1), num_classes=2, filters=4, depth=2, padding="valid")
    with pytest.raises(ValueError, match=r"next size that does is 44: pass tile_size=44"):
        predict_tiled(model, np.zeros((50, 50), "uint8"), 42, progress=False)


def test_extra_input_of_another_size_is_named(rng):
    model = unet((None, None, 1), num_classes=1, filters=4, depth=2, padding="valid", extra_inputs={"fov": 1})
    image = (rng.random((50, 50)) * 255).astype("float32")
    with pytest.raises(ValueError, match=r"extra_inputs\['fov'\] has shape \(40, 50, 1\)"):
        predict_tiled(model, image, 60, extra_inputs={"fov": np.ones((40, 50, 1))}, progress=False)


def test_integer_arguments_of_numpy_type_and_rectangular_tiles_work(rng):
    model = unet((None, None, 1), num_classes=2, filters=4, depth=2, padding="valid")
    image = (rng.random((50, 70)) * 255).astype("float32")
    whole = predict(model, image)
    tiled = predict_tiled(model, image, (np.int64(48), 60), batch_size=np.int32(2), progress=False)
    np.testing.assert_allclose(tiled, whole, atol=reordered_network_atol(model, whole))


def test_one_tile_covering_the_image_is_one_whole_image_call(rng, monkeypatch):
    # A valid-padding U-Net of margin 44 on a 100 x 120 image: a 236-px tile covers it with its
    # context, so predict_tiled makes one call, equal to predict's; a 200-px one does not.
    import kfcn.inference.whole as whole

    model = unet((None, None, 1), num_classes=1, filters=4, depth=2, padding="valid")
    image = (255 * rng.random((100, 120))).astype("float32")
    calls = []
    original = whole.predict
    monkeypatch.setattr(whole, "predict", lambda *args, **kwargs: calls.append(1) or original(*args, **kwargs))
    margin = model_geometry(model).margin
    covering = model_geometry(model).valid_input_size(model, 120 + 2 * margin, 0)
    np.testing.assert_array_equal(predict_tiled(model, image, covering, progress=False), original(model, image))
    assert calls == [1]
    predict_tiled(model, image, model_geometry(model).valid_input_size(model, 100, 0), progress=False)
    assert calls == [1]  # tiled: no whole-image call


def test_a_model_built_for_one_size_predicts_an_image_that_fits_it_whatever_the_tile(rng):
    model = unet((64, 64, 1), num_classes=1, filters=4, depth=2)
    image = (255 * rng.random((50, 60))).astype("float32")
    np.testing.assert_array_equal(predict_tiled(model, image, 512, progress=False), predict(model, image))
    with pytest.raises(ValueError, match="Pass tile_size=\\(64, 64\\)"):
        predict_tiled(model, (255 * rng.random((100, 60))).astype("float32"), 512, progress=False)
