"""`kfcn train`: a zoo model (or a .keras file to fine-tune) on an image/label folder or a TFDS dataset.

Writes into `--output RUN_DIR`: `model.keras` (the best epoch by the validation score),
`training.csv`, `curves.png`, `config.json` (every setting, resolved) and `summary.json`;
`backup/` holds the state while training runs, so rerunning the same command after an
interruption resumes at the epoch it stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from kfcn.cli.common import add_unsafe_option, write_json
from kfcn.cli.run_folder import (
    RECOMPUTE_STATISTICS,
    RESUME,
    held_by_this_process,
    kept_before_statistics,
    prepare_run_dir,
    replace_old_run,
)
from kfcn.cli.train_data import (
    check_image_sizes,
    check_statistics_option,
    crop_batches,
    data_pairs,
    density_targets,
    held_out_description,
    pixel_weights,
    statistics_batches,
    validation_batches,
    with_density_targets,
)
from kfcn.cli.train_options import OPTIONS, pixel_range, range_option, resolve


def register(commands):
    text = "train a zoo model (or fine-tune a .keras file) on image/label folders or a TFDS dataset"
    sub = commands.add_parser(
        "train", help=text, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub.add_argument("--config", default=argparse.SUPPRESS, help="YAML or JSON file of options (flags override it)")
    from kfcn.recipes import RECIPES

    for name, (default, kind, help_text, *choices) in OPTIONS.items():
        flag = "--" + name.replace("_", "-")
        if name == "recipe":
            help_text = help_text.format(names=", ".join(RECIPES))
        if default is not None and default != {}:  # shown, though the parser's own default is SUPPRESS
            shown = ("on" if default else "off") if kind == "bool" else default
            help_text = f"{help_text} (default: {shown})"
        if kind == "bool":
            sub.add_argument(flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=help_text)
        elif kind == "range":
            sub.add_argument(flag, type=range_option, default=argparse.SUPPRESS, metavar="LOW,HIGH", help=help_text)
        elif kind == "class_weights":
            metavar = "none|[sqrt-]median-frequency|W0,W1,..."
            sub.add_argument(flag, default=argparse.SUPPRESS, metavar=metavar, help=help_text)
        else:
            sub.add_argument(
                flag, type=kind, default=argparse.SUPPRESS, help=help_text, choices=choices[0] if choices else None
            )
    add_unsafe_option(sub)  # trust in a --model file is given per command, not recorded in config.json
    sub.set_defaults(run=run, needs_tensorflow=True)


def _check_fine_tuned_range(config, model):
    """A .keras model to fine-tune keeps its input range: the image files must be of its bit depth."""
    from kfcn.data.folder import pair_files
    from kfcn.image_io import check_bit_depth, common_dtype
    from kfcn.inference import input_range

    scaling = input_range(model)
    if scaling is None:
        return
    if config["input_range"] is not None and tuple(config["input_range"]) != scaling:
        raise ValueError(
            f"{config['model']} takes raw pixel values in [{scaling[0]:g}, {scaling[1]:g}] (its input_range), "
            f"which a fine-tuning run keeps; drop --input-range {config['input_range'][0]:g},"
            f"{config['input_range'][1]:g} or train a new model."
        )
    for images, labels in [(config["images"], config["labels"]), (config["val_images"], config["val_labels"])]:
        if images:
            paths = [image for image, _ in pair_files(images, labels)]
            check_bit_depth(common_dtype(paths), scaling, paths[0])


def precision_used(config, facts=None):
    """`{"precision", "jit_compile", "why"}`: what the run computes in. `--precision auto` is decided here, once,
    by the machine (`machine()` facts) and recorded; a resumed run keeps the recorded choice.

    bfloat16 pays only where the CPU has it natively: measured on the ISBI U-Net step (benchmarks/README.md,
    training_precision.py), mixed_bfloat16 without XLA ran 3.8x float32 on an AMX/AVX-512-BF16 Xeon and 1.9x on an
    AVX-512-BF16 EPYC without AMX, while XLA's CPU code gained nothing from it (0.79x, 0.95x) and an AVX2 CPU
    emulates it (0.56x).

    Example:
    >>> precision_used({"precision": "auto", "jit_compile": True}, {"bf16": False, "gpu": False})["precision"]
    'float32'
    >>> precision_used({"precision": "auto", "jit_compile": True}, {"bf16": True, "gpu": False})["jit_compile"]
    False
    """
    if config["precision"] != "auto":
        return {"precision": config["precision"], "jit_compile": config["jit_compile"], "why": "as given"}
    if config.get("precision_used") is not None:
        return config["precision_used"]
    facts = machine() if facts is None else facts
    if facts.get("gpu"):
        why = (
            "auto: a GPU, for which auto does not choose yet; pass --precision mixed_bfloat16 (Ampere or newer) or "
            "mixed_float16 for mixed precision there"
        )
        return {"precision": "float32", "jit_compile": config["jit_compile"], "why": why}
    if facts.get("bf16"):
        why = "auto: the CPU has native BF16 (avx512_bf16/amx_bf16); XLA off, as it gains nothing from BF16 on CPU"
        return {"precision": "mixed_bfloat16", "jit_compile": False, "why": why}
    return {"precision": "float32", "jit_compile": config["jit_compile"], "why": "auto: no native BF16 on this CPU"}


def build_model(config, channels, outputs, safe_mode=True):
    """A zoo model for the data, or the .keras file to fine-tune (checked against the data; loaded in safe mode
    unless `safe_mode=False`, i.e. `--unsafe`)."""
    import kfcn.models
    from kfcn.inference import model_geometry
    from kfcn.saving import load_model

    if config["model"].endswith(".keras"):
        model = load_model(config["model"], safe_mode=safe_mode)
        geometry = model_geometry(model)
        if geometry.channels != channels or model.outputs[0].shape[-1] != outputs:
            raise ValueError(
                f"{config['model']} takes {geometry.channels} channel(s) and gives {model.outputs[0].shape[-1]}, but "
                f"the data has {channels}-channel images and needs {outputs} output(s)."
            )
        _check_fine_tuned_range(config, model)
        return kfcn.models.with_policy(model, config["precision"])
    model = _build_zoo_model(config, channels, outputs)
    if config["label_mode"] == "density":
        from kfcn.training import fold_density_scale

        model = fold_density_scale(model, float(config["density_scale"]))
    if config["precision"] != "float32":
        return kfcn.models.with_policy(model, config["precision"])
    return model


def _build_zoo_model(config, channels, outputs):
    from kfcn.models import build, options

    name = config["model"]
    kwargs = {"filters": config["filters"], "batch_norm": config["batch_norm"]}
    if config["label_mode"] == "density":
        kwargs["head"] = "regression"  # linear: the network regresses density x --density-scale
    if "depth" in options(name):
        kwargs["depth"] = config["depth"]
    if "input_range" not in config["model_options"]:
        kwargs["input_range"] = pixel_range(config)
    try:
        return build(name, (None, None, channels), outputs, **(kwargs | config["model_options"]))
    except ValueError as error:
        if "has no option" in str(error):
            raise ValueError(f"--model-options: {error}") from None
        raise


def _check_crop(model, crop):
    from kfcn.inference import model_geometry

    geometry = model_geometry(model)
    if geometry.margin:
        raise ValueError(
            "kfcn train fits 'same'-padded models (output size = input size); this one has valid padding. Train "
            "padding='same' or use the Python API with labels cropped to the output."
        )
    if geometry.valid_input_size(model, crop) != crop:
        lower = (crop // geometry.multiple) * geometry.multiple
        raise ValueError(
            f"--crop {crop} does not suit the model (sides must be multiples of {geometry.multiple}); use "
            f"{max(lower, geometry.multiple)} or {lower + geometry.multiple}."
        )
    return geometry.multiple


def _compile(model, config, outputs):

    from kfcn import metrics
    from kfcn.training import make_optimizer, segmentation_loss

    optimizer = make_optimizer(
        config["optimizer"],
        config["learning_rate"],
        config["schedule"],
        total_steps=config["epochs"] * config["steps"],
        momentum=config["momentum"],  # sgd only (checked)
        ema=config["ema"],
        loss_scaling=config["precision"] == "mixed_float16",  # float16 gradients underflow without it
    )
    loss_weight = None
    if config["label_mode"] == "density":
        from kfcn.training import CountError

        # The loss of the density model times scale**2 (mse) or scale (mae) is the loss of the network before its
        # final Rescaling against targets x scale: the training of examples/count_cells.py, gradients and all.
        scale = float(config["density_scale"])
        loss_weight = scale**2 if config["loss"] == "mse" else scale
        scores = [CountError()]
    elif outputs == 1:
        scores = [metrics.PixelError(2), metrics.DiceScore(2, class_ids=[1], name="dice")]
    else:
        ignore = config["ignore_class"]
        scores = [
            metrics.PixelError(outputs, ignore_class=ignore),
            metrics.JaccardScore(outputs, ignore_class=ignore, name="mean_iou"),
        ]
    model.compile(
        optimizer=optimizer,
        loss=segmentation_loss(config["loss"], outputs, config["ignore_class"]),
        loss_weights=loss_weight,
        metrics=scores,
        jit_compile=config["jit_compile"],
    )
    return [score.name for score in scores]


def machine():
    """The facts about this computer that a training time depends on.

    Example:
    >>> facts = machine()
    >>> sorted(facts)
    ['avx512', 'bf16', 'cores', 'gpu', 'processor', 'system']
    """
    import platform

    flags, processor = set(), platform.processor() or platform.machine()
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        cpuinfo = ""
    for line in cpuinfo.splitlines():
        if line.startswith("model name") and ":" in line:
            processor = line.split(":", 1)[1].strip()
        if line.startswith("flags") and ":" in line:
            flags |= set(line.split(":", 1)[1].split())
    return {
        "processor": processor,
        "cores": os.cpu_count(),
        "avx512": "avx512f" in flags,
        "bf16": bool(flags & {"avx512_bf16", "amx_bf16"}),
        "gpu": _gpu_visible(),
        "system": f"{platform.system()} {platform.release()}",
    }


def _gpu_visible():
    """Whether the backend sees a GPU (TensorFlow's devices; JAX's or PyTorch's on those backends)."""
    import keras

    backend = keras.config.backend()
    if backend == "jax":
        import jax

        return any(device.platform == "gpu" for device in jax.devices())
    if backend == "torch":
        import torch

        return bool(torch.cuda.is_available())
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def _calibrate(config, run_dir, train):
    """--calibrate-counts: model.keras rescaled so that its total count on the training images is right.

    The factor is taken from the training images only (whole, as `kfcn predict` sees them) and
    multiplies the scale of the model's final Rescaling; calibrating a calibrated model again (an
    extended run whose best epoch did not change) applies a factor near 1. Returns what
    summary.json records: the factor of this calibration and the final Rescaling relative to
    1 / --density-scale (the total calibration of the network in model.keras). A model that counts
    nothing or less on them is left as it is, with a warning and the reason in summary.json.
    """
    from kfcn.saving import load_model, save_model
    from kfcn.training import calibrate_density_model

    path = run_dir / "model.keras"
    if not path.is_file():
        raise ValueError(
            f"--calibrate-counts: {path} was not written (no epoch was saved), so there is nothing to calibrate."
        )
    pairs = [(image.numpy(), int(mask.numpy().sum())) for image, mask in train]
    try:
        model, factor = calibrate_density_model(load_model(path), [image for image, _ in pairs], [n for _, n in pairs])
    except ValueError as error:  # a model that counts nothing: the run stays finished, uncalibrated, and says so
        print(f"warning: {path} left uncalibrated: {error}", file=sys.stderr)
        return {"calibration_factor": None, "calibration_skipped": str(error)}
    save_model(model, path)
    total = float(model.layers[-1].scale) * float(config["density_scale"])
    print(f"calibrated {path} on {len(pairs)} training image(s): counts x {factor:.4f} (x {total:.4f} in all)")
    return {"calibration_factor": factor, "total_calibration": total}


def run(args):
    from kfcn.atomic import check_writable

    config = resolve(args)
    with held_by_this_process(check_writable(Path(config["output"]), "--output folder")):
        run_dir, what = prepare_run_dir(config)
        if what == RECOMPUTE_STATISTICS:
            return _recompute_statistics(config, run_dir, not args.unsafe)
        resuming = what == RESUME
        if config["devices"] == "all":
            from kfcn.distribute import data_parallel

            with data_parallel() as replicas:  # build, compile and fit inside the scope
                if config["batch"] % replicas:
                    raise ValueError(
                        f"--batch {config['batch']} (the global batch) must be a multiple of the {replicas} devices."
                    )
                return _train(config, run_dir, resuming, not args.unsafe)
        return _train(config, run_dir, resuming, not args.unsafe)


def _train(config, run_dir, resuming, safe_mode=True):
    import keras

    from kfcn.distribute import replicas
    from kfcn.training import RemainingTime, monitor_mode, standard_callbacks

    keras.utils.set_random_seed(config["seed"])
    density = config["label_mode"] == "density"
    outputs = 1 if config["label_mode"] in ("binary", "density") else config["num_classes"]
    train, validation, channels = data_pairs(config)
    config["precision_used"] = precision_used(config)
    computing = config | {key: config["precision_used"][key] for key in ("precision", "jit_compile")}
    model = build_model(computing, channels, outputs, safe_mode)
    multiple = _check_crop(model, config["crop"])
    check_image_sizes(config)
    recorded = config.get("class_weight_values") is not None
    weights, weight_map = pixel_weights(config, train)
    target_map = density_targets(config) if density else None
    if density and validation is not None:
        validation = with_density_targets(validation, target_map)
    batches = crop_batches(config, model, train, weight_map, target_map)
    scores = _compile(model, computing, outputs)
    monitor = _monitored_quantity(config, scores, validation is not None, density, outputs)
    mode = monitor_mode(monitor, model)
    statistics = statistics_batches(config, model, train)
    check_statistics_option(config, model, "final_precise_bn")  # refused now, not after the training
    with replace_old_run(run_dir, enabled=config["overwrite"]) as old_run:  # every input is checked by now
        write_json(run_dir / "config.json", config)
        (run_dir / "summary.json").unlink(missing_ok=True)  # an extended run is unfinished until it ends again
        _announce(config, model, run_dir, resuming, validation, weights, recorded)
        started = time.time()
        model.fit(
            batches,
            epochs=config["epochs"],
            steps_per_epoch=config["steps"],
            shuffle=False,  # the crop pipeline shuffles, reproducibly
            validation_data=None if validation is None else validation_batches(validation, multiple, replicas()),
            validation_freq=_validation_epochs(config),
            verbose=1 if sys.stdout.isatty() else 2,  # a progress bar on a terminal, a line per epoch in a log
            callbacks=[
                keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: old_run.first_epoch_done()),
                RemainingTime(config["epochs"]),
                *standard_callbacks(
                    run_dir,
                    monitor,
                    mode,
                    patience=config["patience"],
                    ema=config["ema"],
                    crop_stream=batches,
                    precise_bn=statistics,
                ),
            ],
        )
    calibration = _calibrate(config, run_dir, train) if config["calibrate_counts"] else None
    _summarize(run_dir, model, monitor, mode, weights, calibration, minutes=(time.time() - started) / 60)
    if config["final_precise_bn"]:
        _recompute_statistics(config, run_dir, safe_mode)


