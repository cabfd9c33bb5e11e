"""Temporaries carry their owner: a writer removes its own and those of dead processes, never a
live worker's, never a user's file; `kfcn predict --task counting` keeps a row per written image."""

import os
import subprocess
import sys

import numpy as np
import pytest

from kfcn.atomic import PARTIAL_MARK, atomic_path, clean_partials, partial_owner


def dead_pid():
    """The id of a process that has just exited (not reused within the test)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_only_temporaries_of_gone_processes_are_removed(tmp_path):
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        names = {
            "users": "report.partial-final.txt",  # a user's file that merely looks like one
            "live": f"a.png{PARTIAL_MARK}{live.pid}.png",  # another worker, still writing
            "dead": f"b.png{PARTIAL_MARK}{dead_pid()}.png",  # a worker killed mid-write
        }
        for name in names.values():
            (tmp_path / name).write_bytes(b"x")
        with atomic_path(tmp_path / "c.txt") as temporary:
            temporary.write_text("done")
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted([names["users"], names["live"], "c.txt"])
    finally:
        live.kill()
        live.wait()  # reaped, as a shell reaps a killed worker
    assert clean_partials(tmp_path) == 1 and not (tmp_path / names["live"]).exists()


def test_a_temporary_in_flight_in_this_process_is_kept(tmp_path):
    with atomic_path(tmp_path / "outer.bin") as outer:
        outer.write_bytes(b"half")
        assert clean_partials(tmp_path) == 0 and outer.read_bytes() == b"half"
    assert (tmp_path / "outer.bin").read_bytes() == b"half"


@pytest.mark.parametrize("name", ["x.kfcn-partial-.png", "x.png", "x.kfcn-partial-abc"])
def test_names_without_an_owner_are_no_temporaries(name):
    assert partial_owner(name) is None


def test_counting_writes_each_row_before_the_image_so_a_resumed_folder_has_every_count(tmp_path):
    pytest.importorskip("tensorflow")
    import keras
    from PIL import Image

    from kfcn.models import plain_cnn
    from kfcn.saving import save_model

    model = plain_cnn((None, None, 1), num_layers=1, kernel_size=1, head="regression")
    save_model(model, tmp_path / "counter.keras")
    (tmp_path / "in").mkdir()
    for index in range(3):
        Image.fromarray(np.full((8, 8), 10 * (index + 1), np.uint8)).save(tmp_path / "in" / f"{index}.png")
    # The first run dies after its second image (SIGKILL); the rerun with --skip-existing finishes.
    code = (
        "import os, signal, sys, kfcn.cli.predict as p\n"
        "write = p._write\n"
        "def dying(path, array):\n"
        "    write(path, array)\n"
        "    if path.name == '1_heatmap.png': os.kill(os.getpid(), signal.SIGKILL)\n"
        "p._write = dying\n"
        "from kfcn.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    arguments = ["predict", str(tmp_path / "in"), "--model", str(tmp_path / "counter.keras")]
    arguments += ["--task", "counting", "--output", str(tmp_path / "out")]
    environment = os.environ | {"KERAS_BACKEND": keras.backend.backend(), "TF_CPP_MIN_LOG_LEVEL": "3"}
    killed = subprocess.run([sys.executable, "-c", code, *arguments], env=environment, capture_output=True)
    assert killed.returncode == -9
    finished = subprocess.run(
        [sys.executable, "-m", "kfcn.cli", *arguments, "--skip-existing"], env=environment, capture_output=True
    )
    assert finished.returncode == 0, finished.stderr.decode()[-2000:]
    rows = (tmp_path / "out" / "counts.csv").read_text().splitlines()
    assert rows[0] == "image,count" and [row.split(",")[0] for row in rows[1:]] == ["0.png", "1.png", "2.png"]
