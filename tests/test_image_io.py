"""kfcn.image_io: one rule for pixel values and channels, checked against files written here with PIL and tifffile."""

from __future__ import annotations

import struct
import subprocess
import sys
import warnings
import zlib

import numpy as np
import pytest
import tifffile
from PIL import Image

from kfcn.image_io import (
    ChannelConversions,
    check_bit_depth,
    common_dtype,
    convert_channels,
    pixel_range,
    read_image,
    read_model_input,
    stored_dtype,
)


def _rgb(height=16, width=16):
    """A smooth colour image (JPEG keeps it close): red ramps down, green across, blue constant."""
    rows, cols = np.mgrid[0:height, 0:width]
    return np.stack(
        [200 - 8 * rows, 40 + 10 * cols, np.full_like(rows, 120)],
        axis=-1,
    ).astype(np.uint8)


def _png16(path, array, color_type):
    """A 16-bit PNG written by hand (PIL cannot write 16-bit colour): 2 = RGB, 4 = gray + alpha, 6 = RGBA."""
    height, width = array.shape[:2]
    raw = b"".join(b"\x00" + array[row].astype(">u2").tobytes() for row in range(height))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 16, color_type, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    )


# Bit depth: values as stored, and the dtype read off the header is the one read_image returns.


def test_bit_depths_are_kept(tmp_path):
    values16 = np.array([[0, 1000], [40000, 65535]], np.uint16)
    Image.fromarray(values16).save(tmp_path / "g16.png")
    tifffile.imwrite(tmp_path / "g16.tif", values16)
    tifffile.imwrite(tmp_path / "be16.tif", values16.astype(">u2"), byteorder=">")
    tifffile.imwrite(tmp_path / "f32.tif", values16.astype(np.float32) / 65535)
    Image.fromarray(np.array([[0, 7], [128, 255]], np.uint8)).save(tmp_path / "g8.png")
    for name, dtype, values in [
        ("g16.png", np.uint16, values16),
        ("g16.tif", np.uint16, values16),
        ("be16.tif", np.uint16, values16),
        ("f32.tif", np.float32, values16 / 65535),
        ("g8.png", np.uint8, [[0, 7], [128, 255]]),
    ]:
        image = read_image(tmp_path / name)
        assert image.dtype == dtype and image.shape == (2, 2, 1), name
        np.testing.assert_allclose(image[..., 0], values, rtol=1e-6)
        assert stored_dtype(tmp_path / name) == image.dtype, name


def test_pixel_range_follows_the_bit_depth_and_refuses_mixes_and_floats(tmp_path):
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "a.png")
    tifffile.imwrite(tmp_path / "b.tif", np.zeros((4, 4), np.uint16))
    tifffile.imwrite(tmp_path / "c.tif", np.zeros((4, 4), np.float32))
    assert pixel_range([tmp_path / "a.png"]) == (0, 255)
    assert pixel_range([tmp_path / "b.tif"]) == (0, 65535)
    with pytest.raises(ValueError, match=r"mix bit depths: .*a\.png is 8-bit \(uint8\) but .*b\.tif is 16-bit"):
        pixel_range([tmp_path / "a.png", tmp_path / "b.tif"])
    with pytest.raises(ValueError, match=r"c\.tif holds float32 pixels.*with --input-range LOW,HIGH"):
        pixel_range([tmp_path / "c.tif"], option="--input-range LOW,HIGH")
    assert common_dtype([tmp_path / "b.tif", tmp_path / "b.tif"]) == np.uint16


@pytest.mark.parametrize(
    ("dtype", "model_range", "message"),
    [
        (np.uint8, (0, 65535), r"x\.png is an 8-bit image \(uint8, 0-255\).*\[0, 65535\].*fill at most 0\.4%"),
        (np.uint16, (0, 255), r"x\.png is a 16-bit image \(uint16\), outside the raw pixel range \[0, 255\]"),
    ],
)
def test_an_image_of_another_bit_depth_than_the_model_is_refused(dtype, model_range, message):
    with pytest.raises(ValueError, match=message):
        check_bit_depth(dtype, model_range, "x.png")


@pytest.mark.parametrize(
    ("dtype", "model_range"),
    [(np.uint8, (0, 255)), (np.uint16, (0, 65535)), (np.uint16, (0, 4095)), (np.float32, (0, 255)), (np.uint8, None)],
)
def test_matching_bit_depths_pass(dtype, model_range):
    check_bit_depth(dtype, model_range, "x.png")


# Multi-page TIFFs: the channels of one image when declared so; any other stack refused with the fix.


def test_pages_declared_as_channels_are_channels(tmp_path):
    stack = np.stack([np.full((4, 5), value, np.uint16) for value in (10, 20, 30)])
    tifffile.imwrite(tmp_path / "imagej.tif", stack, imagej=True, metadata={"axes": "CYX"})
    tifffile.imwrite(tmp_path / "ome.tif", stack, ome=True, metadata={"axes": "CYX"})
    tifffile.imwrite(tmp_path / "planar.tif", stack.astype(np.uint8), photometric="rgb", planarconfig="separate")
    for name in ("imagej.tif", "ome.tif", "planar.tif"):
        image = read_image(tmp_path / name)
        assert image.shape == (4, 5, 3), name
        assert image[0, 0].tolist() == [10, 20, 30], name


