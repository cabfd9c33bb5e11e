from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kfcn.data import folder_dataset, isbi2012_dir, load_pair, read_image


def _write(path, array, mode=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode=mode).save(path)


def test_shipped_isbi_copy_loads():
    dataset = folder_dataset(isbi2012_dir() / "images", isbi2012_dir() / "labels", verbose=False)
    pairs = list(dataset)
    assert len(pairs) == 25
    image, label = pairs[0]
    raw = np.asarray(Image.open(isbi2012_dir() / "images" / "slice_00.png"))
    assert image.shape == (512, 512, 1) and image.dtype == "float32"
    np.testing.assert_array_equal(image.numpy()[..., 0], raw)  # raw pixel values, not rescaled
    assert set(np.unique(label.numpy())) == {0, 1}
    assert 0.7 < label.numpy().mean() < 0.85  # about 78 % interior


def test_sizes_may_differ_between_pairs(tmp_path):
    for name, size in (("a", (20, 30)), ("b", (40, 10))):
        _write(tmp_path / "img" / f"{name}.png", np.zeros(size, np.uint8))
        _write(tmp_path / "lab" / f"{name}.png", np.full(size, 255, np.uint8))
    shapes = [tuple(image.shape) for image, _ in folder_dataset(tmp_path / "img", tmp_path / "lab", verbose=False)]
    assert shapes == [(20, 30, 1), (40, 10, 1)]


def test_sixteen_bit_tiff_and_palette_labels(tmp_path):
    import tifffile

    tifffile.imwrite(tmp_path / "x.tif", np.array([[0, 65535]], np.uint16))
    label = Image.fromarray(np.array([[0, 2]], np.uint8), mode="P")
    label.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * 759)
    label.save(tmp_path / "x.png")
    image, indices = load_pair(tmp_path / "x.tif", tmp_path / "x.png", "index", num_classes=3)
    assert image.tolist() == [[[0.0], [65535.0]]] and indices[..., 0].tolist() == [[0, 2]]


def test_camvid_style_ignore_class(tmp_path):
    _write(tmp_path / "i.png", np.zeros((4, 4, 3), np.uint8))
    _write(tmp_path / "l.png", np.array([[0, 10, 11, 3]] * 4, np.uint8))
    _, label = load_pair(tmp_path / "i.png", tmp_path / "l.png", "index", num_classes=11, ignore_class=11)
    assert label.max() == 11
    with pytest.raises(ValueError, match=r"values 11 outside the declared classes 0..10"):
        load_pair(tmp_path / "i.png", tmp_path / "l.png", "index", num_classes=11)


