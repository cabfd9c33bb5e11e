"""`kfcn train` in-process on tiny data: what a run writes, configs, precision, divergence, batch-norm statistics."""

import json
import re
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from kfcn.cli import main
from kfcn.saving import load_model
from kfcn.training import read_log
from tests.cli.conftest import add_training_callback, train_command

pytestmark = pytest.mark.tensorflow_only(reason="tf.data pipelines")


def test_a_run_folder_holds_the_best_model_log_curves_and_config(isbi_crops, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(train_command(isbi_crops, run, "--weight-map", "unet")) == 0
    out = capsys.readouterr().out
    assert {p.name for p in run.iterdir()} == {
        "model.keras",
        "training.csv",
        "curves.png",
        "config.json",
        "summary.json",
        "backup",  # the last epoch's state: a larger --epochs extends the run
    }
    config = json.loads((run / "config.json").read_text())
    assert config["crop"] == 32 and config["loss"] == "ce+j2" and config["weight_map"] == "unet"
    log = read_log(run / "training.csv")
    assert log["epoch"].tolist() == [1, 2] and "val_pixel_error" in log
    # One numbering: the file's first column, the console's "Epoch k/2" and summary.json's best epoch.
    assert [line.split(",")[0] for line in (run / "training.csv").read_text().splitlines()] == ["epoch", "1", "2"]
    summary = json.loads((run / "summary.json").read_text())
    best = int(np.argmin(log["val_pixel_error"]))
    assert summary["best_epoch"] == best + 1 and f"at epoch {best + 1}:" in out
    assert summary["best"]["val_pixel_error"] == pytest.approx(log["val_pixel_error"][best])
    assert f"best val_pixel_error {log['val_pixel_error'][best]:.4f}" in out
    model = load_model(run / "model.keras")
    assert model.output.shape[-1] == 1 and Image.open(run / "curves.png").size[0] > 100
    # The finished run is not trained over by accident.
    assert main(train_command(isbi_crops, run, "--weight-map", "unet")) == 2
    assert "finished run" in capsys.readouterr().err


def test_config_file_with_flags_on_top(isbi_crops, tmp_path):
    config = tmp_path / "train.yaml"
    config.write_text("learning-rate: 0.002\naugment: geometric\nepochs: 1\nmodel_options:\n  upsampling: replicate\n")
    run = tmp_path / "run"
    assert (
        main([*train_command(isbi_crops, run), "--config", str(config), "--epochs", "1", "--schedule", "cosine"]) == 0
    )
    resolved = json.loads((run / "config.json").read_text())
    assert resolved["learning_rate"] == 0.002 and resolved["augment"] == "geometric"
    assert resolved["schedule"] == "cosine" and resolved["model_options"] == {"upsampling": "replicate"}
    assert any("up" in layer.name and "conv" in layer.name for layer in load_model(run / "model.keras").layers)


class ComputeDtypes(keras.callbacks.Callback):
    """Records, at each training start, what the model being trained computes in (its first convolution's)."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def on_train_begin(self, logs=None):
        convolution = next(layer for layer in self.model.layers if isinstance(layer, keras.layers.Conv2D))
        self.seen.append(convolution.compute_dtype)


def test_mixed_precision_trains_in_bfloat16_and_saves_a_float32_model(isbi_crops, tmp_path, monkeypatch):
    """Mixed precision is how the run computes, not part of the model: model.keras computes in float32 (so it
    exports to TFLite and runs at full speed on any CPU), with the float32 weights the run trained."""
    from kfcn.export import tflite
    from kfcn.models.precision import computes_in_float32

    dtypes = ComputeDtypes()
    add_training_callback(monkeypatch, dtypes)
    run = tmp_path / "run"
    assert main(train_command(isbi_crops, run, "--precision", "mixed_bfloat16", "--epochs", "1")) == 0
    assert dtypes.seen == ["bfloat16"]
    model = load_model(run / "model.keras")
    assert {w.dtype for w in model.weights} == {"float32"} and computes_in_float32(model)
    report = tflite(model, tmp_path / "model.tflite", input_shape=(32, 32))
    assert not [op for op in report["ops"] if op.startswith("Flex") or op == "CUSTOM"]


def test_auto_precision_follows_the_machine_once_and_a_resumed_run_keeps_it(isbi_crops, tmp_path, monkeypatch, capsys):
    """--precision auto: bfloat16 without XLA where the CPU has native BF16, float32 elsewhere; the choice is
    recorded, and an extension on a machine without BF16 keeps computing as the run began."""
    import kfcn.cli.train as train

    facts = train.machine()

    def pretend(bf16):
        monkeypatch.setattr(train, "machine", lambda: facts | {"bf16": bf16, "gpu": False})

    dtypes = ComputeDtypes()
    add_training_callback(monkeypatch, dtypes)
    pretend(True)
    run = tmp_path / "bf16"
    assert main(train_command(isbi_crops, run, "--precision", "auto", "--jit-compile", "--epochs", "1")) == 0
    used = json.loads((run / "config.json").read_text())["precision_used"]
    assert (used["precision"], used["jit_compile"]) == ("mixed_bfloat16", False)
    assert "precision: mixed_bfloat16, XLA off" in capsys.readouterr().out
    pretend(False)
    assert (
        main(train_command(isbi_crops, run, "--precision", "auto", "--jit-compile", "--epochs", "2")) == 0
    )  # extended
    config = json.loads((run / "config.json").read_text())
    assert config["precision_used"] == used and config["extended"] == [{"epochs_before": 1}]
    other = tmp_path / "float32"
    assert main(train_command(isbi_crops, other, "--precision", "auto", "--jit-compile", "--epochs", "1")) == 0
    used = json.loads((other / "config.json").read_text())["precision_used"]
    assert (used["precision"], used["jit_compile"]) == ("float32", True) and "no native BF16" in used["why"]
    assert dtypes.seen == ["bfloat16", "bfloat16", "float32"]  # the extension trained as the run began


def test_a_diverging_run_stops_at_the_first_nan_step_and_writes_nothing_of_that_epoch(isbi_crops, tmp_path, capsys):
    run = tmp_path / "run"
    diverging = ("--no-batch-norm", "--optimizer", "sgd", "--learning-rate", "1e6")  # the weights overflow at once
    assert main(train_command(isbi_crops, run, *diverging)) == 2
    error = capsys.readouterr().err
    # Which shows it first depends on the CPU: the loss (NaN where max/min propagate NaN), or the weights (where
    # oneDNN's AVX-512 kernels and the loss's clipping turn NaN into a number, so the loss stays finite).
    stopped = r"(the training loss became (nan|inf|-inf)|weight variables? \(.*\) became NaN or infinite \(.*\))"
    assert re.search(stopped + r" at epoch 1, step \d: the weights diverged", error), error
    assert "the same --output takes new settings" in error
    assert sorted(path.name for path in run.iterdir()) == ["config.json"]  # no log, model, backup or summary
    assert main(train_command(isbi_crops, run, "--no-batch-norm", "--optimizer", "sgd", "--learning-rate", "0.01")) == 0


def test_the_summary_picks_the_best_finite_epoch_as_the_checkpoint_did_and_refuses_none(tmp_path):
    from kfcn.cli.train import _summarize

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)], name="tiny")
    log = "epoch,loss,val_loss\n1,0.9,0.8\n2,0.7,NA\n3,0.6,0.5\n4,0.5,0.6\n"  # NA: NaN, as EpochLog writes it
    (tmp_path / "training.csv").write_text(log)
    _summarize(tmp_path, model, "val_loss", "min", None, None, minutes=1.0)
    assert json.loads((tmp_path / "summary.json").read_text())["best_epoch"] == 3  # numpy's argmin would say 2
    (tmp_path / "training.csv").write_text("epoch,loss,val_loss\n1,0.9,NA\n2,0.7,NA\n")
    (tmp_path / "summary.json").unlink()
    with pytest.raises(ValueError, match="no epoch logged a finite val_loss"):
        _summarize(tmp_path, model, "val_loss", "min", None, None, minutes=1.0)
    assert not (tmp_path / "summary.json").exists()


def test_config_values_of_the_wrong_type_are_named(isbi_crops, tmp_path, capsys):
    config = tmp_path / "train.yaml"
    config.write_text("learning_rate: 1e-3\n")  # YAML 1.1 reads this as text: taken as the number it spells
    assert main([*train_command(isbi_crops, tmp_path / "a", "--epochs", "1"), "--config", str(config)]) == 0
    assert json.loads((tmp_path / "a" / "config.json").read_text())["learning_rate"] == 0.001
    config.write_text("epochs: ten\n")
    assert main([*train_command(isbi_crops, tmp_path / "b")[:-4], "--config", str(config)]) == 2
    assert "--epochs must be an integer; got 'ten'" in capsys.readouterr().err
    assert not (tmp_path / "b" / "config.json").exists()


def test_help_shows_every_default(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for phrase in ("(default: 16)", "(default: 256)", "(default: 50)", "(default: elastic)", "(default: on)"):
        assert phrase in text, phrase


def test_precise_bn_and_val_every_change_what_is_measured_not_what_is_trained(isbi_crops, tmp_path):
    from kfcn.batch_norm import batch_norm_layers, recompute_batch_norm_statistics
    from kfcn.cli.train_data import data_pairs, statistics_batches

    options = ("--epochs", "3", "--val-fraction", "0.4", "--monitor", "loss")
    plain, observed = tmp_path / "plain", tmp_path / "observed"
    assert main(train_command(isbi_crops, plain, *options)) == 0
    assert main(train_command(isbi_crops, observed, *options, "--val-every", "2", "--precise-bn", "2")) == 0
    log, reference = read_log(observed / "training.csv"), read_log(plain / "training.csv")
    np.testing.assert_array_equal(log["loss"], reference["loss"])  # the same training, bit for bit
    assert np.isnan(log["val_loss"][0]) and np.isfinite(log["val_loss"][1:]).all()  # epoch 2 and the last, 3
    assert np.isfinite(reference["val_loss"]).all()
    # model.keras holds the same weights, with the batch-norm statistics of those weights on the run's batches.
    kept, same_weights = load_model(observed / "model.keras"), load_model(plain / "model.keras")
    for a, b in zip(kept.trainable_variables, same_weights.trainable_variables):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
    stored = [keras.ops.convert_to_numpy(layer.moving_mean) for layer in batch_norm_layers(kept)]
    config = json.loads((observed / "config.json").read_text())
    recompute_batch_norm_statistics(kept, statistics_batches(config, kept, data_pairs(config)[0]))
    for layer, before in zip(batch_norm_layers(kept), stored):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(layer.moving_mean), before, rtol=1e-5, atol=1e-6)
    moving = [keras.ops.convert_to_numpy(layer.moving_mean) for layer in batch_norm_layers(same_weights)]
    assert not all(np.allclose(a, b) for a, b in zip(moving, stored))


def test_a_finished_run_given_a_new_precise_bn_recomputes_the_statistics_of_its_model(
    isbi_crops, tmp_path, capsys, monkeypatch
):
    import shutil

    import kfcn.cli.train
    from kfcn.batch_norm import recompute_batch_norm_statistics
    from kfcn.cli.train_data import data_pairs, statistics_batches

    options = ("--val-fraction", "0.4", "--monitor", "loss")
    run = tmp_path / "run"
    assert main(train_command(isbi_crops, run, *options)) == 0
    shutil.copy(run / "model.keras", tmp_path / "trained.keras")
    shutil.rmtree(run / "backup")  # as kfcn < 0.2 left a finished run: the change is still dated after epoch 2
    # Stopped after model.keras got the new statistics but before config.json recorded it: the rerun ends the
    # change, and the scores "before" stay those of the trained model (checked below).
    write_json = kfcn.cli.train.write_json

    def stopped_at_config(path, value):
        if Path(path).name == "config.json":
            raise KeyboardInterrupt
        write_json(path, value)

    monkeypatch.setattr(kfcn.cli.train, "write_json", stopped_at_config)
    assert main(train_command(isbi_crops, run, *options, "--precise-bn", "3")) == 130
    monkeypatch.setattr(kfcn.cli.train, "write_json", write_json)
    capsys.readouterr()
    assert main(train_command(isbi_crops, run, *options, "--precise-bn", "3")) == 0
    out = capsys.readouterr().out
    assert "batch-norm statistics recomputed over 3 batch(es)" in out
    assert "scoring the validation images with the new statistics...\n  done in" in out  # progress, for a log too
    config = json.loads((run / "config.json").read_text())
    assert config["precise_bn"] == 3 and config["observation_changes"] == [{"after_epoch": 2, "precise_bn": [0, 3]}]
    kept, trained = load_model(run / "model.keras"), load_model(tmp_path / "trained.keras")
    for a, b in zip(kept.trainable_variables, trained.trainable_variables):  # the weights are untouched
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
    recompute_batch_norm_statistics(trained, statistics_batches(config, trained, data_pairs(config)[0]))
    assert_same_statistics(kept, trained)
    assert_change_reported(
        run,
        tmp_path / "trained.keras",
        "after the last epoch, model.keras's batch-norm statistics were recomputed over 3 batches of training crops",
    )
    # Nothing else may change on a finished run, and moving averages once replaced do not come back.
    for extra, words in (
        ((), "holds a finished run"),
        (("--val-every", "2"), "only --final-precise-bn (or --precise-bn) changes it"),
        (("--val-every", "2", "--precise-bn", "4"), "only --final-precise-bn (or --precise-bn) changes it"),
    ):
        assert main(train_command(isbi_crops, run, *options, "--precise-bn", "3", *extra)) == 2
        assert words in capsys.readouterr().err
    assert main(train_command(isbi_crops, run, *options)) == 2
    assert "cannot bring back Keras' moving averages" in capsys.readouterr().err
    assert json.loads((run / "config.json").read_text()) == config  # the refusals wrote nothing


def numpy_pixel_error(path, validation):
    """The pixel error of the binary model in `path` on the (image, 0/1 mask) pairs of `validation`, in NumPy."""
    model = load_model(path)
    pairs = [(image.numpy(), np.squeeze(mask.numpy()) > 0.5) for image, mask in validation]
    wrong = sum(np.sum((np.squeeze(model.predict(image[None], verbose=0)) > 0.5) != mask) for image, mask in pairs)
    return wrong / sum(mask.size for _, mask in pairs)


def assert_change_reported(run, trained, sentence):
    """summary.json's validation scores before and after the statistics change are the NumPy pixel errors of
    the `trained` file and of the run's model.keras, and the run's card says `sentence` with them."""
    from kfcn.cli.train_data import data_pairs

    validation = data_pairs(json.loads((run / "config.json").read_text()))[1]
    recomputed = json.loads((run / "summary.json").read_text())["statistics_recomputed"]
    for when, path in (("before", trained), ("after", run / "model.keras")):
        measured = numpy_pixel_error(path, validation)
        assert recomputed[when]["val_pixel_error"] == pytest.approx(measured, abs=1e-6), when
    assert recomputed["before"] != recomputed["after"] and recomputed["complete"]
    assert main(["card", str(run)]) == 0
    card = (run / "MODEL_CARD.md").read_text()
    before, after = (recomputed[when]["val_pixel_error"] for when in ("before", "after"))
    assert f"{sentence} (validation before → after: " in card and f"val_pixel_error {before:.4f} → {after:.4f}" in card
    return recomputed


def assert_same_statistics(ours, truth):
    from kfcn.batch_norm import batch_norm_layers

    for a, b in zip(batch_norm_layers(ours), batch_norm_layers(truth), strict=True):
        for name in ("moving_mean", "moving_variance"):
            np.testing.assert_allclose(
                keras.ops.convert_to_numpy(getattr(a, name)),
                keras.ops.convert_to_numpy(getattr(b, name)),
                rtol=1e-5,
                atol=1e-6,
            )


def test_final_precise_bn_gives_the_finished_model_the_statistics_of_its_batches(
    isbi_crops, tmp_path, capsys, monkeypatch
):
    import shutil

    import kfcn.cli.train
    from kfcn.batch_norm import recompute_batch_norm_statistics
    from kfcn.cli.train_data import data_pairs, statistics_batches

    options = ("--val-fraction", "0.4", "--monitor", "loss")
    plain, run = tmp_path / "plain", tmp_path / "run"
    assert main(train_command(isbi_crops, plain, *options)) == 0
    # Stopped once model.keras holds the new statistics, before summary.json says so: the rerun ends the step
    # and keeps the scores "before" of the trained model (checked below against the plain run's file).
    write_json = kfcn.cli.train.write_json

    def stopped_when_complete(path, value):
        if Path(path).name == "summary.json" and value.get("statistics_recomputed", {}).get("complete"):
            raise KeyboardInterrupt
        write_json(path, value)

    monkeypatch.setattr(kfcn.cli.train, "write_json", stopped_when_complete)
    assert main(train_command(isbi_crops, run, *options, "--final-precise-bn", "3")) == 130
    monkeypatch.setattr(kfcn.cli.train, "write_json", write_json)
    assert not json.loads((run / "summary.json").read_text())["statistics_recomputed"]["complete"]
    capsys.readouterr()
    assert main(train_command(isbi_crops, run, *options, "--final-precise-bn", "3")) == 0
    out = capsys.readouterr().out
    assert "batch-norm statistics recomputed over 3 batch(es)" in out and "Epoch" not in out  # no training again
    config = json.loads((run / "config.json").read_text())
    assert config["final_precise_bn"] == 3 and "observation_changes" not in config
    # The same weights as the run without the option, with the statistics of the batches of --precise-bn 3.
    kept, trained = load_model(run / "model.keras"), load_model(plain / "model.keras")
    for a, b in zip(kept.trainable_variables, trained.trainable_variables):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
    batches = statistics_batches(config | {"precise_bn": 3}, trained, data_pairs(config)[0])
    recompute_batch_norm_statistics(trained, batches)
    assert_same_statistics(kept, trained)
    recomputed = assert_change_reported(
        run,
        plain / "model.keras",
        "Validated every epoch; Keras' moving batch-norm statistics; after the last epoch, model.keras's batch-norm "
        "statistics were recomputed over 3 batches of training crops",
    )
    assert recomputed["epoch"] == read_log(run / "training.csv")["loss"].argmin() + 1
    # model.keras as it was before the step is kept (written before the stop above, never again after it).
    kept_path = run / f"model-epoch-{recomputed['epoch']:04d}-before-statistics.keras"
    assert recomputed["kept"] == kept_path.name and f"the model with the statistics they replaced is {kept_path}" in out
    before_step = load_model(kept_path)
    assert_same_statistics(before_step, load_model(plain / "model.keras"))  # the plain run's: no step yet
    kept_bytes = kept_path.read_bytes()
    # The plain run given the option once finished ends the same; then its command is a finished run's.
    shutil.rmtree(plain / "backup")
    assert main(train_command(isbi_crops, plain, *options, "--final-precise-bn", "3")) == 0
    assert "after the last epoch (2) of a finished run: --final-precise-bn 0 -> 3" in capsys.readouterr().out
    assert_same_statistics(load_model(plain / "model.keras"), kept)
    assert json.loads((plain / "config.json").read_text())["observation_changes"] == [
        {"after_epoch": 2, "final_precise_bn": [0, 3]}
    ]
    for extra, words in (
        ((), "holds a finished run"),
        (("--precise-bn", "2"), "takes its batch-norm statistics from --final-precise-bn 3: change that"),
        (("--val-every", "2"), "only --final-precise-bn (or --precise-bn) changes it"),
    ):
        assert main(train_command(isbi_crops, run, *options, "--final-precise-bn", "3", *extra)) == 2
        assert words in capsys.readouterr().err
    assert main(train_command(isbi_crops, run, *options)) == 2
    assert (
        f"--final-precise-bn 0 cannot bring back the ones they replaced (model.keras as it was before them is kept "
        f"as {kept_path})" in capsys.readouterr().err
    )
    assert json.loads((run / "config.json").read_text()) == config  # the refusals wrote nothing
    # Another number of batches recomputes them again, from the same weights; the kept copy stays the first one.
    assert main(train_command(isbi_crops, run, *options, "--final-precise-bn", "4")) == 0
    assert kept_path.read_bytes() == kept_bytes
    assert json.loads((run / "summary.json").read_text())["statistics_recomputed"]["precise_bn"] == 4


@pytest.mark.parametrize(
    "options, words",
    [
        (("--val-every", "2"), "--val-every 2 leaves epochs without a val_pixel_error"),
        (("--val-every", "0"), "--val-every must be a positive integer"),
        (("--precise-bn", "-1"), "--precise-bn must be a whole number of batches"),
        (("--precise-bn", "2", "--no-batch-norm"), "has no batch-normalisation layer"),
        (("--final-precise-bn", "-1"), "--final-precise-bn must be a whole number of batches"),
        (("--final-precise-bn", "2", "--no-batch-norm"), "--final-precise-bn 2: unet has no batch-normalisation"),
        (("--precise-bn", "2", "--devices", "all"), "--precise-bn recomputes the statistics on one device"),
        (("--final-precise-bn", "2", "--devices", "all"), "--final-precise-bn recomputes the statistics on one device"),
    ],
)
def test_observing_options_that_cannot_work_are_refused(isbi_crops, tmp_path, options, words, capsys):
    assert main(train_command(isbi_crops, tmp_path / "run", "--val-fraction", "0.4", *options)) == 2
    assert words in capsys.readouterr().err
    assert not (tmp_path / "run" / "training.csv").exists()
