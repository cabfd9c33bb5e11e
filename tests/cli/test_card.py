"""`kfcn card RUN`: the card is made from the run folder's files alone and follows the run when it is extended."""

import json
import os
import re
import signal
import subprocess
import sys

import keras
import numpy as np
import pytest

from kfcn.cli import main
from kfcn.cli.common import file_sha256
from kfcn.training import read_log
from tests.cli.conftest import CrashAfterEpoch, add_training_callback, train_command
from tests.conftest import write_isbi_crops

pytestmark = pytest.mark.tensorflow_only(reason="tf.data pipelines")


def test_the_card_states_the_run_and_is_regenerated_after_an_extension(tmp_path, capsys):
    data = write_isbi_crops(tmp_path / "data", count=5, side=48)
    run = tmp_path / "run"
    assert main(train_command(data, run, "--epochs", "2")) == 0
    assert main(["card", str(run)]) == 0
    card = (run / "MODEL_CARD.md").read_text()
    summary, log = json.loads((run / "summary.json").read_text()), read_log(run / "training.csv")
    best = summary["best_epoch"]
    assert f"model.keras` is epoch {best}, the best by `val_pixel_error`" in card
    assert f"| selected: {best} | " in card and f"{log['val_pixel_error'][list(log['epoch']).index(best)]:.4f}" in card
    assert "| filters | `2` |" in card and "| crop | `32` |" in card and "kfcn train --config config.json" in card
    assert f"{summary['machine']['cores']} cores" in card and f"in {log['seconds'].sum() / 60:.1f} min" in card
    assert "computing in float32 with XLA" in card and "without `--images` says where" not in card  # no recipe
    assert str(tmp_path) not in card  # no absolute path of the machine
    assert "![training curves](curves.png)" in card
    assert "Every epoch's scores: `training.csv`." in card
    # A held-out table from kfcn evaluate's report of this very model.keras.
    held_out = write_isbi_crops(tmp_path / "held_out", count=2, side=40)
    report_path = tmp_path / "held_out.json"
    evaluate = ["evaluate", str(held_out / "images"), str(held_out / "labels"), "--model", str(run / "model.keras")]
    assert main(evaluate + ["--class-names", "membrane,cell", "--json", str(report_path)]) == 0
    report = json.loads(report_path.read_text())
    assert main(["card", str(run), "--evaluation", str(report_path)]) == 0
    card = (run / "MODEL_CARD.md").read_text()
    whole = report["whole_set"]
    assert "## Held-out scores" in card and "on 2 image(s) the model did not train on" in card
    assert f"global accuracy **{whole['global_accuracy']:.4f}**" in card
    assert f"| cell | {whole['iou_per_class'][1]:.4f} | {whole['accuracy_per_class'][1]:.4f} |" in card
    assert f"{report['mean']['pixel_error']:.4f}" in card
    assert str(tmp_path) not in card
    # Written beside a shipped model, the card takes the run's config.json and curves along, named after it.
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    assert main(["card", str(run), "--evaluation", str(report_path), "--output", str(shipped / "cells.md")]) == 0
    beside = (shipped / "cells.md").read_text()
    assert "kfcn train --config cells_config.json" in beside and "![training curves](cells_curves.png)" in beside
    assert (shipped / "cells_curves.png").read_bytes() == (run / "curves.png").read_bytes()
    copied, original = (
        json.loads((shipped / "cells_config.json").read_text()),
        json.loads((run / "config.json").read_text()),
    )
    assert copied.keys() == original.keys() and copied["crop"] == original["crop"] == 32
    assert str(tmp_path) not in (shipped / "cells_config.json").read_text()  # the run's paths were absolute
    assert "Every epoch's scores: `cells_training.csv`." in beside
    assert (shipped / "cells_training.csv").read_bytes() == (run / "training.csv").read_bytes()
    assert sorted(path.name for path in shipped.iterdir()) == [
        "cells.md",
        "cells_config.json",
        "cells_curves.png",
        "cells_training.csv",
    ]
    assert main(train_command(data, run, "--epochs", "3")) == 0  # extended
    assert main(["card", str(run)]) == 0
    card = (run / "MODEL_CARD.md").read_text()
    assert "Trained for 3 epoch(s)" in card and "Extended from 2 epochs." in card
    # Killed while writing the card beside the shipped model: the old card and its companions stay, all
    # of the same run (the companions used to be replaced first); the same command then writes all four.
    before = {path.name: path.read_bytes() for path in shipped.iterdir()}
    dying = (
        "import os, pathlib, signal, sys\n"
        "write_text = pathlib.Path.write_text\n"
        "def dying(path, *args, **kwargs):\n"
        "    if path.suffix == '.md': os.kill(os.getpid(), signal.SIGKILL)\n"
        "    return write_text(path, *args, **kwargs)\n"
        "pathlib.Path.write_text = dying\n"
        "from kfcn.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    beside_command = ["card", str(run), "--output", str(shipped / "cells.md")]
    environment = os.environ | {"KERAS_BACKEND": keras.backend.backend()}
    killed = subprocess.run([sys.executable, "-c", dying, *beside_command], env=environment, capture_output=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
    assert {path.name: path.read_bytes() for path in shipped.iterdir() if "partial" not in path.name} == before
    assert main(beside_command) == 0
    assert (
        (shipped / "cells_training.csv").read_bytes()
        == (run / "training.csv").read_bytes()
        != before["cells_training.csv"]
    )
    assert "Extended from 2 epochs." in (shipped / "cells.md").read_text()
    assert sorted(path.name for path in shipped.iterdir()) == sorted(before)  # the killed run's temporaries are gone
    # The extension rewrote model.keras, so the report made before it is stale and refused; the card stays.
    assert report["model_sha256"] != file_sha256(run / "model.keras")
    capsys.readouterr()
    assert main(["card", str(run), "--evaluation", str(report_path)]) == 2
    assert "Rerun kfcn evaluate" in capsys.readouterr().err
    assert "Extended from 2 epochs." in (run / "MODEL_CARD.md").read_text()
    # The card's command: the run's own config.json trains again (extensions are history, not options).
    assert (
        main(["train", "--config", str(run / "config.json"), "--output", str(tmp_path / "again"), "--epochs", "1"]) == 0
    )


def test_a_report_that_is_not_kfcn_evaluate_s_is_refused(tmp_path, capsys):
    data = write_isbi_crops(tmp_path / "data", count=5, side=48)
    run = tmp_path / "run"
    assert main(train_command(data, run, "--epochs", "1")) == 0
    (tmp_path / "other.json").write_text('{"scores": 1}')
    assert main(["card", str(run), "--evaluation", str(tmp_path / "other.json")]) == 2
    assert "not a `kfcn evaluate --json` report" in capsys.readouterr().err
    # A report of another model file (its hash differs) is refused too: the card would show its scores as this one's.
    report = {"task": "segmentation", "mean": {}, "per_image": [], "model": "elsewhere.keras", "model_sha256": "0" * 64}
    (tmp_path / "stale.json").write_text(json.dumps(report))
    assert main(["card", str(run), "--evaluation", str(tmp_path / "stale.json")]) == 2
    assert "scored 'elsewhere.keras', not this run's model.keras" in capsys.readouterr().err
    assert not (run / "MODEL_CARD.md").exists()


def test_an_analysis_of_the_run_s_model_is_added_to_its_card_and_one_of_another_file_is_refused(tmp_path, capsys):
    data = write_isbi_crops(tmp_path / "data", count=5, side=48)
    run = tmp_path / "run"
    assert main(train_command(data, run, "--epochs", "1")) == 0
    section = "## Where the error comes from\n\n| slices | beyond 2 px |\n|---|---|\n| held out | 0.0123 |\n"
    analysis = {"model": "run/model.keras", "model_sha256": file_sha256(run / "model.keras"), "markdown": section}
    (tmp_path / "analysis.json").write_text(json.dumps(analysis))
    assert main(["card", str(run), "--analysis", str(tmp_path / "analysis.json")]) == 0
    card = (run / "MODEL_CARD.md").read_text()
    assert card.endswith(section) and card.index("![training curves]") < card.index(section)
    for name, report, message in [
        ("stale.json", analysis | {"model_sha256": "0" * 64}, "analysed 'run/model.keras', not this run's model.keras"),
        ("bare.json", {"model_sha256": analysis["model_sha256"]}, "not an analysis report"),
        ("list.json", [section], "not an analysis report"),
    ]:
        (tmp_path / name).write_text(json.dumps(report))
        assert main(["card", str(run), "--analysis", str(tmp_path / name), "--output", str(tmp_path / "x.md")]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "x.md").exists() and (run / "MODEL_CARD.md").read_text() == card


def test_a_folder_that_is_no_run_or_has_no_model_yet_is_named(tmp_path, capsys):
    assert main(["card", str(tmp_path)]) == 2
    assert "has no config.json" in capsys.readouterr().err
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "training.csv").write_text("epoch,loss\n")
    assert main(["card", str(tmp_path)]) == 2
    assert (
        "has no model.keras: `kfcn card` reads a `kfcn train` run folder once its first epoch"
        in capsys.readouterr().err
    )


def test_an_unfinished_run_gets_a_progress_card_then_the_finished_card(tmp_path, monkeypatch, capsys):
    import kfcn.training
    from kfcn.cli.card import _duration
    from kfcn.cli.run_folder import held_by_this_process

    data = write_isbi_crops(tmp_path / "data", count=5, side=48)
    run, options = tmp_path / "run", ("--epochs", "4", "--val-fraction", "0.2", "--final-precise-bn", "1")
    add_training_callback(monkeypatch, CrashAfterEpoch(1))
    assert main(train_command(data, run, *options)) == 2  # stopped after its first epoch, a second short of 60 s
    assert not (run / "summary.json").exists() and not (run / "curves.png").exists()
    assert main(["card", str(run)]) == 0
    assert "unfinished: 1 of 4 epochs" in (run / "MODEL_CARD.md").read_text()
    assert "curves" not in (run / "MODEL_CARD.md").read_text() and not (run / "curves.png").exists()  # none drawn
    monkeypatch.setattr(kfcn.training.CurvesPlot, "every_seconds", 0)  # as if each epoch took a minute or more
    add_training_callback(monkeypatch, CrashAfterEpoch(2))
    assert main(train_command(data, run, *options)) == 2  # resumed, stopped after its second epoch
    add_training_callback(monkeypatch, None)
    drawn = (run / "curves.png").read_bytes()  # by the run, at the end of its second epoch
    capsys.readouterr()
    assert main(["card", str(run)]) == 0
    assert (run / "curves.png").read_bytes() == drawn  # the card reads the run's files, never writes them
    assert "no kfcn train process is training it: rerun its command" in capsys.readouterr().out
    with held_by_this_process(run):  # as a training process holds it
        assert main(["card", str(run), "--output", str(tmp_path / "now.md")]) == 0
    assert "a kfcn train process is training it now" in capsys.readouterr().out
    card, log = (run / "MODEL_CARD.md").read_text(), read_log(run / "training.csv")
    assert log["epoch"].tolist() == [1, 2]
    assert card.splitlines()[0].endswith("`run` (unfinished: 2 of 4 epochs)")
    best = int(np.argmin(log["val_pixel_error"])) + 1  # the first best: the checkpoint saves strict improvements
    assert f"`model.keras` is epoch {best}, the best by `val_pixel_error` so far (a validation score" in card
    pace = float(np.mean(log["seconds"] - log["stopped_seconds"]))
    assert (
        f"**Unfinished:** 2 of 4 epochs have run; 2 are left. At the pace of its last 2 logged epoch(s) ({pace:.0f} s "
        f"each, validation included), they take about {_duration(2 * pace)}, then the final batch-norm statistics "
        "step (`--final-precise-bn`)."
    ) in card
    assert "Trained so far for 2 epoch(s) of 2 steps in " in card
    assert not re.search(r"\d cores", card) and "Keras 3" not in card  # where and with what: once the run ends
    assert "![training curves](curves.png)" in card and (run / "curves.png").stat().st_size > 0
    assert str(tmp_path) not in card
    # Written elsewhere, the progress card takes the curves along.
    assert main(["card", str(run), "--output", str(tmp_path / "progress.md")]) == 0
    assert "![training curves](progress_curves.png)" in (tmp_path / "progress.md").read_text()
    assert (tmp_path / "progress_curves.png").read_bytes() == (run / "curves.png").read_bytes()
    # The same command finishes the run, which redraws its curves; the card is then the finished run's.
    assert main(train_command(data, run, *options)) == 0
    assert main(["card", str(run)]) == 0
    card = (run / "MODEL_CARD.md").read_text()
    # (the data's path, shown relative to the working folder, may hold this test's name: no bare "unfinished")
    assert "(unfinished:" not in card and "**Unfinished:**" not in card and "so far" not in card
    assert "Trained for 4 epoch(s) of 2 steps in " in card and re.search(r"\d cores", card)


def test_an_epoch_without_validation_shows_a_dash_not_nan():
    from kfcn.cli.card import _score_table

    log = {"epoch": np.array([1.0, 2.0]), "loss": np.array([0.5, 0.25]), "val_loss": np.array([np.nan, 0.75])}
    assert _score_table(log, best=1).splitlines()[2:] == [
        "| selected: 1 | 0.5000 | — |",
        "| last: 2 | 0.2500 | 0.7500 |",
    ]


def test_the_training_time_leaves_out_stopped_time_and_names_likely_unmeasured_pauses():
    from kfcn.cli.card import _training_time

    nan = np.nan
    log = {  # epochs 1-4 logged before kfcn measured stopped time, 5-6 after; epoch 3 held a long pause
        "epoch": np.arange(1.0, 7.0),
        "seconds": np.array([400.0, 410.0, 3475.0, 390.0, 3000.0, 420.0]),
        "stopped_seconds": np.array([nan, nan, nan, nan, 2600.0, 0.0]),
    }
    # 8,095 s logged - 2,600 s stopped = 5,495 s = 1.53 h; the median epoch (of 400, 410, 3475, 390, 3000, 420)
    # is 415 s, and of the unmeasured epochs only the 3rd is over 3x that.
    assert _training_time(log) == (
        "1.53 h (not counting 43.3 min when the process was stopped; epoch 3 took 3475 s, over 3x the median "
        "epoch's 415 s: the process was likely stopped or sharing the CPU, before kfcn measured stopped time)"
    )
    assert _training_time({"epoch": log["epoch"][:2], "seconds": log["seconds"][:2]}) == "13.5 min"
    # The CPU time of the epochs that logged it, summed over the cores: 760 s + 820 s = 26.3 min.
    log["cpu_seconds"] = np.array([nan, nan, nan, nan, 760.0, 820.0])
    assert _training_time(log).endswith(
        "before kfcn measured stopped time; 26.3 min of CPU time, summed over the cores, in the 2 epochs that "
        "logged it)"
    )
    assert (
        _training_time(
            {"epoch": log["epoch"][:2], "seconds": log["seconds"][:2], "cpu_seconds": np.array([790.0, 800.0])}
        )
        == "13.5 min (26.5 min of CPU time, summed over the cores)"
    )


def test_the_statistics_sentence_says_validated_only_with_validation_data_and_only_a_complete_change():
    from kfcn.cli.card import _observation

    config = {"val_every": 1, "precise_bn": 0, "final_precise_bn": 2}
    summary = {"epochs_run": 1, "statistics_recomputed": {"precise_bn": 2, "epoch": 1, "complete": True}}
    moving = "Keras' moving batch-norm statistics"
    recomputed = "after the last epoch, model.keras's batch-norm statistics were recomputed over 2 batches"
    assert _observation(config, summary, validated=False) == f" {moving}; {recomputed} of training crops."
    assert _observation(config, summary) == f" Validated every epoch; {moving}; {recomputed} of training crops."
    summary["statistics_recomputed"]["complete"] = False  # stopped before model.keras held them: not done
    assert _observation(config, summary) == ""
    # With its validation before and after; an extension that kept the recomputed model.keras recomputes the same.
    summary["statistics_recomputed"] |= {"complete": True, "before": {"val_loss": 0.7, "val_mean_iou": 0.5}}
    summary["statistics_recomputed"]["after"] = {"val_loss": 0.6, "val_mean_iou": 0.53}
    assert _observation(config, summary).endswith("crops (validation before → after: val_mean_iou 0.5000 → 0.5300).")
    summary["statistics_recomputed"]["after"] = summary["statistics_recomputed"]["before"]
    assert _observation(config, summary).endswith("crops (validation unchanged: val_mean_iou 0.5000).")


def test_a_run_in_a_mixed_policy_says_its_model_keras_computes_in_float32():
    from kfcn.cli.card import _training_line

    config = {"steps": 50, "val_every": 1, "precise_bn": 0, "final_precise_bn": 0, "jit_compile": True}
    summary = {"epochs_run": 2, "keras": "3.15.1", "backend": "tensorflow"}
    log = {"epoch": np.array([1.0, 2.0]), "seconds": np.array([60.0, 60.0])}
    used = {"precision": "mixed_bfloat16", "jit_compile": False, "why": "as given"}
    mixed = _training_line(config | {"precision": "mixed_bfloat16", "precision_used": used}, summary, log)
    assert "computing in mixed_bfloat16 with XLA off. model.keras computes in float32" in mixed
    plain = _training_line(config | {"precision": "float32"}, summary, log)  # an older config: no precision_used
    assert "computing in float32 with XLA on." in plain and "model.keras computes" not in plain