def _recompute_statistics(config, run_dir, safe_mode=True):
    """A finished run's model.keras (its best epoch) gets the batch-norm statistics of its weights over N
    batches of training crops, the ones --precise-bn N would have used at that epoch: N is --final-precise-bn
    where that is set (at the end of the training, or given anew to the finished run), else a new
    --precise-bn. With validation data it is scored before and after (printed, and kept in summary.json under
    "statistics_recomputed", which `kfcn card` shows).

    The first such step on an epoch's model.keras keeps a copy of it as it was (`kept_before_statistics`), so
    the statistics it replaces are not lost; later steps on that epoch leave the copy alone.

    The copy, summary.json (the change, incomplete), model.keras, summary.json (complete) and config.json are
    written in that order: stopped before the end, rerunning the command recomputes the same statistics again
    (they do not depend on the ones they replace) and keeps the scores "before" that summary.json already holds
    for N."""
    import shutil

    from kfcn.atomic import atomic_path
    from kfcn.batch_norm import recompute_batch_norm_statistics
    from kfcn.distribute import replicas
    from kfcn.saving import load_model, save_model

    option = "final_precise_bn" if config["final_precise_bn"] else "precise_bn"
    count = config[option]
    path, summary_path = run_dir / "model.keras", run_dir / "summary.json"
    if not path.is_file():
        raise ValueError(f"{run_dir} holds a finished run without a model.keras (no epoch was saved): nothing to do.")
    model = load_model(path, safe_mode=safe_mode)
    train, validation, _ = data_pairs(config)
    statistics = statistics_batches(config, model, train, option)
    summary = json.loads(summary_path.read_text())
    earlier = summary.get("statistics_recomputed", {})  # of these N batches, stopped before it was recorded
    scores = {}
    if earlier.get("precise_bn") == count and "before" in earlier:
        scores["before"] = {key.removeprefix("val_"): value for key, value in earlier["before"].items()}
    if validation is not None:
        if config["label_mode"] == "density":
            validation = with_density_targets(validation, density_targets(config))
        outputs = 1 if config["label_mode"] in ("binary", "density") else config["num_classes"]
        used = config.get("precision_used") or precision_used(config)  # a run of kfcn < 0.2 did not record it
        _compile(model, config | {key: used[key] for key in ("precision", "jit_compile")}, outputs)
        batches = validation_batches(validation, _check_crop(model, config["crop"]), replicas())
        if "before" not in scores:
            scores["before"] = _timed(
                "scoring the validation images with its statistics",
                lambda: model.evaluate(batches, verbose=0, return_dict=True),
            )
    _timed(
        f"recomputing the batch-norm statistics over {count} batch(es) of training crops",
        lambda: recompute_batch_norm_statistics(model, statistics),
    )
    if validation is not None:
        scores["after"] = _timed(
            "scoring the validation images with the new statistics",
            lambda: model.evaluate(batches, verbose=0, return_dict=True),
        )
    kept = kept_before_statistics(run_dir, summary.get("best_epoch"))
    if not kept.exists() and earlier.get("complete", True):  # else model.keras may hold new statistics already
        with atomic_path(kept) as temporary:
            shutil.copyfile(path, temporary)
    summary["statistics_recomputed"] = {
        "precise_bn": count,
        "epoch": summary.get("best_epoch"),
        **{when: {f"val_{key}": float(value) for key, value in logged.items()} for when, logged in scores.items()},
        **({"kept": kept.name} if kept.exists() else {}),
        "complete": False,
    }
    write_json(summary_path, summary)
    save_model(model, path)
    write_json(summary_path, summary | {"statistics_recomputed": summary["statistics_recomputed"] | {"complete": True}})
    write_json(run_dir / "config.json", config)
    print(
        f"{path} (epoch {summary.get('best_epoch')}): batch-norm statistics recomputed over {count} "
        "batch(es) of training crops; the weights are unchanged"
        + (f"; the model with the statistics they replaced is {kept}" if kept.exists() else "")
    )
    for key in scores.get("after", {}):
        print(f"  val_{key}: {scores['before'][key]:.4f} -> {scores['after'][key]:.4f}")


