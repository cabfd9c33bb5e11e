"""`kfcn card RUN_DIR`: the model card of a `kfcn train` run folder, written from its files alone.

The card (`RUN_DIR/MODEL_CARD.md` by default) says what the model is, the command and every
setting that made it, the machine and the training time, the held-out scores at the selected
and at the last epoch, and links the curves; held-out tables (`--evaluation`) and analyses of
the model (`--analysis`: where its errors lie, say) follow, each refused unless it is of this
very model.keras. Rerun it after the run is extended and it is current again, so no card is
edited by hand.

Run on an unfinished run (still training, or stopped to be resumed), it writes a progress card:
the same card marked unfinished, with the epochs left and about how long they take at the
run's recent pace, and the curves so far (`RUN_DIR/curves.png`, which the run redraws at most
once a minute; the card only reads the run's files, so it never races the run's own writes).
"""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path

from kfcn.cli.common import file_sha256, shown_path

COMPANIONS = ("config.json", "training.csv", "curves.png")  # the run's files a card names


def register(commands):
    text = "write the model card (Markdown) of a kfcn train run folder"
    sub = commands.add_parser("card", help=text, description=__doc__)
    sub.add_argument(
        "folder", metavar="RUN", help="a kfcn train run folder (config.json, summary.json, training.csv, model.keras)"
    )
    sub.add_argument("--output", default=None, help="the card's path (default: RUN/MODEL_CARD.md)")
    sub.add_argument(
        "--evaluation",
        action="append",
        default=[],
        metavar="JSON",
        help="a `kfcn evaluate --json` report of the run's model.keras on held-out data, shown as the card's "
        "held-out table (repeat for several sets); refused if it scored another file",
    )
    sub.add_argument(
        "--analysis",
        action="append",
        default=[],
        metavar="JSON",
        help="a report of an analysis of the run's model.keras (a JSON object with its `model_sha256` and a "
        "`markdown` section, as examples/isbi_error_analysis.py writes), added to the card after the held-out "
        "tables (repeat for several); refused if it analysed another file",
    )
    sub.set_defaults(run=run)


def run(args):
    from kfcn.atomic import atomic_path

    folder = Path(args.folder)
    output = Path(args.output) if args.output else folder / "MODEL_CARD.md"
    # A card written outside its run folder (a shipped model's, beside it) takes the run's config.json, log
    # and curves along, as OUTPUT-STEM_config.json, _training.csv and _curves.png, so that what it names is
    # beside it.
    prefix = "" if output.parent.resolve() == folder.resolve() else output.stem + "_"
    text = model_card(folder, evaluations=args.evaluation, analyses=args.analysis, prefix=prefix)
    # Every file is written before any replaces its old version (the renames come last, together), so
    # that a stop while writing leaves the old card with its old companions, not a mix of two runs.
    with contextlib.ExitStack() as replaced_together:
        sources = {name: folder / name for name in COMPANIONS}
        companions = [name for name in COMPANIONS if prefix and sources[name].is_file()]
        for name in companions:
            temporary = replaced_together.enter_context(atomic_path(output.parent / (prefix + name)))
            if name == "config.json":  # with its paths as the card shows them: none of this machine
                config = json.loads(sources[name].read_text())
                temporary.write_text(
                    json.dumps({key: shown_path(value) for key, value in config.items()}, indent=2) + "\n"
                )
            else:
                temporary.write_bytes(sources[name].read_bytes())
        replaced_together.enter_context(atomic_path(output)).write_text(text)
    print(f"wrote {output}" + "".join(f", {output.parent / (prefix + name)}" for name in companions))
    if not (folder / "summary.json").is_file():
        print(_activity(folder))


def _activity(folder):
    """Whether an unfinished run is training now: printed, not written into the card, which outlives the moment."""
    from kfcn.cli.run_folder import training_now

    now = training_now(folder)
    if now is None:
        return "The run is unfinished."
    if now:
        return "The run is unfinished: a kfcn train process is training it now."
    return "The run is unfinished and no kfcn train process is training it: rerun its command to continue it."


