"""Reading images and label maps from disk with clear errors (NumPy only: no TensorFlow).

One rule for pixel values and channels, applied wherever kfcn reads an image (training
folders, `kfcn predict`, `kfcn evaluate`):

- Values stay raw, as stored: uint8 0-255, uint16 0-65535, float as written. A model
  carries its own scaling (`input_range`); training takes it from the files' bit depth
  (`pixel_range`), and an image of another bit depth than the model's is refused
  (`check_bit_depth`). A folder that mixes bit depths is refused (`common_dtype`).
- Channels are colour channels: an alpha channel is dropped when fully opaque (it
  carries nothing) and refused otherwise; colour spaces other than gray and RGB (CMYK,
  YCbCr, ...) become RGB (`read_image`). Grayscale <-> RGB conversion to the model's
  channel count is done and said once per run (`convert_channels`,
  `ChannelConversions`); no other channel conversion is made.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")

# The raw pixel range a model takes for each bit depth that says it by itself.
BIT_DEPTH_RANGES = {np.dtype(np.uint8): (0, 255), np.dtype(np.uint16): (0, 65535)}

LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601, as PIL's convert("L")
RGB_TO_GRAY = "from RGB to grayscale (luma: 0.299 R + 0.587 G + 0.114 B)"
GRAY_TO_RGB = "from grayscale to RGB (the gray value in each channel)"

# PIL modes read as stored; modes converted to RGB by PIL (it undoes Adobe's inverted CMYK JPEGs).
_PIL_AS_STORED = ("L", "LA", "RGB", "RGBA", "I", "F", "I;16", "I;16L", "I;16B", "I;16N")
_PIL_TO_RGB = ("CMYK", "YCbCr", "RGBX")
_PIL_DTYPES = {"I": np.dtype(np.int32), "F": np.dtype(np.float32)}
# TIFF photometric interpretations tifffile returns as pixel values (MINISWHITE 0, MINISBLACK 1, RGB 2);
# PALETTE (3) is read as indices for labels; any other (CMYK, YCbCr, CIELab, ...) goes through PIL.
_TIFF_AS_STORED = (0, 1, 2)
_TIFF_PALETTE = 3
_TIFF_ALPHA = (1, 2)  # ExtraSamples: associated, unassociated alpha


class _Refused(ValueError):
    """A file kfcn reads but will not interpret silently (the message names it and the fix)."""


def read_image(path, palette_indices=True):
    """Reads a PNG, TIFF, JPEG or BMP as (H, W, C) raw pixel values.

    The array keeps the file's values: 0-255 (uint8) for 8-bit, 0-65535 (uint16) for
    16-bit files, float as written. Channels are colour channels, by this table:

    ==================  =====================================================================
    PIL mode / TIFF     read as
    ==================  =====================================================================
    L, I;16*, F, I      1 channel as stored (uint8, uint16, float32, int32)
    RGB                 3 channels (uint8); a 16-bit colour PNG is refused (PIL reads it
                        as 8-bit): convert it to a 16-bit TIFF
    RGBA, LA, RGBa, PA  RGB / gray: the alpha channel is dropped when fully opaque, and
                        refused otherwise (flatten the image onto a background first)
    P (palette)         the palette indices with `palette_indices` (class-index labels),
                        else the palette's RGB (and its transparency, as for RGBA)
    1 (bilevel)         uint8 0/255, or 0/1 with `palette_indices` (a mask's classes)
    CMYK, YCbCr, RGBX   RGB through PIL's `convert("RGB")`, which also undoes the
                        inverted CMYK of Adobe's JPEGs
    other PIL modes     refused, naming the mode (LAB, HSV, La, ...)
    TIFF, one page      as stored (as `tifffile.imread` gives it: MINISWHITE is not
                        inverted); samples (RGB, planar or not) are channels; an
                        ExtraSamples alpha follows the RGBA rule; bilevel as mode 1;
                        other photometrics (CMYK, YCbCr, ...) through PIL as above;
                        palette as mode P
    TIFF, pages         the channels of one image when the file declares them so (an
                        ImageJ or OME-TIFF hyperstack with axes CYX); any other page
                        stack (Z, time, a plain multi-page file) is refused, naming the
                        page count and how to split it: kfcn never picks a page
    ==================  =====================================================================

    Args:
        path: the file.
        palette_indices: read palette and bilevel files as class indices (labels)
            rather than as pictures.

    Raises:
        ValueError: naming the file, if it cannot be read or is one of the refused
            kinds above.

    Example:
    >>> import tempfile, os
    >>> from PIL import Image
    >>> path = os.path.join(tempfile.mkdtemp(), "x.png")
    >>> Image.fromarray(np.zeros((4, 6), np.uint8)).save(path)
    >>> read_image(path).shape
    (4, 6, 1)
    """
    path = Path(path)
    try:
        if _is_tiff(path):
            array = _read_tiff(path, palette_indices)
        else:
            array = _read_with_pil(path, palette_indices)
    except _Refused:
        raise
    except Exception as error:  # PIL and tifffile raise many types for corrupt files
        raise ValueError(f"Cannot read image file {path}: {error}. Is it a valid, complete image?") from error
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3:
        raise ValueError(f"{path}: expected a 2-D image with optional channels, got an array of shape {array.shape}.")
    return array


def _is_tiff(path):
    return path.suffix.lower() in (".tif", ".tiff")


def _read_with_pil(path, palette_indices, opened=None):
    from PIL import Image

    with Image.open(path) if opened is None else opened as image:
        mode = image.mode
        _refuse_sixteen_bit_colour_png(image, path)
        if mode == "1":
            return np.asarray(image, dtype=np.uint8) * (1 if palette_indices else 255)
        if mode in ("P", "PA"):
            if palette_indices:
                return np.asarray(image.getchannel(0) if mode == "PA" else image)
            if mode == "PA" or "transparency" in image.info:
                return _drop_opaque_alpha(np.asarray(image.convert("RGBA")), path, 3)
            return np.asarray(image.convert("RGB"))
        if mode in _PIL_TO_RGB:
            return np.asarray(image.convert("RGB"))
        if mode == "RGBa":  # premultiplied alpha
            return _drop_opaque_alpha(np.asarray(image.convert("RGBA")), path, 3)
        if mode not in _PIL_AS_STORED:
            raise _Refused(
                f"{path} has PIL mode {mode!r}, which kfcn does not read (it reads gray, RGB, 16-bit gray, "
                "float, and converts CMYK and YCbCr). Convert it first, e.g. "
                "Image.open(path).convert('RGB').save('out.png')."
            )
        array = np.asarray(image)
    array = array.astype(array.dtype.newbyteorder("="), copy=False)  # I;16B: native uint16
    if mode in ("LA", "RGBA"):
        array = _drop_opaque_alpha(array, path, array.shape[-1] - 1)
    return array


def _refuse_sixteen_bit_colour_png(image, path):
    if image.format != "PNG" or image.mode not in ("RGB", "RGBA"):
        return
    with open(path, "rb") as file:
        header = file.read(26)  # signature (8), IHDR length and type (8), width, height (8), bit depth
    if len(header) == 26 and header[12:16] == b"IHDR" and header[24] == 16:
        raise _Refused(
            f"{path} is a 16-bit colour PNG, which PIL (kfcn's PNG reader) can only read as 8-bit, losing "
            "precision. Convert it to a 16-bit TIFF (e.g. `magick in.png out.tif`, or cv2.imread(path, "
            "cv2.IMREAD_UNCHANGED)[..., ::-1] saved with tifffile.imwrite), or to an 8-bit PNG."
        )


def _drop_opaque_alpha(array, path, alpha_index):
    """Removes channel `alpha_index` if it is fully opaque everywhere; refuses any transparency."""
    alpha = array[..., alpha_index]
    opaque = np.iinfo(array.dtype).max if np.issubdtype(array.dtype, np.integer) else 1.0
    if np.all(alpha == opaque):
        return np.delete(array, alpha_index, axis=-1)
    see_through = float(np.mean(alpha != opaque))
    raise _Refused(
        f"{path} has {array.shape[-1]} channels, {'gray' if alpha_index == 1 else 'colour'} and an alpha "
        f"(transparency) channel that is not fully opaque ({see_through:.1%} of the pixels are see-through); kfcn "
        "reads colour only and will not drop it silently. Flatten the image onto a "
        "background first, e.g. with PIL: Image.alpha_composite(Image.new('RGBA', image.size, 'black'), "
        "image.convert('RGBA')).convert('RGB'), or save it without transparency."
    )


def _read_tiff(path, palette_indices):
    import tifffile

    with tifffile.TiffFile(path) as tif:
        page, series = tif.pages[0], tif.series[0]
        _check_one_image(path, tif)
        photometric = int(page.photometric)
        if photometric not in _TIFF_AS_STORED and not (photometric == _TIFF_PALETTE and palette_indices):
            from PIL import Image

            return _read_with_pil(path, palette_indices, Image.open(path))
        array = series.asarray()
        axes = series.axes
        extra = tuple(int(kind) for kind in getattr(page, "extrasamples", ()) or ())
    channel_axis = next((axes.index(a) for a in "SC" if a in axes), None)
    if channel_axis is not None:
        array = np.moveaxis(array, channel_axis, -1)
    if array.dtype.kind == "b":
        array = array.astype(np.uint8) * (1 if palette_indices else 255)
    array = array.astype(array.dtype.newbyteorder("="), copy=False)
    if array.ndim == 3:  # ExtraSamples follow the colour samples; drop opaque alpha ones
        first_extra = array.shape[-1] - len(extra)
        for offset in reversed(range(len(extra))):
            if extra[offset] in _TIFF_ALPHA and first_extra >= 1:
                array = _drop_opaque_alpha(array, path, first_extra + offset)
    return array


def _check_one_image(path, tif):
    """Refuses a TIFF whose pages are not one 2-D image with its channels (naming the fix)."""
    series = tif.series[0]
    axes = series.axes
    channel_axes = [a for a in axes if a in "SC"]
    one_image = len(tif.series) == 1 and set(axes) <= set("YXSC") and len(channel_axes) <= 1
    if one_image:
        return
    pages = len(tif.pages)
    stem = path.stem
    raise _Refused(
        f"{path} holds {pages} page(s) in {len(tif.series)} series (axes {axes}, shape {series.shape}); kfcn reads "
        "one 2-D image per file and will not pick a page silently. Save each page as its own file, e.g. python -c "
        f"\"import tifffile; [tifffile.imwrite(f'{stem}_{{i:03d}}.tif', p.asarray()) for i, p in "
        f"enumerate(tifffile.TiffFile('{path}').pages)]\"; or, if the pages are the channels of one image, save them "
        "as an ImageJ hyperstack with axes CYX: tifffile.imwrite(path, array, imagej=True, metadata={'axes': 'CYX'})."
    )


def stored_dtype(path):
    """The dtype `read_image` returns for a file, read off its header (the pixels are not decoded).

    Example:
    >>> import tempfile, os
    >>> from PIL import Image
    >>> path = os.path.join(tempfile.mkdtemp(), "x.png")
    >>> Image.fromarray(np.zeros((4, 6), np.uint16)).save(path)
    >>> stored_dtype(path)
    dtype('uint16')
    """
    path = Path(path)
    try:
        if _is_tiff(path):
            import tifffile

            with tifffile.TiffFile(path) as tif:
                page, dtype = tif.pages[0], np.dtype(tif.series[0].dtype)
                if int(page.photometric) not in _TIFF_AS_STORED and int(page.photometric) != _TIFF_PALETTE:
                    return np.dtype(np.uint8)  # converted to RGB by PIL
                return np.dtype(np.uint8) if dtype.kind == "b" else dtype.newbyteorder("=")
        from PIL import Image

        with Image.open(path) as image:
            _refuse_sixteen_bit_colour_png(image, path)
            if image.mode.startswith("I;16"):
                return np.dtype(np.uint16)
            return _PIL_DTYPES.get(image.mode, np.dtype(np.uint8))
    except _Refused:
        raise
    except Exception as error:
        raise ValueError(f"Cannot read image file {path}: {error}. Is it a valid, complete image?") from error


def _depth_name(dtype):
    return {np.dtype(np.uint8): "8-bit (uint8)", np.dtype(np.uint16): "16-bit (uint16)"}.get(dtype, str(dtype))


def common_dtype(paths):
    """The one dtype every image file of `paths` is read with; mixed bit depths are refused.

    Raises:
        ValueError: naming one file of each of two dtypes, e.g. an 8-bit PNG beside a
            16-bit TIFF: a model takes one raw pixel range.

    Example:
    >>> from kfcn.samples import isbi2012_dir
    >>> common_dtype(sorted((isbi2012_dir() / "images").glob("*.png")))
    dtype('uint8')
    """
    first = {}
    for path in paths:
        first.setdefault(stored_dtype(path), Path(path))
    if len(first) > 1:
        (dtype_a, path_a), (dtype_b, path_b) = list(first.items())[:2]
        raise ValueError(
            f"The images mix bit depths: {path_a} is {_depth_name(dtype_a)} but {path_b} is {_depth_name(dtype_b)}. "
            "A model takes one raw pixel range: convert the files to one bit depth (e.g. save the 8-bit ones as "
            "16-bit after stretching them as the others were), or use them in separate runs."
        )
    return next(iter(first), None)


def pixel_range(paths, option="input_range=(low, high)"):
    """`(low, high)` of the raw pixel values of image files, from their bit depth.

    (0, 255) for 8-bit files, (0, 65535) for 16-bit ones: the `input_range` of a model
    trained on them. Float or 32-bit integer files do not say their range, and data
    that fill only part of their type (12-bit cameras in 16-bit files) should give it
    explicitly: `option` names the setting that does, for the error.

    Raises:
        ValueError: mixed bit depths (see `common_dtype`), or files whose dtype does not
            tell the range (float, int32), naming a file and `option`.

    Example:
    >>> from kfcn.samples import isbi2012_dir
    >>> pixel_range(sorted((isbi2012_dir() / "images").glob("*.png")))
    (0, 255)
    """
    paths = [Path(path) for path in paths]
    dtype = common_dtype(paths)
    if dtype in BIT_DEPTH_RANGES:
        return BIT_DEPTH_RANGES[dtype]
    raise ValueError(
        f"{paths[0]} holds {dtype} pixels, whose range kfcn cannot tell from the file type (only 8-bit and 16-bit "
        f"files say theirs). Give the raw pixel range explicitly with {option}, e.g. 0,1 for images scaled to "
        "[0, 1] (the model maps that range to [0, 1])."
    )


def check_bit_depth(dtype, input_range, path="image"):
    """Refuses an integer image whose bit depth is not the one a model takes.

    An 8-bit image into a model for 16-bit data (`input_range` above 255) would fill at
    most 0.4 % of the range it was trained on, and a 16-bit image into a model for
    8-bit data would be out of range, or, if dim, read on another scale than its
    training images. Float images are left to the value check of prediction (they say
    no bit depth); `input_range=None` (a model without input scaling) checks nothing.

    Example:
    >>> check_bit_depth(np.uint8, (0, 255), "a.png")  # fine
    >>> check_bit_depth(np.uint8, (0, 65535), "a.png")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: a.png is an 8-bit image (uint8, 0-255), but the model takes raw pixel values in [0, 65535] ...
    """
    if input_range is None:
        return
    low, high = (float(value) for value in input_range)
    dtype = np.dtype(dtype)
    if dtype == np.uint8 and high > 256:
        raise ValueError(
            f"{path} is an 8-bit image (uint8, 0-255), but the model takes raw pixel values in [{low:g}, {high:g}] "
            f"(its input_range: it was trained on data of that depth), where the image would fill at most "
            f"{255 / (high - low):.1%}. Give it images of the bit depth it was trained on, or train a model on "
            "8-bit images (kfcn train takes the range from the files)."
        )
    if dtype == np.uint16 and high <= 256:
        raise ValueError(
            f"{path} is a 16-bit image (uint16), outside the raw pixel range [{low:g}, {high:g}] that the model was "
            "built for (its input_range: 8-bit data). Give it 8-bit images as it was trained on, or train a model "
            "on 16-bit images (kfcn train takes the range from the files)."
        )


def as_float32(image):
    """Returns the image as float32 raw pixel values: the numbers stored in the file, not rescaled.

    kfcn never rescales images: 8-bit pixels stay 0-255, 16-bit pixels 0-65535; the
    model carries its own input scaling (`input_range=` of the model builders).

    Example:
    >>> as_float32(np.array([[0, 65535]], np.uint16)).tolist()
    [[0.0, 65535.0]]
    """
    return np.asarray(image).astype("float32")


def list_images(folder):
    """Image files of a folder keyed by file stem, sorted; two files with one stem (`a.png`, `a.tif`) raise.

    Example:
    >>> from kfcn.samples import isbi2012_dir
    >>> list(list_images(isbi2012_dir() / "images"))[:2]
    ['slice_00', 'slice_01']
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"Folder {folder} does not exist.")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"Folder {folder} has no image files ({', '.join(IMAGE_SUFFIXES)}).")
    by_stem = {}
    for path in files:
        if path.stem in by_stem:
            raise ValueError(
                f"Folder {folder} has two files named {path.stem!r}: {by_stem[path.stem].name} and {path.name}. "
                "Files pair by name without extension; remove or rename one of them."
            )
        by_stem[path.stem] = path
    return by_stem


