"""A static web page that segments images in the browser with the model's TFLite file (LiteRT.js).

`web(model, folder)` writes a self-contained folder: `index.html`, the page's scripts and
style, `model.tflite` (float16 by default) with its model card, `model.json` (what the
page needs of the contract) and the LiteRT.js runtime (`@litertjs/core`, its JavaScript
and WebAssembly), so the page works offline from any static server
(`kfcn serve-web FOLDER`, kfcn/cli/serve_web.py).

LiteRT.js (2.5.3) runs a TFLite file only at the input shape stored in it: it refuses a
dynamic-size input, and a file whose input shape is patched to another size is refused
too, since the in-graph padding makes its tensors dynamic. So the file takes one fixed
tile (`tile_size`, 512x512 by default) and the page predicts every image tile by tile
by `kfcn.inference`'s rule for "same"-padded models, with `blend="none"` and the
receptive-field overlap: tiles start at multiples of the stride, the last one flush
with the image mirrored (reflect) up to the next multiple of the stride, and each
keeps its centre away from the overlap. An image that fits in one tile is mirrored up
to the tile. For an image at least a tile high and wide, or one that the tile's size
rounds up to the next multiple of the stride (a 512x512 ISBI slice with the default
tile; a 480x360 CamVid frame with `tile_size=(368, 480)`), that is exactly
`kfcn.inference.predict`; in a smaller image, the pixels within a receptive field of
the bottom or right border see more mirrored context than `predict` pads.

The runtime is about 20 MB of WebAssembly, too much to ship in kfcn's package or
repository: `web` copies it from an npm install of the version pinned in the
repository's `web/package-lock.json` (`RUNTIME_VERSION`), found in this order: the
`runtime` argument (a `node_modules` folder), the package's vendored copy
(`kfcn/export/web_assets/litert/`, which `make web-runtime` fills, so a wheel built
after it carries the runtime), the source checkout's `web/node_modules`.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

from kfcn.atomic import atomic_path, check_writable
from kfcn.export.contract import checked_metadata, exportable, model_card_path, serving_contract

RUNTIME_PACKAGE = "@litertjs/core"
RUNTIME_VERSION = "2.5.3"  # as pinned in web/package-lock.json
# The runtime files the page loads: path in the exported folder -> path under `node_modules`.
# LiteRT.js picks the relaxed-SIMD build where the browser has it, else the compatible one.
RUNTIME_FILES = {
    "litert/core.js": "@litertjs/core/dist/index.js",
    "litert/wasm-utils.js": "@litertjs/wasm-utils/dist/index.js",
    "litert/wasm/litert_wasm_internal.js": "@litertjs/core/wasm/litert_wasm_internal.js",
    "litert/wasm/litert_wasm_internal.wasm": "@litertjs/core/wasm/litert_wasm_internal.wasm",
    "litert/wasm/litert_wasm_compat_internal.js": "@litertjs/core/wasm/litert_wasm_compat_internal.js",
    "litert/wasm/litert_wasm_compat_internal.wasm": "@litertjs/core/wasm/litert_wasm_compat_internal.wasm",
}
ASSETS = Path(__file__).resolve().parent / "web_assets"
PAGE_FILES = ("index.html", "kfcn_page.js", "kfcn_plan.js", "style.css")
VENDORED_RUNTIME = ASSETS / "litert"
CHECKOUT_NODE_MODULES = Path(__file__).resolve().parents[2] / "web" / "node_modules"
MODEL_FILE = "model.tflite"
PAGE_CONTRACT_FILE = "model.json"
DEFAULT_TILE = 512
QUANTIZATIONS = ("float16", "int8", "dynamic", "float32")
RUNTIME_HELP = (
    f"The page needs the LiteRT.js runtime ({RUNTIME_PACKAGE} {RUNTIME_VERSION}, about 20 MB of WebAssembly, not "
    "shipped with kfcn). In a kfcn source checkout run `make web-runtime` (npm ci in web/); elsewhere run "
    f"`npm install {RUNTIME_PACKAGE}@{RUNTIME_VERSION}` in any folder and pass its node_modules as runtime "
    "(--runtime FOLDER/node_modules)."
)


def runtime_files(runtime=None):
    """Where each runtime file of the page comes from: `{path in the page folder: source file}`.

    Args:
        runtime: a `node_modules` folder holding `@litertjs/core` (or the folder above it), or
            None to use the vendored copy, else the source checkout's `web/node_modules`.

    Raises:
        FileNotFoundError: no complete runtime of the pinned version was found; the message
            says how to get one.

    Example:
    >>> try:
    ...     runtime_files("/nonexistent")
    ... except FileNotFoundError as error:
    ...     print(str(error).split(";")[0])
    /nonexistent holds no @litertjs/core (expected /nonexistent/@litertjs/core/package.json)
    """
    if runtime is not None:
        folder = Path(runtime)
        if (folder / "node_modules" / RUNTIME_PACKAGE).is_dir():
            folder = folder / "node_modules"
        return _node_modules_files(folder)
    if all((VENDORED_RUNTIME / name.removeprefix("litert/")).is_file() for name in RUNTIME_FILES):
        return {name: VENDORED_RUNTIME / name.removeprefix("litert/") for name in RUNTIME_FILES}
    if (CHECKOUT_NODE_MODULES / RUNTIME_PACKAGE).is_dir():
        return _node_modules_files(CHECKOUT_NODE_MODULES)
    raise FileNotFoundError(f"No LiteRT.js runtime found. {RUNTIME_HELP}")


def _node_modules_files(folder):
    package = folder / RUNTIME_PACKAGE / "package.json"
    if not package.is_file():
        raise FileNotFoundError(f"{folder} holds no {RUNTIME_PACKAGE} (expected {package}); {RUNTIME_HELP}")
    version = json.loads(package.read_text()).get("version")
    if version != RUNTIME_VERSION:
        raise FileNotFoundError(
            f"{folder} holds {RUNTIME_PACKAGE} {version}, but the page is built and tested with {RUNTIME_VERSION}; "
            f"run `npm install {RUNTIME_PACKAGE}@{RUNTIME_VERSION}` there (or `make web-runtime` in a checkout)."
        )
    files = {name: folder / source for name, source in RUNTIME_FILES.items()}
    missing = [str(path) for path in files.values() if not path.is_file()]
    if missing:
        raise FileNotFoundError(f"The runtime in {folder} is incomplete (missing {', '.join(missing)}); {RUNTIME_HELP}")
    return files


def vendor_runtime(node_modules, destination=VENDORED_RUNTIME):
    """Copies the page's runtime files from an npm install into `destination` (the package's vendored
    copy by default: `make web-runtime`), so exports, and wheels built afterwards, need no Node.js.

    Returns:
        The destination folder.

    Example:
    >>> vendor_runtime("web/node_modules")  # doctest: +SKIP
    """
    files = runtime_files(node_modules)
    destination = Path(destination)
    with atomic_path(destination) as temporary:
        for name, source in files.items():
            target = temporary / name.removeprefix("litert/")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
    return destination


def page_tile(model, contract, tile_size=None):
    """The fixed `(height, width)` tile of the page's TFLite file and the `(rows, cols)` overlap of its tiles.

    The tile is `tile_size` (default 512 per side), checked against the sizes the
    network takes; the overlap is `kfcn.inference.predict_tiled`'s default for
    "same"-padded models: twice the receptive-field radius (a quarter tile for a global
    receptive field). A model built for one size keeps that size.

    Example:
    >>> from kfcn.models import unet
    >>> model = unet((None, None, 1), num_classes=1, filters=2, depth=2)
    >>> page_tile(model, serving_contract(model), (64, 96))
    ((64, 96), (44, 44))
    """
    from kfcn.analysis.geometry import model_geometry

    geometry = model_geometry(model)
    if contract.fixed_size is not None:
        if tile_size is not None and tuple(tile_size) != contract.fixed_size:
            raise ValueError(
                f"The model was built for input {contract.fixed_size[0]}x{contract.fixed_size[1]}, so its page tile "
                f"is that size; drop the tile size (--input-size) or pass {contract.fixed_size[0]} "
                f"{contract.fixed_size[1]}."
            )
        tile = contract.fixed_size
    else:
        tile = (DEFAULT_TILE, DEFAULT_TILE) if tile_size is None else tuple(int(side) for side in tile_size)
    for side in tile:
        if side < 1 or (side - contract.minimum) % contract.multiple or side < contract.minimum:
            nearest = max(contract.minimum, math.ceil(side / contract.multiple) * contract.multiple)
            raise ValueError(
                f"Tile side {side} does not suit the network: it takes sides {contract.minimum} + k x "
                f"{contract.multiple}; pass {nearest} (--input-size)."
            )
    overlap = tuple(side // 4 for side in tile) if math.isinf(geometry.context) else (2 * int(geometry.context),) * 2
    for side, shared in zip(tile, overlap):
        if (side - shared) // contract.multiple * contract.multiple < contract.multiple:
            wanted = math.ceil((shared + contract.multiple) / contract.multiple) * contract.multiple
            raise ValueError(
                f"A tile of {side} px leaves less than one stride ({contract.multiple} px) between tiles once the "
                f"receptive-field overlap ({shared} px) is kept; use tiles of at least {wanted} px (--input-size)."
            )
    return tile, overlap


def page_contract(model, contract, tile, overlap, quantization, card):
    """The `model.json` the page reads: input channels and pixel range, tile and overlap, output kind, card.

    Example:
    >>> from kfcn.models import unet
    >>> model = unet((None, None, 1), num_classes=1, filters=2, depth=2)
    >>> contract = serving_contract(model)
    >>> page = page_contract(model, contract, (64, 64), (36, 36), "float16", {})
    >>> page["input"]["channels"], page["output"]["head"], page["tile"], page["stride"]
    (1, 'binary', [64, 64], 4)
    """
    low_high = None if contract.input_range is None else [float(v) for v in contract.input_range]
    return {
        "kfcn_page": 1,
        "model_name": model.name,
        "model_file": MODEL_FILE,
        "model_card_file": model_card_path(MODEL_FILE).name,
        "quantization": quantization,
        "runtime": {"package": RUNTIME_PACKAGE, "version": RUNTIME_VERSION},
        "input": {"name": contract.input_name, "channels": contract.channels, "input_range": low_high},
        "output": {"name": contract.output_name, "channels": contract.output_channels, "head": contract.head},
        "tile": list(tile),
        "overlap": list(overlap),
        "stride": contract.multiple,
        "card": card,
    }


def web(
    model,
    folder,
    quantize="float16",
    tile_size=None,
    representative_data=None,
    runtime=None,
    overwrite=False,
    metadata=None,
):
    """Writes a static web page that segments images in the browser with `model`: see the module's docstring.

    Args:
        model: a functional or Sequential Keras image-to-image model with "same" padding and
            one image input of gray (1) or RGB (3) channels of 8-bit pixels (or no `input_range`).
        folder: the folder to write (atomically: it appears complete or not at all).
        quantize: "float16" (default), "int8" (needs `representative_data`), "dynamic" or "float32".
        tile_size: `(height, width)` of the TFLite file's fixed input, default 512x512.
        representative_data: raw images to calibrate int8 on (see `kfcn.export.tflite`).
        runtime: a `node_modules` folder with `@litertjs/core` (see `runtime_files`).
        overwrite: replace an existing folder.
        metadata: a dict of JSON values for the model card (e.g. held-out scores); the page shows it.

    Returns:
        A dict report: folder, the TFLite file's report, tile, overlap, bytes of the folder.

    Example:
    >>> from kfcn.models import unet
    >>> report = web(unet((None, None, 1), filters=2, depth=2), "page")  # doctest: +SKIP
    """
    from kfcn.export.tflite import tflite

    metadata = checked_metadata(metadata)
    if quantize not in QUANTIZATIONS:
        raise ValueError(f"`quantize` for the web page is one of {QUANTIZATIONS}; got {quantize!r}.")
    model = exportable(model)
    contract = serving_contract(model)
    _check_page_can_serve(contract)
    tile, overlap = page_tile(model, contract, tile_size)
    files = runtime_files(runtime)
    folder = Path(folder)
    if folder.exists() and not overwrite:
        raise FileExistsError(f"{folder} exists; pass overwrite=True (--overwrite) to replace it.")
    check_writable(folder.parent, "output folder")
    with atomic_path(folder, overwrite=overwrite) as temporary:
        temporary.mkdir()
        report = tflite(
            model,
            temporary / MODEL_FILE,
            None if quantize == "float32" else quantize,
            representative_data,
            input_shape=tile,
            metadata=metadata,
        )
        card = json.loads(model_card_path(temporary / MODEL_FILE).read_text())
        page = page_contract(model, contract, tile, overlap, quantize, card)
        (temporary / PAGE_CONTRACT_FILE).write_text(json.dumps(page, indent=2, allow_nan=False) + "\n")
        for name in PAGE_FILES:
            shutil.copyfile(ASSETS / name, temporary / name)
        for name, source in files.items():
            (temporary / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, temporary / name)
        size = sum(path.stat().st_size for path in temporary.rglob("*") if path.is_file())
    report = {**report, "path": str(folder / MODEL_FILE), "model_card": str(model_card_path(folder / MODEL_FILE))}
    return {"folder": str(folder), "tflite": report, "tile": list(tile), "overlap": list(overlap), "bytes": size}


def _check_page_can_serve(contract):
    """Refuses what the page cannot feed: valid padding, extra inputs, 16-bit pixels, channels other than 1 or 3."""
    if contract.margin:
        raise ValueError(
            f"The web page tiles 'same'-padded models; this one uses valid padding (a {contract.margin}-px margin "
            "per side). Export it as TFLite (--format tflite) and tile with kfcn.inference instead."
        )
    if contract.frame_input is not None:
        raise ValueError(
            "The model takes a coordinate frame input beside the image, which the web page does not feed; export "
            "a model with one image input."
        )
    if contract.pixel_dtype == "uint16" or (contract.input_range is not None and contract.pixel_dtype is None):
        raise ValueError(
            f"The model takes raw pixels in {list(contract.input_range)}, but browsers decode images to 8 bits per "
            "channel, so the page could only feed it 8-bit pixels. Use kfcn predict or the TFLite file for 16-bit "
            "data."
        )
    if contract.channels not in (1, 3):
        raise ValueError(
            f"The model takes {contract.channels} channels; the page feeds gray (1) or RGB (3) images, as kfcn "
            "predict does."
        )
