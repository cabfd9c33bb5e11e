"""`kfcn export --format web`: the folder it writes, the contract the page reads, its refusals,
`kfcn serve-web`, and the page's own rules (kfcn_plan.js) run in Node.js against kfcn's Python.

The page in a real browser: tests/browser/test_web_page.py (`make test-web`).
"""

import json
import shutil
import subprocess
import sys
import textwrap
import threading
import urllib.request
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from kfcn.analysis.geometry import model_geometry
from kfcn.atomic import PARTIAL_MARK
from kfcn.cli import build_parser, main
from kfcn.cli.serve_web import serve
from kfcn.export.contract import serving_contract
from kfcn.export.web import (
    ASSETS,
    PAGE_FILES,
    RUNTIME_FILES,
    RUNTIME_VERSION,
    page_tile,
    runtime_files,
    vendor_runtime,
    web,
)
from kfcn.image_io import convert_channels
from kfcn.inference.plan import AxisPlan, _reflect
from kfcn.models import plain_cnn, unet
from kfcn.saving import save_model

pytestmark = pytest.mark.tensorflow_only(reason="export tests run on TensorFlow")
NODE = shutil.which("node")


@pytest.fixture(scope="module")
def runtime(tmp_path_factory):
    """A stand-in npm install of the pinned runtime: the files the page copies, a few bytes each."""
    node_modules = tmp_path_factory.mktemp("runtime") / "node_modules"
    for source in RUNTIME_FILES.values():
        (node_modules / source).parent.mkdir(parents=True, exist_ok=True)
        (node_modules / source).write_text(f"// {source}\n")
    package = {"name": "@litertjs/core", "version": RUNTIME_VERSION}
    (node_modules / "@litertjs" / "core" / "package.json").write_text(json.dumps(package))
    return node_modules


def small_unet():
    keras.utils.set_random_seed(0)
    return unet((None, None, 1), num_classes=1, filters=2, depth=2)


def test_export_writes_a_self_contained_page(tmp_path, runtime):
    model = small_unet()
    report = web(model, tmp_path / "page", tile_size=(64, 48), runtime=runtime, metadata={"dice": 0.9})
    page = tmp_path / "page"
    written = {path.relative_to(page).as_posix() for path in page.rglob("*") if path.is_file()}
    expected = {*PAGE_FILES, *RUNTIME_FILES, "model.tflite", "model.json", "model.tflite.kfcn_model_card.json"}
    assert written == expected
    assert report["tile"] == [64, 48] and report["tflite"]["input"]["shape"] == [1, 64, 48, 1]
    assert report["tflite"]["quantization"] == "float16"  # the default
    contract = json.loads((page / "model.json").read_text())
    context = model_geometry(model).context
    assert contract["tile"] == [64, 48] and contract["overlap"] == [2 * context] * 2 and contract["stride"] == 4
    assert contract["input"] == {"name": "pixels_0_255", "channels": 1, "input_range": [0.0, 255.0]}
    assert contract["output"] == {"name": "probabilities", "channels": 1, "head": "binary"}
    assert contract["card"]["metadata"] == {"dice": 0.9} and contract["runtime"]["version"] == RUNTIME_VERSION
    html = (page / "index.html").read_text()
    assert "http" not in html.replace("http-equiv", "")  # nothing from a CDN: the page works offline
    assert not list(tmp_path.glob(f"*{PARTIAL_MARK}*"))


def test_float32_on_request_and_a_density_model(tmp_path, runtime):
    model = plain_cnn((None, None, 3), out_channels=1, num_layers=2, filters=2, head="regression")
    report = web(model, tmp_path / "page", quantize="float32", tile_size=(32, 32), runtime=runtime)
    contract = json.loads((tmp_path / "page" / "model.json").read_text())
    assert report["tflite"]["quantization"] == "float32" and contract["quantization"] == "float32"
    assert contract["output"]["head"] == "regression" and contract["input"]["channels"] == 3


def test_page_tile_default_and_its_refusals():
    model = unet((None, None, 1), num_classes=1, filters=2, depth=3)
    contract = serving_contract(model)
    assert page_tile(model, contract)[0] == (512, 512)
    with pytest.raises(ValueError, match=r"Tile side 50 does not suit the network: it takes sides 8 \+ k x 8; pass 56"):
        page_tile(model, contract, (50, 64))
    overlap = 2 * model_geometry(model).context
    with pytest.raises(ValueError, match=rf"receptive-field overlap \({overlap} px\) is kept; use tiles of at least"):
        page_tile(model, contract, (overlap, overlap))
    fixed = unet((64, 64, 1), num_classes=1, filters=2, depth=2)
    assert page_tile(fixed, serving_contract(fixed))[0] == (64, 64)
    with pytest.raises(ValueError, match="built for input 64x64"):
        page_tile(fixed, serving_contract(fixed), (32, 32))


