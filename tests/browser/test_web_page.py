"""The exported web page in a real browser (Debian's Chromium, driven by playwright-core from Node.js).

Each page is exported with `kfcn.export.web`, served from localhost by `kfcn serve-web`'s
server, and driven by `web/test/drive_page.mjs`, which picks images in the page and reads
back what it computed (the probabilities or density, the count it shows, the PNG behind
its download button). The numbers are checked against `kfcn.inference.predict` on the
same image. `make test-web` runs this module: it installs Chromium and web/node_modules
first, and sets KFCN_BROWSER_TESTS=1 (without it the module is skipped, so `make test` stays fast).
"""

import json
import os
import shutil
import subprocess
import threading
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from kfcn.cli.serve_web import serve
from kfcn.export.web import web
from kfcn.image_io import read_model_input
from kfcn.inference import predict
from kfcn.inference.plan import AxisPlan, run_plan
from kfcn.inference.runner import TileRunner
from kfcn.samples import isbi2012_dir, shipped_model_path
from tests.tolerances import float16_weights_atol, reordered_network_atol

ROOT = Path(__file__).resolve().parents[2]
DRIVER = ROOT / "web" / "test" / "drive_page.mjs"
NODE_MODULES = ROOT / "web" / "node_modules"
VGG_CELLS = ROOT.parent / "shared" / "datasets" / "vgg_cells"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")

pytestmark = [
    pytest.mark.tensorflow_only(reason="exports TFLite"),
    pytest.mark.skipif(
        os.environ.get("KFCN_BROWSER_TESTS") != "1",
        reason="the browser test runs with `make test-web`, which installs Chromium and web/node_modules",
    ),
]


def _drive(folder, output, images, *options):
    """Serves `folder` on localhost, runs the driver on `images`, returns {stem: its report}."""
    for needed, how in ((CHROMIUM, "apt-get install chromium"), (NODE_MODULES, "npm ci in web/")):
        if not Path(needed).exists():
            pytest.fail(f"{needed} is missing: `make test-web` installs it ({how}).")
    server = serve(folder, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        command = ["node", str(DRIVER), url, str(output), *options, *map(str, images)]
        environment = {**os.environ, "CHROMIUM": CHROMIUM}
        done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=environment)
        assert done.returncode == 0, done.stderr[-3000:]
    finally:
        server.shutdown()
        server.server_close()
    requests = json.loads((output / "requests.json").read_text())
    assert requests["outside"] == [], f"the page fetched from outside its folder: {requests['outside']}"
    return {Path(image).stem: json.loads((output / f"{Path(image).stem}.json").read_text()) for image in images}


def _page_values(output, stem, shape):
    return np.fromfile(output / f"{stem}.f32", dtype="float32").reshape(shape)


