"""tile_size="auto": the largest tile within the memory budget, or the whole image in one call."""

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from kfcn.inference import predict, predict_tiled
from kfcn.inference.auto_tile import (
    activation_bytes_per_pixel,
    auto_tile_size,
    estimate_peak_bytes,
    resident_bytes,
    working_bytes_per_pixel,
)
from kfcn.models import plain_cnn, unet
from tests.tolerances import reordered_network_atol

GIB = 2**30
LARGE = (8192, 8192)  # shapes only: no image this size is made


@pytest.fixture(scope="module")
def small_unet():
    return unet((None, None, 1), num_classes=1, filters=4, depth=2)


@pytest.mark.backend
def test_the_summed_activations_of_a_plain_cnn_by_hand():
    model = plain_cnn((None, None, 1), num_layers=3, filters=8)
    # input check 1 + scaling 1 + 2 x (conv 8 + ReLU 8) + output conv 1 + output 1 = 36 values per pixel.
    assert activation_bytes_per_pixel(model) == 36 * 4


def test_the_working_memory_of_a_unet_by_hand(small_unet):
    # The peak is at the first decoder convolution at full resolution: its input (skip 4 + upsampled 4,
    # concatenated: 8 values a pixel) and output (4), each held once more as the convolution's working copy.
    assert working_bytes_per_pixel(small_unet) == (8 + 4 + 8 + 4) * 4
    # A backend that holds every layer's output until the call returns holds at least their sum.
    assert working_bytes_per_pixel(small_unet, frees=False) >= activation_bytes_per_pixel(small_unet)


def test_tiles_grow_with_the_budget_each_the_largest_that_fits(small_unet):
    tiles = []
    for gib in (1, 1.5, 2, 3, 4, 6):
        budget = gib * GIB
        tile = auto_tile_size(small_unet, LARGE, budget, batch_size=4)
        assert tile % 4 == 0  # a size the model takes
        assert estimate_peak_bytes(small_unet, LARGE, tile, batch_size=4) <= budget
        assert estimate_peak_bytes(small_unet, LARGE, tile + 4, batch_size=4) > budget  # the next size does not fit
        tiles.append(tile)
    assert tiles == sorted(tiles) and len(set(tiles)) == len(tiles)


def test_the_whole_image_in_one_call_exactly_when_its_estimate_fits(small_unet):
    whole = estimate_peak_bytes(small_unet, (2048, 2048))
    assert auto_tile_size(small_unet, (2048, 2048), whole, batch_size=4) is None
    tile = auto_tile_size(small_unet, (2048, 2048), whole - 1, batch_size=4)
    assert tile is not None and estimate_peak_bytes(small_unet, (2048, 2048), tile, batch_size=4) < whole
    # The whole-image estimate holds the padded image's activations: more than a quarter of it as a tile.
    assert estimate_peak_bytes(small_unet, (2048, 2048), 1024) < whole


def test_memory_the_caller_holds_is_counted(small_unet, tmp_path):
    budget = 2 * GIB
    alone = auto_tile_size(small_unet, LARGE, budget, batch_size=4)
    # An image array in memory leaves less room; writing into the caller's `out` (a memory map) leaves more.
    assert auto_tile_size(small_unet, LARGE, budget, 4, held_bytes=LARGE[0] * LARGE[1]) < alone
    assert auto_tile_size(small_unet, LARGE, budget, 4, output_in_place=True) > alone
    # More tiles per call: smaller tiles.
    assert auto_tile_size(small_unet, LARGE, budget, batch_size=1) > alone
    mapped = np.lib.format.open_memmap(tmp_path / "image.npy", mode="w+", dtype="uint8", shape=(64, 64))
    assert resident_bytes(mapped) == 0 and resident_bytes(np.asarray(mapped).copy()) == 64 * 64