def test_errors_name_the_file(tmp_path):
    _write(tmp_path / "img" / "a.png", np.zeros((8, 8), np.uint8))
    _write(tmp_path / "lab" / "a.png", np.zeros((8, 9), np.uint8))
    with pytest.raises(ValueError, match=r"a.png is 8x8 but its label .*a.png is 9x8"):
        folder_dataset(tmp_path / "img", tmp_path / "lab", verbose=False)
    _write(tmp_path / "img" / "b.png", np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError, match="have no label.*b.png"):
        folder_dataset(tmp_path / "img", tmp_path / "lab", verbose=False)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(ValueError, match="Cannot read image file .*broken.png"):
        read_image(tmp_path / "broken.png")
    _write(tmp_path / "m.png", np.array([[0, 128, 255]], np.uint8))
    with pytest.raises(ValueError, match=r"3 values \(0, 128, 255\).*binary mask"):
        load_pair(tmp_path / "m.png", tmp_path / "m.png", "binary")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_pixels_are_refused_by_file_name(tmp_path, bad):
    import tifffile

    image = np.zeros((4, 4), np.float32)
    image[1, 2] = bad
    (tmp_path / "img").mkdir()
    tifffile.imwrite(tmp_path / "img" / "a.tif", image)
    _write(tmp_path / "lab" / "a.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match=r"img/a.tif has 1 NaN or infinite pixel"):
        load_pair(tmp_path / "img" / "a.tif", tmp_path / "lab" / "a.png")
    with pytest.raises(ValueError, match=r"a.tif has 1 NaN or infinite pixel"):
        folder_dataset(tmp_path / "img", tmp_path / "lab", verbose=False)


@pytest.mark.parametrize("folder", ["img", "lab"])
def test_two_files_with_one_stem_are_refused(tmp_path, folder):
    for name in ("s1.png", "s2.png"):
        _write(tmp_path / "img" / name, np.zeros((4, 4), np.uint8))
        _write(tmp_path / "lab" / name, np.zeros((4, 4), np.uint8))
    _write(tmp_path / folder / "s1.tif", np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match=rf"{folder} has two files named 's1': s1.png and s1.tif.*rename one"):
        folder_dataset(tmp_path / "img", tmp_path / "lab", verbose=False)


SHARED_CAMVID = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "camvid"


@pytest.mark.skipif(not SHARED_CAMVID.is_dir(), reason="needs the shared CamVid copy beside the project")
def test_camvid_loads_through_the_folder_api():
    from kfcn.data import pair_files

    pairs = pair_files(SHARED_CAMVID / "val" / "images", SHARED_CAMVID / "val" / "labels")
    assert len(pairs) == 101
    image, label = load_pair(*pairs[0], label_mode="index", num_classes=11, ignore_class=11)
    assert image.shape == (360, 480, 3) and label.shape == (360, 480, 1)
    assert label.max() <= 11


def test_mixed_bit_depths_are_refused_naming_one_file_of_each(tmp_path):
    import tifffile

    _write(tmp_path / "img" / "a.png", np.zeros((8, 8), np.uint8))
    (tmp_path / "img" / "b.tif").parent.mkdir(exist_ok=True)
    tifffile.imwrite(tmp_path / "img" / "b.tif", np.zeros((8, 8), np.uint16))
    for name in ("a", "b"):
        _write(tmp_path / "lab" / f"{name}.png", np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError, match=r"mix bit depths: .*img/a\.png is 8-bit \(uint8\) but .*img/b\.tif is 16-bit"):
        folder_dataset(tmp_path / "img", tmp_path / "lab", verbose=False)


def test_channel_conversions_are_said_in_one_warning(tmp_path):
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[..., 0] = 200
    for name in ("a", "b", "c"):
        _write(tmp_path / "img" / f"{name}.png", rgb)
        _write(tmp_path / "lab" / f"{name}.png", np.zeros((8, 8), np.uint8))
    with pytest.warns(UserWarning) as caught:
        images = [image.numpy() for image, _ in folder_dataset(tmp_path / "img", tmp_path / "lab", channels=1)]
    messages = [str(w.message) for w in caught if "converted" in str(w.message)]
    assert messages == ["converted 3 image(s) from RGB to grayscale (luma: 0.299 R + 0.587 G + 0.114 B), e.g. a.png"]
    expected = np.asarray(Image.fromarray(rgb).convert("L"))  # PIL's luma
    assert all(image.shape == (8, 8, 1) and np.abs(image[..., 0] - expected).max() <= 1 for image in images)


def test_mixed_channel_counts_are_refused_with_both_fixes(tmp_path):
    _write(tmp_path / "img" / "a.png", np.zeros((8, 8), np.uint8))
    _write(tmp_path / "img" / "b.png", np.zeros((8, 8, 3), np.uint8))
    for name in ("a", "b"):
        _write(tmp_path / "lab" / f"{name}.png", np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError, match=r"b\.png has 3 channel\(s\) but .*a\.png has 1.*convert\('L'\).*channels=1"):
        folder_dataset(tmp_path / "img", tmp_path / "lab", verbose=False)
    with pytest.warns(UserWarning, match=r"converted 1 image\(s\) from grayscale to RGB"):
        assert len(list(folder_dataset(tmp_path / "img", tmp_path / "lab", channels=3, verbose=False))) == 2