@pytest.mark.parametrize("kind", ["appended", "stack", "imagej-z"])
def test_a_page_stack_is_refused_with_a_one_liner_that_splits_it(tmp_path, kind):
    path = tmp_path / "stack.tif"
    pages = [np.full((4, 5), value, np.uint8) for value in (1, 2, 3)]
    if kind == "appended":
        for page in pages:
            tifffile.imwrite(path, page, append=True)
    elif kind == "stack":
        pages = pages + pages[:2]  # 5 pages (tifffile writes 3 or 4 as the samples of one page)
        tifffile.imwrite(path, np.stack(pages))
    else:
        tifffile.imwrite(path, np.stack(pages), imagej=True, metadata={"axes": "ZYX"})
    with pytest.raises(ValueError, match=rf"stack\.tif holds {len(pages)} page\(s\).*Save each page") as error:
        read_image(path)
    command = str(error.value).split('python -c "')[1].split('"; or')[0]
    subprocess.run([sys.executable, "-c", command], cwd=tmp_path, check=True)
    for index, page in enumerate(pages):
        np.testing.assert_array_equal(read_image(tmp_path / f"stack_{index:03d}.tif")[..., 0], page)


# Colour spaces and modes: the table of read_image.


def test_cmyk_jpeg_reads_as_its_rgb_not_inverted(tmp_path):
    rgb = _rgb()
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)  # PIL writes Adobe's APP14 marker
    assert Image.open(tmp_path / "cmyk.jpg").mode == "CMYK"
    image = read_image(tmp_path / "cmyk.jpg")
    assert image.shape == rgb.shape and image.dtype == np.uint8
    assert np.abs(image.astype(int) - rgb).mean() < 3  # JPEG's loss only
    assert np.abs((255 - image.astype(int)) - rgb).mean() > 50  # not inverted


@pytest.mark.parametrize("mode", ["CMYK", "YCbCr"])
def test_cmyk_and_ycbcr_tiffs_read_as_rgb(tmp_path, mode):
    rgb = _rgb()
    Image.fromarray(rgb).convert(mode).save(tmp_path / "x.tif")
    assert np.abs(read_image(tmp_path / "x.tif").astype(int) - rgb).max() <= 3
    assert stored_dtype(tmp_path / "x.tif") == np.uint8


def test_a_mode_kfcn_does_not_read_is_refused_by_name(tmp_path):
    Image.fromarray(_rgb()).convert("LAB").save(tmp_path / "lab.tif")
    with pytest.raises(ValueError, match=r"lab\.tif has PIL mode 'LAB'.*convert\('RGB'\)"):
        read_image(tmp_path / "lab.tif")


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_opaque_alpha_is_dropped_and_transparency_refused(tmp_path, mode):
    colour = Image.fromarray(_rgb()).convert(mode[:-1] or "L")
    expected = np.asarray(colour)
    opaque = colour.convert(mode)
    opaque.save(tmp_path / "opaque.png")
    image = read_image(tmp_path / "opaque.png", palette_indices=False)
    np.testing.assert_array_equal(image, expected.reshape(image.shape))
    alpha = np.full(expected.shape[:2], 255, np.uint8)
    alpha[:4] = 0  # a quarter see-through
    see_through = colour.convert(mode)
    see_through.putalpha(Image.fromarray(alpha))
    see_through.save(tmp_path / "see_through.png")
    kind = "4 channels, colour" if mode == "RGBA" else "2 channels, gray"
    message = rf"see_through\.png has {kind} and an alpha .* not fully opaque \(25\.0% .*Flatten"
    with pytest.raises(ValueError, match=message):
        read_image(tmp_path / "see_through.png", palette_indices=False)


def test_tiff_alpha_follows_the_same_rule(tmp_path):
    rgba = np.concatenate([_rgb(), np.full((16, 16, 1), 255, np.uint8)], axis=-1)
    tifffile.imwrite(tmp_path / "opaque.tif", rgba, photometric="rgb")
    np.testing.assert_array_equal(read_image(tmp_path / "opaque.tif"), _rgb())
    rgba[0, 0, 3] = 128
    tifffile.imwrite(tmp_path / "see_through.tif", rgba, photometric="rgb")
    with pytest.raises(ValueError, match=r"see_through\.tif has 4 channels, colour and an alpha"):
        read_image(tmp_path / "see_through.tif")