def test_a_budget_below_the_smallest_tile_is_refused_with_the_budget_that_works(small_unet):
    with pytest.raises(ValueError, match="too small for this model") as refusal:
        auto_tile_size(small_unet, LARGE, 0.25 * GIB, batch_size=4)
    needed = int(re.search(r"memory_budget=(\d+) bytes", str(refusal.value)).group(1))
    assert needed > 0.25 * GIB and "--memory-gib" in str(refusal.value) and "--batch 1" in str(refusal.value)
    assert auto_tile_size(small_unet, LARGE, needed, batch_size=4) is not None
    image = np.zeros((64, 64), "uint8")  # refused by predict_tiled too, before any tile is predicted
    with pytest.raises(ValueError, match="memory_budget="):
        predict_tiled(small_unet, image, "auto", memory_budget=2**20, progress=False)


def test_the_smallest_tile_leaves_a_stride_beyond_the_overlap(small_unet):
    # "same" padding: the default overlap is the receptive field (45 px: 44 shared); a tile exceeds it by a stride.
    least = estimate_peak_bytes(small_unet, LARGE, 48, batch_size=4)
    assert auto_tile_size(small_unet, LARGE, least, 4) == 48
    with pytest.raises(ValueError, match="too small"):
        auto_tile_size(small_unet, LARGE, least - 1, 4)
    assert auto_tile_size(small_unet, LARGE, least - 1, 4, overlap=8) == 44  # a smaller overlap, a smaller tile


@pytest.mark.backend
def test_auto_tiles_fit_the_budget_and_stay_exact(rng, small_unet):
    model = small_unet
    image = rng.integers(0, 256, (1400, 1300)).astype("uint8")
    whole = predict(model, image)
    assert auto_tile_size(model, image.shape, held_bytes=image.nbytes) is None  # fits 4 GiB: one call
    np.testing.assert_array_equal(predict_tiled(model, image, "auto", progress=False), whole)
    # Below the whole image's estimate, but above that of tiles of 256 (the traced graph and allocator
    # arenas of many calls make tiling dearer than one call for small images).
    budget = estimate_peak_bytes(model, image.shape, 256, batch_size=1, held_bytes=image.nbytes)
    assert auto_tile_size(model, image.shape, budget, held_bytes=image.nbytes) == 256
    tiled = predict_tiled(model, image, "auto", memory_budget=budget, batch_size=1, progress=False)
    inner = (slice(22, -22), slice(22, -22))  # exact (receptive-field) overlap away from the border
    np.testing.assert_allclose(tiled[inner], whole[inner], atol=reordered_network_atol(model, whole))
    with pytest.raises(ValueError, match="'auto'"):
        predict_tiled(model, image, "largest", progress=False)


MEASURE = textwrap.dedent(
    """
    import json, threading, time
    import numpy as np
    from kfcn.inference import predict, predict_tiled
    from kfcn.inference.auto_tile import auto_tile_size, estimate_peak_bytes
    from kfcn.models import unet

    def anonymous():
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) * 1024 for line in status if line.startswith("RssAnon:"))

    model = unet((None, None, 1), num_classes=1, filters=4, depth=2)
    predict(model, np.zeros((64, 64), "uint8"))
    image = np.random.default_rng(0).integers(0, 256, (2048, 2048), dtype=np.uint8)
    budget = estimate_peak_bytes(model, image.shape, 256, batch_size=4, held_bytes=image.nbytes)
    peak, done = [anonymous()], threading.Event()

    def sample():
        while not done.is_set():
            peak.append(anonymous())
            time.sleep(0.002)

    sampler = threading.Thread(target=sample)
    sampler.start()
    predict_tiled(model, image, "auto", memory_budget=budget, batch_size=4, progress=False)
    done.set()
    sampler.join()
    tile = auto_tile_size(model, image.shape, budget, 4, held_bytes=image.nbytes)
    print(json.dumps({"peak": max(peak + [anonymous()]), "budget": budget, "tile": tile}))
    """
)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads RssAnon from /proc (Linux)")
def test_the_measured_peak_stays_within_the_budget():
    # A fresh process (the budget covers the runtime and the model): a 2048^2 image in 4 x 256^2 tiles.
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root), "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, "-c", MEASURE], capture_output=True, text=True, env=env, cwd=root)
    assert result.returncode == 0, result.stderr[-2000:]
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    assert measured["tile"] == 256
    assert measured["peak"] <= measured["budget"], measured