@pytest.fixture(scope="module")
def isbi(tmp_path_factory):
    """The shipped ISBI U-Net's page (float32 TFLite: compared with Keras within reordering) and its test images."""
    folder = tmp_path_factory.mktemp("isbi")
    images = folder / "images"
    images.mkdir()
    slices = [np.asarray(Image.open(isbi2012_dir() / "images" / f"slice_2{k}.png")) for k in range(4)]
    Image.fromarray(slices[0]).save(images / "slice.png")
    mosaic = np.block([[slices[0], slices[1]], [slices[2], slices[3]]])
    Image.fromarray(mosaic[3:533, 5:782]).save(images / "tiled.png")  # 530 x 777: two tiles a side
    Image.fromarray(slices[1][:300, :200]).save(images / "small.png")  # smaller than a tile
    tinted = np.stack([slices[2], (slices[2] * 0.8).astype("uint8"), slices[2] // 2], axis=-1)
    Image.fromarray(tinted).save(images / "rgb.png")  # RGB into a gray model: the luma rule
    Image.fromarray(slices[0].astype("uint16") * 257).save(images / "sixteen.png")  # 16-bit gray PNG
    rgba = np.dstack([tinted, np.where(np.arange(512)[:, None] < 256, 255, 128).repeat(512, 1).astype("uint8")])
    Image.fromarray(rgba, "RGBA").save(images / "transparent.png")  # wrong channels: see-through alpha
    Image.fromarray(slices[0]).save(images / "slice_tiff.tif")
    Image.fromarray(slices[3]).save(images / "jpeg.jpg", quality=90)  # the browser's JPEG decoder against PIL's
    model = keras.saving.load_model(shipped_model_path())
    page = folder / "page"
    web(model, page, quantize="float32", runtime=NODE_MODULES)
    names = ["slice", "tiled", "small", "rgb", "sixteen", "transparent", "slice_tiff", "jpeg"]
    paths = [next(images.glob(f"{name}.*")) for name in names]
    reports = _drive(page, folder / "out", paths)
    return model, images, folder / "out", reports


def test_page_equals_predict_on_a_slice_a_tiled_image_and_a_jpeg(isbi):
    model, images, output, reports = isbi
    for stem in ("slice", "tiled", "jpeg"):
        assert reports[stem]["state"] == "done", reports[stem]["message"]
        image = read_model_input(next(images.glob(f"{stem}.*")), 1, (0, 255))
        reference = predict(model, image)
        page = _page_values(output, stem, reference.shape)
        np.testing.assert_allclose(page, reference, atol=reordered_network_atol(model, reference))
    assert reports["slice"]["result"]["tiles"] == 1 and reports["tiled"]["result"]["tiles"] == 4
    assert "ms for 512x512 px" in reports["slice"]["time"]


def test_downloaded_mask_is_the_pages_threshold_as_kfcn_predict_writes_it(isbi):
    model, images, output, reports = isbi
    assert reports["slice"]["download"] == "slice_mask.png"
    mask = Image.open(output / "slice_mask.png")
    assert mask.mode == "L"  # one channel, as kfcn predict's STEM.png
    page = _page_values(output, "slice", (512, 512, 1))[..., 0]
    np.testing.assert_array_equal(np.asarray(mask), np.where(page > 0.5, 255, 0))
    reference = predict(model, read_model_input(images / "slice.png", 1, (0, 255)))[..., 0]
    sure = np.abs(reference - 0.5) > reordered_network_atol(model, reference)
    np.testing.assert_array_equal((np.asarray(mask) > 0)[sure], (reference > 0.5)[sure])


def test_small_image_follows_the_tiling_rule_and_predict_away_from_its_far_border(isbi):
    """An image smaller than the tile is mirrored up to the tile (LiteRT.js runs one input shape):
    exactly kfcn.inference's plan for that tile; `predict` pads less, which changes only the pixels
    within the receptive field of the bottom and right borders."""
    model, images, output, reports = isbi
    assert reports["small"]["state"] == "done", reports["small"]["message"]
    image = read_model_input(images / "small.png", 1, (0, 255)).astype("float32")
    plans = [AxisPlan(size, 512, 512, 0, 16, 200, "none") for size in image.shape[:2]]
    reference = run_plan(TileRunner(model), image, *plans, 1, None, None, progress=False)
    page = _page_values(output, "small", reference.shape)
    atol = reordered_network_atol(model, reference)
    np.testing.assert_allclose(page, reference, atol=atol)
    whole = predict(model, image)
    np.testing.assert_allclose(page[:200, :100], whole[:200, :100], atol=atol)


def test_rgb_image_is_converted_to_gray_as_kfcn_predict_converts_it(isbi):
    model, images, output, reports = isbi
    assert reports["rgb"]["state"] == "done" and "from RGB to grayscale" in reports["rgb"]["message"]
    reference = predict(model, read_model_input(images / "rgb.png", 1, (0, 255)))
    page = _page_values(output, "rgb", reference.shape)
    np.testing.assert_allclose(page, reference, atol=reordered_network_atol(model, reference))


@pytest.mark.parametrize(
    "stem, words",
    [
        ("sixteen", "is a 16-bit PNG: the model takes raw pixel values [0, 255] (its input_range: 8-bit data)"),
        ("transparent", "has 4 channels, colour and an alpha (transparency) channel that is not fully opaque"),
        ("slice_tiff", "is a TIFF file, which this browser cannot decode"),
    ],
)
def test_wrong_inputs_are_refused_in_words(isbi, stem, words):
    _, _, output, reports = isbi
    assert reports[stem]["state"] == "refused"
    assert words in reports[stem]["message"]
    assert not (output / f"{stem}.f32").exists()


def test_counter_page_shows_the_density_sum_and_equals_predict(tmp_path):
    """The shipped cell counter, float16 (the default): density within the float16 tolerance of
    `predict`, the count shown the sum of the density the page computed."""
    model = keras.saving.load_model(ROOT / "saved_models" / "vgg_cells_counter.keras")
    web(model, tmp_path / "page", tile_size=(256, 256), runtime=NODE_MODULES)
    images = [isbi2012_dir() / "images" / "slice_20.png"]  # gray into an RGB model: repeated channels
    if VGG_CELLS.is_dir():
        images.append(VGG_CELLS / "images" / "001cell.png")
    reports = _drive(tmp_path / "page", tmp_path / "out", images)
    for path in images:
        report = reports[path.stem]
        assert report["state"] == "done", report["message"]
        reference = predict(model, read_model_input(path, 3, (0, 255)))
        page = _page_values(tmp_path / "out", path.stem, reference.shape)
        atol = float16_weights_atol(model, reference) + reordered_network_atol(model, reference)
        np.testing.assert_allclose(page, reference, atol=atol)
        shown = float(report["count"].rsplit(":", 1)[1])
        assert shown == pytest.approx(float(page.sum(dtype="float64")), abs=0.005)
        assert shown == pytest.approx(float(reference.sum(dtype="float64")), rel=0.01)
        density = np.asarray(Image.open(tmp_path / "out" / report["download"]))
        expected = np.clip(page[..., 0] / np.abs(page).max(), 0, 1) * 255
        assert np.abs(density.astype("float32") - expected).max() <= 0.5 + 1e-3
    assert "from grayscale to RGB" in reports["slice_20"]["message"]


def test_int8_page_computes_what_litert_computes_in_python(tmp_path):
    """int8 by choice: the page's LiteRT.js (WebAssembly) gives the int8 file's own output, as LiteRT's
    Python interpreter does (the int8 file's distance from Keras is in saved_models/README.md)."""
    from kfcn.export.tflite import interpreter_class

    model = keras.saving.load_model(shipped_model_path())
    calibration = [np.asarray(Image.open(path)) for path in sorted((isbi2012_dir() / "images").glob("*.png"))[:8]]
    web(model, tmp_path / "page", quantize="int8", representative_data=calibration, runtime=NODE_MODULES)
    path = isbi2012_dir() / "images" / "slice_22.png"
    reports = _drive(tmp_path / "page", tmp_path / "out", [path])
    assert reports["slice_22"]["state"] == "done", reports["slice_22"]["message"]
    image = read_model_input(path, 1, (0, 255)).astype("float32")
    runner = interpreter_class()(model_path=str(tmp_path / "page" / "model.tflite")).get_signature_runner()
    reference = runner(pixels_0_255=image[None])["probabilities"][0]
    page = _page_values(tmp_path / "out", "slice_22", reference.shape)
    np.testing.assert_allclose(page, reference, atol=reordered_network_atol(model, reference))


@pytest.fixture(autouse=True, scope="module")
def _node_available():
    if shutil.which("node") is None:
        pytest.fail("Node.js is missing: the browser test drives Chromium from Node (playwright-core).")