def model_card(folder, evaluations=(), analyses=(), prefix=""):
    """The Markdown model card of the run folder `folder`.

    Args:
        folder: a `kfcn train` run folder.
        evaluations: paths of `kfcn evaluate --json` reports of the folder's `model.keras` on
            held-out data, each shown as a table (for segmentation with the whole set's scores
            per class).
        analyses: paths of JSON reports of analyses of the folder's `model.keras` (objects with its
            `model_sha256` and a `markdown` section, which the card shows after the held-out tables).
        prefix: the card names the run's files `config.json`, `training.csv` and `curves.png` with this prefix:
            the names of their copies beside a card written outside the run folder.

    A run without `summary.json` is unfinished (training, or stopped to be resumed): its card is
    marked so, says how many epochs are left and about how long they take, and names the best
    epoch so far (the one `model.keras` holds).

    Raises:
        ValueError: a folder that is no run folder or whose run has not saved a model yet, naming
            the missing file; a report that is not `kfcn evaluate`'s or that scored another model
            file (a stale one, after the run was extended); the same for an analysis.

    Example (a finished run folder `runs/cells`):
        kfcn evaluate held_out/images held_out/labels --model runs/cells/model.keras --json held_out.json
        kfcn card runs/cells --evaluation held_out.json
    """
    from kfcn.training import read_log

    folder = Path(folder)
    for name in ("config.json", "training.csv", "model.keras"):
        if not (folder / name).is_file():
            raise ValueError(
                f"{folder} has no {name}: `kfcn card` reads a `kfcn train` run folder"
                + (" once its first epoch has saved a model." if name == "model.keras" else ".")
            )
    config = json.loads((folder / "config.json").read_text())
    log = read_log(folder / "training.csv")
    model = _model_facts(folder / "model.keras")
    finished = (folder / "summary.json").is_file()
    summary = json.loads((folder / "summary.json").read_text()) if finished else _progress(config, log, model)
    held_out = [_held_out_section(Path(path), folder / "model.keras") for path in evaluations]
    analysed = [_analysis_section(Path(path), folder / "model.keras") for path in analyses]
    curves = (folder / "curves.png").is_file()  # an unfinished run's, once it has drawn them
    monitor, best = summary["monitor"], summary["best_epoch"]
    lines = [
        f"# {model['name']}: `{folder.name}`" + ("" if finished else f" (unfinished: {_epochs_logged(config, log)})"),
        "",
        f"A `{config['model']}` of {model['parameters']:,} parameters ({model['head']}, {model['outputs']} output "
        f"channel(s)), trained by `kfcn train` on {shown_path(config.get('images') or config.get('tfds'))}"
        + (f" (recipe `{config['recipe']}`)" if config.get("recipe") else "")
        + ". Input: raw pixel values of any size the strides allow; the model scales them itself."
        + _density_note(config, summary),
        "",
        *([] if finished else [_progress_note(config, log), ""]),
        "## How it was made",
        "",
        f"    kfcn train --config {prefix}config.json   # every setting below"
        + ("; config.json is in the run folder" if not prefix else ""),
        "",
        *_data_note(config),
        "| setting | value |",
        "|---|---|",
        *[
            f"| {key} | `{json.dumps(shown_path(value))}` |"
            for key, value in config.items()
            if key not in ("overwrite", "output")
        ],
        "",
        _training_line(config, summary, log, finished),
        "",
        "## Scores",
        "",
        f"`model.keras` is epoch {best}, the best by `{monitor}`"
        + ("" if finished else " so far")
        + (" (a validation score: the held-out data chose it)." if monitor.startswith("val_") else " (training data)."),
        "",
        _score_table(log, best),
        "",
        f"Every epoch's scores: `{prefix}training.csv`.",
        "",
        f"![training curves]({prefix}curves.png)" if curves else "",
        "",
        *held_out,
        *analysed,
    ]
    return "\n".join(lines)


def _progress(config, log, model):
    """What `summary.json` would say of an unfinished run that its files already tell: the monitored quantity and
    the best epoch so far (the one `model.keras` holds), and how many epochs ran."""
    from kfcn.cli.train import default_monitor
    from kfcn.training import best_logged_index, monitor_mode

    validated = any(key.startswith("val_") for key in log)
    monitor = config.get("monitor") or default_monitor(validated, config["label_mode"] == "density", model["outputs"])
    best = best_logged_index(log[monitor], monitor_mode(monitor))  # not None: model.keras exists, so one was finite
    return {"monitor": monitor, "best_epoch": int(log["epoch"][best]), "epochs_run": len(log["epoch"])}


def _epochs_logged(config, log):
    return f"{len(log['epoch'])} of {config['epochs']} epochs"