def _timed(what, work):
    """Says what it does (a line, flushed, so a log shows it too), calls `work()`, says how long it took."""
    print(f"{what}...", flush=True)
    started = time.time()
    result = work()
    print(f"  done in {time.time() - started:.0f} s", flush=True)
    return result


def _validation_epochs(config):
    """Keras' `validation_freq`: every epoch, or every --val-every N-th (numbered from 1) and the last."""
    every, epochs = config["val_every"], config["epochs"]
    return 1 if every == 1 else sorted({*range(every, epochs + 1, every), epochs})


def default_monitor(validated, density, outputs):
    """The quantity that picks the best epoch when --monitor is not given: the count error of a density model, the
    pixel error of a one-channel one, else the mean IoU; validation's when the run has validation data.

    Example:
    >>> default_monitor(validated=True, density=False, outputs=11)
    'val_mean_iou'
    """
    return ("val_" if validated else "") + ("count_mae" if density else "pixel_error" if outputs == 1 else "mean_iou")


def _monitored_quantity(config, scores, validated, density, outputs):
    """--monitor, or the task's default (validation's when there is validation data), checked against the log."""
    monitor = config["monitor"] or default_monitor(validated, density, outputs)
    logged = ["loss", *scores] + ([f"val_{name}" for name in ("loss", *scores)] if validated else [])
    if monitor not in logged:
        hint = " (val_ quantities need validation data: --val-images/--val-labels or --val-fraction)"
        raise ValueError(
            f"--monitor {monitor} is not a logged quantity; choose one of {', '.join(logged)}"
            + (hint if monitor.startswith("val_") and not validated else "")
            + "."
        )
    if monitor.startswith("val_") and config["val_every"] > 1:
        raise ValueError(
            f"--val-every {config['val_every']} leaves epochs without a {monitor}, so it cannot pick the best "
            f"epoch{' (it is the default with validation data)' if not config['monitor'] else ''}: pass a "
            "training --monitor such as loss, or --val-every 1."
        )
    return monitor