@pytest.mark.parametrize(
    "build, words",
    [
        (lambda: unet((None, None, 1), num_classes=1, filters=2, depth=2, padding="valid"), "uses valid padding"),
        (lambda: plain_cnn((None, None, 1), num_layers=1, input_range=(0, 4095)), "browsers decode images to 8 bits"),
        (lambda: unet((None, None, 2), num_classes=1, filters=2, depth=2), "takes 2 channels"),
    ],
    ids=["valid-padding", "16-bit", "two-channels"],
)
def test_models_the_page_cannot_feed_are_refused_before_anything_is_written(tmp_path, runtime, build, words):
    with pytest.raises(ValueError, match=words):
        web(build(), tmp_path / "page", runtime=runtime)
    assert list(tmp_path.iterdir()) == []


def test_a_failed_export_leaves_nothing_and_an_existing_page_needs_overwrite(tmp_path, runtime):
    with pytest.raises(ValueError, match="representative_data"):
        web(small_unet(), tmp_path / "page", quantize="int8", runtime=runtime)
    assert list(tmp_path.iterdir()) == []  # the TFLite conversion failed inside the atomic folder
    with pytest.raises(ValueError, match="`quantize` for the web page is one of"):
        web(small_unet(), tmp_path / "page", quantize="bfloat16", runtime=runtime)
    (tmp_path / "page").mkdir()
    with pytest.raises(FileExistsError, match="overwrite"):
        web(small_unet(), tmp_path / "page", runtime=runtime)


def test_runtime_is_found_or_its_absence_explained(tmp_path, runtime, monkeypatch):
    files = runtime_files(runtime)
    assert set(files) == set(RUNTIME_FILES) and runtime_files(runtime.parent) == files  # the folder above works
    module = sys.modules["kfcn.export.web"]  # `kfcn.export.web` is the function, as `kfcn.export.tflite` is
    monkeypatch.setattr(module, "VENDORED_RUNTIME", tmp_path / "vendored")
    monkeypatch.setattr(module, "CHECKOUT_NODE_MODULES", tmp_path / "no_checkout")
    with pytest.raises(FileNotFoundError, match=r"make web-runtime.*npm install @litertjs/core@" + RUNTIME_VERSION):
        runtime_files()
    vendor_runtime(runtime, tmp_path / "vendored")
    assert runtime_files() == {name: tmp_path / "vendored" / name.removeprefix("litert/") for name in RUNTIME_FILES}
    other = tmp_path / "other" / "node_modules"
    shutil.copytree(runtime, other)
    (other / "@litertjs" / "core" / "package.json").write_text('{"version": "9.9.9"}')
    with pytest.raises(FileNotFoundError, match="holds @litertjs/core 9.9.9, but the page is built and tested with"):
        runtime_files(other)
    (other / RUNTIME_FILES["litert/core.js"]).unlink()
    (other / "@litertjs" / "core" / "package.json").write_text(json.dumps({"version": RUNTIME_VERSION}))
    with pytest.raises(FileNotFoundError, match="is incomplete"):
        runtime_files(other)


def test_cli_export_web_and_its_refusals(tmp_path, runtime, capsys):
    model = tmp_path / "model.keras"
    save_model(small_unet(), model)
    base = ["export", str(model), "--format", "web", "--runtime", str(runtime)]
    assert main([*base, "--output", str(tmp_path / "page"), "--input-size", "48", "48"]) == 0
    assert "kfcn serve-web" in capsys.readouterr().out
    assert json.loads((tmp_path / "page" / "model.json").read_text())["tile"] == [48, 48]
    cases = [
        ([*base, "--output", str(tmp_path / "page")], "exists; pass --overwrite"),
        ([*base, "--output", str(tmp_path / "p2"), "--input-dtype", "uint8"], "--input-dtype does not apply to"),
        (["export", str(model), "--format", "tflite", "--output", "m.tflite", "--runtime", "x"], "only to web"),
        ([*base[:-2], "--runtime", str(tmp_path / "none"), "--output", str(tmp_path / "p3")], "holds no @litertjs"),
    ]
    for argv, words in cases:
        assert main(argv) == 2
        assert words in capsys.readouterr().err
    assert not (tmp_path / "p2").exists() and not (tmp_path / "p3").exists()