def _progress_note(config, log, recent=10):
    """What is left of an unfinished run and about how long it takes at the pace of its last `recent` epochs."""
    import numpy as np

    left = config["epochs"] - int(log["epoch"][-1])
    if left <= 0:
        return (
            f"**Unfinished:** all {config['epochs']} epochs ran, but the run stopped before it finished. Rerun the "
            "command that started it, from the folder it was started in, to finish it; then rerun `kfcn card`."
        )
    pace = ""
    seconds = log.get("seconds")
    if seconds is not None:
        stopped = np.nan_to_num(log.get("stopped_seconds", np.zeros(len(seconds))))
        worked = (seconds - stopped)[-recent:]
        worked = worked[np.isfinite(worked)]
        if len(worked):
            mean = float(worked.mean())
            pace = (
                f" At the pace of its last {len(worked)} logged epoch(s) ({mean:.0f} s each, validation included), "
                f"they take about {_duration(left * mean)}"
                + (
                    ", then the final batch-norm statistics step (`--final-precise-bn`)."
                    if config.get("final_precise_bn")
                    else "."
                )
            )
    return (
        f"**Unfinished:** {_epochs_logged(config, log)} have run; {left} are left.{pace} Rerun the command that "
        "started it, from the folder it was started in, to continue it (resume is exact); then rerun `kfcn card`. "
        "Until then this card reports progress: the scores are those of the best epoch so far."
    )


def _data_note(config):
    """Where the data of a recipe run come from (its folders are the run's, relative to where it ran)."""
    from kfcn.recipes import RECIPES, data_requirements

    if config.get("recipe") not in RECIPES or not data_requirements(config["recipe"])[0]:
        return []
    return [
        f"The image and label folders are relative to where the run was started; `kfcn train --recipe "
        f"{config['recipe']}` without `--images` says where its data come from and how to lay them out.",
        "",
    ]


def _training_line(config, summary, log, finished=True):
    """How long, where and with what the run trained, and how it was extended (an unfinished run records where and
    with which Keras when it ends, so its line says how far it got)."""
    machine = summary.get("machine", {})
    where = (
        f"{machine.get('processor')}, {machine.get('cores')} cores"
        + (", AVX-512" if machine.get("avx512") else "")
        + (", BF16" if machine.get("bf16") else "")
        if machine
        else "a machine it did not record"
    )
    extended = (
        " Extended from " + ", then ".join(f"{e['epochs_before']}" for e in config["extended"]) + " epochs."
        if config.get("extended")
        else ""
    )
    used = config.get("precision_used") or {"precision": config["precision"], "jit_compile": config["jit_compile"]}
    xla = "on" if used["jit_compile"] else "off"
    made = f"with Keras {summary.get('keras')} ({summary.get('backend')} backend) on {where}, " if finished else ""
    # kfcn train saves every model.keras computing in float32 (kfcn.checkpoints), whatever policy trained it.
    mixed = used["precision"] != "float32"
    saved = " model.keras computes in float32 (its weights were float32 throughout)." if mixed else ""
    return (
        f"Trained {'' if finished else 'so far '}for {summary['epochs_run']} epoch(s) of {config['steps']} steps in "
        f"{_training_time(log)}, {made}computing in {used['precision']} with XLA {xla}.{saved}"
        f"{extended}{_observation(config, summary, validated=any(key.startswith('val_') for key in log))}"
    )


def _observation(config, summary, validated=True):
    """What the run validated (when it had validation data) and which batch-norm statistics it kept, from which
    epoch that changed, and whether model.keras got new statistics after the run finished (with its validation
    before and after)."""
    words = {
        "val_every": lambda n: "validated every epoch" if n == 1 else f"validated every {n} epochs and at the last",
        "precise_bn": lambda n: (
            f"batch-norm statistics recomputed each epoch over {_batches(n)} of training crops"
            if n
            else "Keras' moving batch-norm statistics"
        ),
    }
    if not validated:
        words.pop("val_every")
    changes = config.get("observation_changes") or []
    recomputed = summary.get("statistics_recomputed") or {}
    finished = recomputed.get("complete", True) and recomputed.get("precise_bn")  # (kfcn 0.2 wrote no "complete")
    if not changes and config.get("val_every", 1) == 1 and not config.get("precise_bn") and not finished:
        return ""
    defaults = {"val_every": 1, "precise_bn": 0}  # a run of kfcn before these options had them so
    first = {  # the settings the run started with: before its first change, else as they are now
        key: next((change[key][0] for change in changes if key in change), config.get(key, defaults[key]))
        for key in words
    }
    text = "; ".join(words[key](first[key]) for key in words)
    text = " " + text[0].upper() + text[1:]
    for change in changes:
        shown = "; ".join(words[key](change[key][1]) for key in words if key in change)
        if change["after_epoch"] < summary["epochs_run"] and shown:  # after the last: the sentence below says it
            text += f"; from epoch {change['after_epoch'] + 1}: {shown}"
    if finished:
        text += (
            f"; after the last epoch, model.keras's batch-norm statistics were recomputed over "
            f"{_batches(recomputed['precise_bn'])} of training crops" + _validation_change(recomputed)
        )
    return text + "."


