"""`kfcn card RUN`: the card is made from the run folder's files alone and follows the run when it is extended."""

import json

import pytest

from kfcn.cli import main
from kfcn.training import read_log
from tests.cli.test_train import command
from tests.conftest import write_isbi_crops

pytestmark = pytest.mark.tensorflow_only(reason="tf.data pipelines")


def test_the_card_states_the_run_and_is_regenerated_after_an_extension(tmp_path, capsys):
    data = write_isbi_crops(tmp_path / "data", count=5, side=48)
    run = tmp_path / "run"
    assert main(command(data, run, "--epochs", "2")) == 0
    assert main(["card", str(run)]) == 0
    card = (run / "MODEL_CARD.md").read_text()
    summary, log = json.loads((run / "summary.json").read_text()), read_log(run / "training.csv")
    best = summary["best_epoch"]
    assert f"model.keras` is epoch {best}, the best by `val_pixel_error`" in card
    assert f"| selected: {best} | " in card and f"{log['val_pixel_error'][list(log['epoch']).index(best)]:.4f}" in card
    assert "| filters | `2` |" in card and "| crop | `32` |" in card and "kfcn train --config config.json" in card
    assert f"{summary['machine']['cores']} cores" in card and f"in {log['seconds'].sum() / 60:.1f} min" in card
    assert str(tmp_path) not in card  # no absolute path of the machine
    assert "![training curves](curves.png)" in card
    assert main(command(data, run, "--epochs", "3")) == 0  # extended
    assert main(["card", str(run)]) == 0
    card = (run / "MODEL_CARD.md").read_text()
    assert "Trained for 3 epoch(s)" in card and "Extended from 2 epochs." in card
    # The card's command: the run's own config.json trains again (extensions are history, not options).
    assert (
        main(["train", "--config", str(run / "config.json"), "--output", str(tmp_path / "again"), "--epochs", "1"]) == 0
    )


def test_a_folder_that_is_no_finished_run_is_named(tmp_path, capsys):
    assert main(["card", str(tmp_path)]) == 2
    assert "has no config.json" in capsys.readouterr().err