def _announce(config, model, run_dir, resuming, validation, weights, recorded):
    print(
        f"{'resuming' if resuming else 'training'} {model.name} ({model.count_params():,} parameters) in {run_dir}"
        + (f" (extended to {config['epochs']} epochs)" if config.get("extended") else "")
    )
    print(held_out_description(config, validation))
    if validation is not None and config["val_every"] > 1:
        print(f"validating every {config['val_every']} epochs and at the last (--val-every)")
    if config["precise_bn"]:
        print(f"batch-norm statistics recomputed each epoch over {config['precise_bn']} batch(es) (--precise-bn)")
    if config["final_precise_bn"]:
        print(
            f"once the run has finished, model.keras's batch-norm statistics recomputed over "
            f"{config['final_precise_bn']} batch(es) (--final-precise-bn)"
        )
    used = config["precision_used"]
    if config["precision"] == "auto":
        print(f"precision: {used['precision']}, XLA {'on' if used['jit_compile'] else 'off'} ({used['why']})")
    if weights is not None:
        choice = config["class_weights"]
        source = "recorded in config.json" if recorded else choice if isinstance(choice, str) else "as given"
        shown = ", ".join(f"{index}: {weight:.4g}" for index, weight in enumerate(weights))
        print(f"class weights ({source}): {shown}")