def _batches(count):
    return f"{count} batch{'es' if count != 1 else ''}"


def _validation_change(recomputed):
    """The scores of a statistics change: " (validation before → after: val_mean_iou 0.5290 → 0.5390)"."""
    before, after = recomputed.get("before", {}), recomputed.get("after", {})
    keys = [key for key in after if key != "val_loss" and key in before]
    if keys and all(before[key] == after[key] for key in keys):  # e.g. an extension that kept the recomputed model
        return f" (validation unchanged: {', '.join(f'{key} {after[key]:.4f}' for key in keys)})"
    shown = [f"{key} {before[key]:.4f} → {after[key]:.4f}" for key in keys]
    return f" (validation before → after: {', '.join(shown)})" if shown else ""


def _training_time(log):
    """The logged training time ("3.42 h", "25.1 min") without the time the process was stopped, the epochs
    logged without a time, or so slow that they likely include a pause kfcn did not measure, and the CPU time
    (which other work sharing the cores does not inflate, as it does the wall time)."""
    import numpy as np

    seconds = log.get("seconds")
    logged = [] if seconds is None else [value for value in seconds.tolist() if value == value]  # NaN: unlogged
    if not logged:
        return "an unlogged time (a run of kfcn < 0.2)"
    stopped = log.get("stopped_seconds", np.full(len(seconds), np.nan))  # NaN: not measured
    notes = []
    if np.nansum(stopped) >= 1:
        notes.append(f"not counting {_duration(float(np.nansum(stopped)))} when the process was stopped")
    unlogged = len(seconds) - len(logged)
    if unlogged:
        notes.append(f"and {unlogged} epoch(s) of kfcn < 0.2, unlogged")
    median = float(np.median(logged))
    slow = [  # stopped time not measured, and over 3x the median epoch: a likely pause
        (int(epoch), value)
        for epoch, value, pause in zip(log["epoch"], seconds, stopped)
        if value == value and pause != pause and value > 3 * median
    ]
    if slow:
        notes.append(
            f"epoch{'s' if len(slow) > 1 else ''} {', '.join(str(epoch) for epoch, _ in slow)} took "
            f"{', '.join(f'{value:.0f} s' for _, value in slow)}, over 3x the median epoch's {median:.0f} s: "
            "the process was likely stopped or sharing the CPU, before kfcn measured stopped time"
        )
    cpu = log.get("cpu_seconds", np.full(len(seconds), np.nan))  # NaN: kfcn did not log it yet
    measured = int(np.sum(cpu == cpu))
    if measured:
        notes.append(
            f"{_duration(float(np.nansum(cpu)))} of CPU time, summed over the cores"
            + ("" if measured == len(seconds) else f", in the {measured} epochs that logged it")
        )
    return _duration(sum(logged) - float(np.nansum(stopped))) + (f" ({'; '.join(notes)})" if notes else "")


def _duration(seconds):
    return f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def _density_note(config, summary):
    """For a density run: what the output means, and the count calibration if one was made."""
    if config.get("label_mode") != "density":
        return ""
    note = (
        " Output: a density map (dot annotations blurred by a Gaussian of sigma "
        f"{config.get('density_sigma')} px); its sum over an image or a region is the number of objects there."
    )
    factor = summary.get("calibration_factor")
    if factor is not None:
        note += (
            f" Counts were calibrated on the training images after training: x {factor:.4f} (`--calibrate-counts`);"
            " the count errors logged while training (`count_mae`, `val_count_mae`) are before that factor,"
            " `kfcn evaluate` scores the calibrated `model.keras`."
        )
    elif summary.get("calibration_skipped"):
        note += f" Count calibration was asked for but skipped: {summary['calibration_skipped']}"
    return note