def test_bilevel_is_0_255_as_a_picture_and_0_1_as_a_label(tmp_path):
    mask = np.array([[0, 255], [255, 0]], np.uint8)
    Image.fromarray(mask).convert("1").save(tmp_path / "mask.png")
    tifffile.imwrite(tmp_path / "mask.tif", mask > 0)
    for name in ("mask.png", "mask.tif"):
        assert read_image(tmp_path / name, palette_indices=False)[..., 0].tolist() == mask.tolist(), name
        assert read_image(tmp_path / name)[..., 0].tolist() == (mask // 255).tolist(), name
        assert stored_dtype(tmp_path / name) == np.uint8


def test_palette_is_indices_for_labels_and_colours_for_pictures(tmp_path):
    palette = Image.fromarray(np.array([[0, 1, 2]], np.uint8), mode="P")
    palette.putpalette([0, 0, 0, 255, 0, 0, 0, 0, 255] + [0] * 759)
    palette.save(tmp_path / "p.png")
    assert read_image(tmp_path / "p.png")[..., 0].tolist() == [[0, 1, 2]]
    assert read_image(tmp_path / "p.png", palette_indices=False)[0].tolist() == [[0, 0, 0], [255, 0, 0], [0, 0, 255]]
    palette.info["transparency"] = 0
    palette.save(tmp_path / "p_transparent.png", transparency=0)
    with pytest.raises(ValueError, match=r"p_transparent\.png has 4 channels, colour and an alpha"):
        read_image(tmp_path / "p_transparent.png", palette_indices=False)
    assert read_image(tmp_path / "p_transparent.png")[..., 0].tolist() == [[0, 1, 2]]  # labels: indices still


@pytest.mark.parametrize("color_type", [2, 4, 6])
def test_sixteen_bit_colour_png_is_refused_not_truncated(tmp_path, color_type):
    samples = {2: 3, 4: 2, 6: 4}[color_type]
    _png16(tmp_path / "c16.png", np.full((2, 3, samples), 40000, np.uint16), color_type)
    for reader in (read_image, stored_dtype):
        with pytest.raises(ValueError, match=r"c16\.png is a 16-bit colour PNG.*16-bit TIFF"):
            reader(tmp_path / "c16.png")


def test_miniswhite_tiff_reads_as_stored(tmp_path):
    values = np.array([[0, 10], [200, 255]], np.uint8)
    tifffile.imwrite(tmp_path / "w.tif", values, photometric="miniswhite")
    np.testing.assert_array_equal(read_image(tmp_path / "w.tif")[..., 0], tifffile.imread(tmp_path / "w.tif"))


# Channels: grayscale <-> RGB, said once per run.


def test_rgb_to_gray_is_pil_luma_and_gray_to_rgb_repeats(tmp_path):
    rgb = _rgb()
    conversions = ChannelConversions()
    gray = convert_channels(rgb, 1, "a.png", conversions)
    expected = np.asarray(Image.fromarray(rgb).convert("L"))  # PIL's own conversion: the independent truth
    assert gray.dtype == np.uint8 and np.abs(gray[..., 0].astype(int) - expected).max() <= 1
    back = convert_channels(gray, 3, "b.png", conversions)
    assert back.shape == rgb.shape and np.all(back == gray)
    convert_channels(rgb, 1, "c.png", conversions)
    assert convert_channels(rgb, 3, "d.png", conversions) is rgb  # no conversion, nothing said
    assert conversions.summary() == (
        "converted 2 image(s) from RGB to grayscale (luma: 0.299 R + 0.587 G + 0.114 B), e.g. a.png; "
        "converted 1 image(s) from grayscale to RGB (the gray value in each channel), e.g. b.png"
    )


def test_a_conversion_without_a_collector_warns_and_a_collector_warns_once():
    with pytest.warns(UserWarning, match=r"x\.png: converted from RGB to grayscale"):
        convert_channels(np.zeros((2, 2, 3), np.float32), 1, "x.png")
    conversions = ChannelConversions()
    for name in ("a.png", "b.png", "c.png"):
        convert_channels(np.zeros((2, 2, 1), np.uint16), 3, name, conversions)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        conversions.warn()
    assert [str(w.message) for w in caught] == [
        "converted 3 image(s) from grayscale to RGB (the gray value in each channel), e.g. a.png"
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ChannelConversions().warn()  # nothing converted, nothing said


@pytest.mark.parametrize(("have", "want"), [(2, 1), (4, 3), (4, 1), (3, 2)])
def test_other_channel_counts_are_refused(have, want):
    with pytest.raises(ValueError, match=rf"x\.tif has {have} channel\(s\) but the model takes {want}"):
        convert_channels(np.zeros((2, 2, have), np.uint8), want, "x.tif")


def test_read_model_input_checks_bit_depth_then_converts(tmp_path):
    Image.fromarray(_rgb()).save(tmp_path / "rgb.png")
    conversions = ChannelConversions()
    image = read_model_input(tmp_path / "rgb.png", 1, (0, 255), conversions)
    assert image.shape == (16, 16, 1) and image.dtype == np.uint8 and conversions.summary().startswith("converted 1")
    with pytest.raises(ValueError, match=r"rgb\.png is an 8-bit image"):
        read_model_input(tmp_path / "rgb.png", 1, (0, 65535), conversions)