class ChannelConversions:
    """The channel conversions of one run, said in one line at its end rather than per file.

    Example:
    >>> conversions = ChannelConversions()
    >>> gray = convert_channels(np.zeros((2, 2, 3), np.uint8), 1, "a.png", conversions)
    >>> print(conversions.summary())
    converted 1 image(s) from RGB to grayscale (luma: 0.299 R + 0.587 G + 0.114 B), e.g. a.png
    """

    def __init__(self):
        self.files = {}  # description -> paths

    def add(self, description, path):
        self.files.setdefault(description, []).append(Path(str(path)))

    def summary(self):
        """One line naming how many files were converted and how; None if none was."""
        if not self.files:
            return None
        return "; ".join(
            f"converted {len(paths)} image(s) {description}, e.g. {paths[0].name}"
            for description, paths in self.files.items()
        )

    def warn(self, stacklevel=2):
        """Issues the summary as one `UserWarning` (nothing if no file was converted)."""
        if self.files:
            warnings.warn(self.summary(), UserWarning, stacklevel=stacklevel + 1)


def convert_channels(image, channels, path="image", conversions=None):
    """Converts an (H, W, C) image to a model's 1 (grayscale) or 3 (RGB) channels, and says so.

    RGB becomes gray by its luma (0.299 R + 0.587 G + 0.114 B, as PIL's `convert("L")`,
    rounded back to the image's integer dtype); gray becomes RGB by repeating it. No
    other conversion is made: any other channel count is refused. Each conversion is
    recorded in `conversions` (a `ChannelConversions`, for one line per run) or, without
    one, issued as a warning.

    Example:
    >>> convert_channels(np.full((2, 2, 3), 10, np.uint8), 1, conversions=ChannelConversions()).shape
    (2, 2, 1)
    """
    have = image.shape[-1]
    if have == channels:
        return image
    if channels == 1 and have == 3:
        luma = image @ np.array(LUMA, "float32")
        if np.issubdtype(image.dtype, np.integer):
            luma = np.round(luma).astype(image.dtype)
        image, description = luma[..., None], RGB_TO_GRAY
    elif channels == 3 and have == 1:
        image, description = np.repeat(image, 3, axis=-1), GRAY_TO_RGB
    else:
        raise ValueError(
            f"{path} has {have} channel(s) but the model takes {channels}; kfcn converts only grayscale <-> RGB. "
            f"Give images with {channels} channel(s)."
        )
    if conversions is None:
        warnings.warn(f"{path}: converted {description}", UserWarning, stacklevel=2)
    else:
        conversions.add(description, path)
    return image


def read_model_input(path, channels, input_range=None, conversions=None):
    """Reads an image file for a model: raw pixels, its bit depth checked, its channels converted.

    The one reader of `kfcn predict` and `kfcn evaluate` (and of any tool that feeds files to a model):
    `read_image` (as a picture, not palette indices), `check_bit_depth` against the
    model's `input_range`, then `convert_channels` to its `channels`.

    Example:
    >>> from kfcn.samples import isbi2012_dir
    >>> image = read_model_input(isbi2012_dir() / "images" / "slice_00.png", 1, (0, 255))
    >>> image.shape, image.dtype
    ((512, 512, 1), dtype('uint8'))
    """
    image = read_image(path, palette_indices=False)
    check_bit_depth(image.dtype, input_range, path)
    return convert_channels(image, channels, path, conversions)