def _summarize(run_dir, model, monitor, mode, weights, calibration, minutes):
    """Writes summary.json (the best epoch by the monitored quantity, the machine) and curves.png."""
    import keras

    from kfcn.training import best_logged_index, plot_training_curves, read_log

    log = read_log(run_dir / "training.csv")
    plot_training_curves(run_dir / "training.csv", run_dir / "curves.png", title=f"{model.name}: {run_dir.name}")
    values = log[monitor]
    best = best_logged_index(values, mode)  # the epoch the checkpoint kept
    if best is None:  # the checkpoint saves finite values only: there is no model.keras
        raise ValueError(
            f"no epoch logged a finite {monitor} (see {run_dir / 'training.csv'}), so no model.keras was saved; "
            "choose another --monitor, or check the validation images and labels."
        )
    summary = {
        "model": str(run_dir / "model.keras"),
        "monitor": monitor,
        "best_epoch": int(log["epoch"][best]),
        "best": {key: float(column[best]) for key, column in log.items() if key != "epoch"},
        "epochs_run": len(values),
        **({} if weights is None else {"class_weights": weights}),
        **({} if calibration is None else calibration),
        "minutes_this_session": round(minutes, 2),
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
        "machine": machine(),
    }
    write_json(run_dir / "summary.json", summary)
    print(
        f"best {monitor} {values[best]:.4f} at epoch {summary['best_epoch']}: {run_dir / 'model.keras'}; "
        f"curves in {run_dir / 'curves.png'}"
    )