def _score_table(log, best):
    from kfcn.checkpoints import RUN_COLUMNS

    names = [key for key in log if key != "epoch" and key not in RUN_COLUMNS]
    epochs = log["epoch"].astype(int).tolist()
    rows = {"selected": epochs.index(best), "last": len(epochs) - 1}
    header = "| epoch | " + " | ".join(names) + " |"
    body = [
        f"| {label}: {epochs[index]} | " + " | ".join(_score_cell(name, log[name][index]) for name in names) + " |"
        for label, index in rows.items()
    ]
    return "\n".join([header, "|---" * (len(names) + 1) + "|", *body])


def _score_cell(name, value):
    """A logged score to four decimals; a dash for validation an epoch did not run (`--val-every`)."""
    return "—" if name.startswith("val_") and math.isnan(value) else f"{value:.4f}"


def _model_facts(path):
    from kfcn.cli.inspect import head_description
    from kfcn.saving import load_model

    model = load_model(path)
    return {
        "name": model.name,
        "parameters": int(model.count_params()),
        "outputs": int(model.outputs[0].shape[-1]),
        "head": head_description(model),
    }


def _held_out_section(path, model_file):
    """Markdown of one `kfcn evaluate --json` report, checked to be of `model_file`."""
    try:
        report = json.loads(path.read_text())
        task, mean, per_image = report["task"], report["mean"], report["per_image"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(
            f"--evaluation {path}: not a `kfcn evaluate --json` report ({error}). Write one with "
            "kfcn evaluate IMAGES LABELS --model RUN/model.keras --json FILE."
        ) from None
    _check_of_model(report, model_file, f"--evaluation {path} scored", "kfcn evaluate")
    options = ", ".join(f"{key} {value}" for key, value in report.get("options", {}).items() if value is not None)
    lines = [
        f"## Held-out scores: `{shown_path(report.get('images'))}`",
        "",
        f"`kfcn evaluate` ({task}{'; ' + options if options else ''}) on {len(per_image)} image(s) the model did "
        "not train on. Means over images:",
        "",
        "| " + " | ".join(key for key, value in mean.items() if not isinstance(value, list)) + " |",
        "|---" * sum(not isinstance(value, list) for value in mean.values()) + "|",
        "| " + " | ".join(_number(value) for value in mean.values() if not isinstance(value, list)) + " |",
        "",
    ]
    whole = report.get("whole_set")
    if whole:
        lines += [
            f"The whole set as one confusion matrix (as CamVid results are published): global accuracy "
            f"**{whole['global_accuracy']:.4f}**, class average **{whole['class_accuracy']:.4f}**, mIoU "
            f"**{whole['mean_iou']:.4f}**.",
            "",
            "| class | IoU | accuracy | pixels |",
            "|---|---|---|---|",
            *[
                f"| {name} | {_number(iou)} | {_number(accuracy)} | {pixels:,} |"
                for name, iou, accuracy, pixels in zip(
                    whole["class_names"], whole["iou_per_class"], whole["accuracy_per_class"], whole["pixels_per_class"]
                )
            ],
            "",
        ]
    return "\n".join(lines)


def _analysis_section(path, model_file):
    """The Markdown section of an analysis report, checked to be of `model_file`."""
    try:
        report = json.loads(path.read_text())
        section = report["markdown"]
        if not isinstance(section, str):
            raise TypeError("its markdown is not text")
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(
            f"--analysis {path}: not an analysis report ({error}): a JSON object with the analysed file's "
            "model_sha256 and a markdown section, as examples/isbi_error_analysis.py writes."
        ) from None
    _check_of_model(report, model_file, f"--analysis {path} analysed", "the analysis")
    return section.rstrip("\n") + "\n"


def _check_of_model(report, model_file, what, command):
    """Refuses a report whose `model_sha256` is not `model_file`'s: its figures would be shown as this model's."""
    if report.get("model_sha256") != file_sha256(model_file):
        raise ValueError(
            f"{what} {report.get('model')!r}, not this run's {model_file.name} (another file, or the run has "
            f"changed since: it was extended or retrained). Rerun {command} on "
            f"{shown_path(str(model_file.resolve()))} and pass the new report."
        )


def _number(value):
    return "-" if value is None or value != value else f"{value:.4f}"