def test_serve_web_binds_localhost_and_serves_the_page(tmp_path):
    args = build_parser().parse_args(["serve-web", str(tmp_path)])
    assert (args.host, args.port) == ("127.0.0.1", 8000)
    with pytest.raises(FileNotFoundError, match="not a page of `kfcn export --format web`"):
        serve(tmp_path)
    (tmp_path / "model.json").write_text("{}")
    (tmp_path / "runtime.wasm").write_bytes(b"\0asm")
    server = serve(tmp_path, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        assert host == "127.0.0.1"
        with urllib.request.urlopen(f"http://{host}:{port}/runtime.wasm") as response:
            assert response.headers["Content-Type"] == "application/wasm" and response.read() == b"\0asm"
    finally:
        server.shutdown()
        server.server_close()


def test_kfcn_serve_web_starts_at_once_on_localhost(tmp_path):
    (tmp_path / "model.json").write_text('{"kfcn_page": 1}')
    command = [sys.executable, "-m", "kfcn", "serve-web", str(tmp_path), "--port", "0"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()  # printed once bound; no Keras is imported first
        assert line.startswith(f"serving {tmp_path} at http://127.0.0.1:")
        with urllib.request.urlopen(line.split(" at ")[1].split()[0] + "model.json", timeout=10) as response:
            assert json.loads(response.read()) == {"kfcn_page": 1}
    finally:
        server.terminate()
        server.wait(timeout=10)


# The page's rules in Node.js (no browser; a second each): what CI runs of the web page on every commit.
SMOKE = textwrap.dedent(
    """
    import {readFileSync} from "node:fs";
    import {axisPlan, reflect, roundHalfEven, modelInput, sniff, grayPng, Refusal} from "./kfcn_plan.mjs";
    const cases = JSON.parse(readFileSync("cases.json", "utf8"));
    const out = {plans: cases.plans.map(([size, tile, stride, overlap]) => {
      const plan = axisPlan(size, tile, stride, overlap);
      return {starts: plan.starts, normaliser: Array.from(plan.normaliser)};
    })};
    out.reflect = cases.reflect.map(([index, size]) => reflect(index, size));
    out.rounded = [0.5, 1.5, 2.5, 2.4999, 2.5001].map(roundHalfEven);
    const rgba = Uint8Array.from(cases.rgba);
    const info = {format: "PNG", bitDepth: 8, channels: 3, alpha: false};
    out.luma = Array.from(modelInput(rgba, cases.rgba.length / 4, 1, info, 1, "x").pixels);
    out.sniffed = {};
    for (const name of cases.files) {
      try { out.sniffed[name] = sniff(readFileSync(name), name); }
      catch (error) { out.sniffed[name] = (error instanceof Refusal ? "refused: " : "error: ") + error.message; }
    }
    const blob = await grayPng(Uint8Array.from([0, 255, 7, 9, 100, 200]), 3, 2);
    out.png = Buffer.from(await blob.arrayBuffer()).toString("base64");
    console.log(JSON.stringify(out));
    """
)


@pytest.mark.skipif(NODE is None, reason="needs Node.js")
def test_page_rules_in_node_match_kfcn(tmp_path):
    shutil.copyfile(ASSETS / "kfcn_plan.js", tmp_path / "kfcn_plan.mjs")
    (tmp_path / "smoke.mjs").write_text(SMOKE)
    plans = [(100, 48, 8, 16), (512, 512, 16, 200), (530, 512, 16, 200), (1500, 512, 16, 200), (300, 512, 16, 200)]
    plans += [(77, 32, 4, 12), (33, 32, 4, 12)]
    reflect = [(index, size) for size in (1, 2, 5) for index in range(-7, 14)]
    rgb = np.random.default_rng(0).integers(0, 256, (500, 3), dtype=np.uint8)
    rgba = np.concatenate([rgb, np.full((500, 1), 255, np.uint8)], axis=1).ravel().tolist()
    Image.fromarray(np.zeros((4, 4), np.uint16)).save(tmp_path / "sixteen.png")
    Image.fromarray(np.zeros((4, 4, 4), np.uint8), "RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "gray.jpg")
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "gray.tif")
    (tmp_path / "note.txt").write_text("not an image")
    files = ["sixteen.png", "rgba.png", "gray.jpg", "gray.tif", "note.txt"]
    cases = {"plans": plans, "reflect": reflect, "rgba": rgba, "files": files}
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    done = subprocess.run([NODE, "smoke.mjs"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    for (size, tile, stride, overlap), plan in zip(plans, result["plans"]):
        expected = AxisPlan(size, tile, tile, 0, stride, overlap, "none")
        assert plan["starts"] == expected.starts
        np.testing.assert_array_equal(plan["normaliser"], expected.normaliser)
    assert result["reflect"] == [int(_reflect(np.array(index), size)) for index, size in reflect]
    assert result["rounded"] == [0, 2, 2, 2, 3]
    np.testing.assert_array_equal(result["luma"], convert_channels(rgb[:, None], 1, conversions=_Ignore())[:, 0, 0])
    sniffed = result["sniffed"]
    assert sniffed["sixteen.png"] == {"format": "PNG", "bitDepth": 16, "channels": 1, "alpha": False}
    assert sniffed["rgba.png"] == {"format": "PNG", "bitDepth": 8, "channels": 3, "alpha": True}
    assert sniffed["gray.jpg"] == {"format": "JPEG", "bitDepth": 8, "channels": 1, "alpha": False}
    assert sniffed["gray.tif"].startswith("refused: gray.tif is a TIFF file, which this browser cannot decode")
    assert sniffed["note.txt"].startswith("refused: note.txt is not a PNG, JPEG, TIFF or BMP file")
    (tmp_path / "mask.png").write_bytes(__import__("base64").b64decode(result["png"]))
    mask = Image.open(tmp_path / "mask.png")
    assert mask.mode == "L" and np.asarray(mask).tolist() == [[0, 255, 7], [9, 100, 200]]


class _Ignore:
    def add(self, description, path):
        pass


def test_page_assets_travel_in_the_wheel():
    text = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    assert '"export/web_assets/*.*"' in text and '"export/web_assets/litert/**/*"' in text
    assert all((ASSETS / name).is_file() for name in PAGE_FILES)
