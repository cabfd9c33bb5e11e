"""`kfcn train`: a zoo model (or a .keras file to fine-tune) on an image/label folder or a TFDS dataset.

Writes into `--output RUN_DIR`: `model.keras` (the best epoch by the validation score),
`training.csv`, `curves.png`, `config.json` (every setting, resolved) and `summary.json`;
`backup/` holds the state while training runs, so rerunning the same command after an
interruption resumes at the epoch it stopped.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

from kfcn.arguments import is_integer
from kfcn.cli.common import add_unsafe_option, write_json

ZOO = ("unet", "segnet", "fcn", "plain_cnn")  # kfcn.models.FAMILIES, kept here so `kfcn --help` loads no Keras
OPTIMIZERS = ("adam", "adamw", "sgd")

# name: (default, type, help[, choices]). Defaults apply unless --config or a flag sets the option.
OPTIONS = {
    "output": (None, str, "run folder: model.keras, training.csv, curves.png, config.json (required)"),
    "recipe": (None, str, "start from a named recipe shipped with kfcn ({names}); flags and --config override it"),
    "model": ("unet", str, f"{' | '.join(ZOO)}, or a .keras file to fine-tune"),
    "filters": (16, int, "base filters of a zoo model"),
    "depth": (4, int, "poolings of a zoo model (unet, segnet)"),
    "batch_norm": (True, "bool", "batch normalisation in a zoo model"),
    "model_options": ({}, json.loads, 'further builder arguments as JSON, e.g. \'{"upsampling": "replicate"}\''),
    "input_range": (
        None,
        "range",
        "raw pixel range LOW,HIGH the model scales to [0, 1] and intensity augmentation scales with (default: from "
        "the images' bit depth, 0,255 for 8-bit and 0,65535 for 16-bit files; needed for float images, e.g. 0,1; "
        "0,4095 suits 12-bit data in 16-bit files)",
    ),
    "images": (None, str, "folder of training images (raw pixel values)"),
    "labels": (None, str, "folder of label images paired by file name"),
    "tfds": (None, str, "TFDS dataset name instead of folders (examples with 'image' and 'label')"),
    "tfds_dir": (None, str, "TFDS data_dir"),
    "split": ("train", str, "TFDS training split"),
    "val_split": (None, str, "TFDS validation split"),
    "val_images": (None, str, "folder of validation images"),
    "val_labels": (None, str, "folder of validation labels"),
    "val_fraction": (0.2, float, "without validation folders or split: hold out this fraction (the last files)"),
    "val_every": (
        1,
        int,
        "validate every N epochs and at the last (N > 1 needs a training --monitor such as loss; may change when "
        "the run resumes)",
    ),
    "label_mode": (
        "binary",
        str,
        "binary: 0/1 or 0/255 masks (one sigmoid output); index: class indices; density: dot annotations, one "
        "object a pure red (255,0,0) pixel of an RGB image or a non-zero pixel of a single-channel one, regressed "
        "as density maps whose sum is the count (one linear output; loss mse, augment flips unless given)",
        ("binary", "index", "density"),
    ),
    "density_sigma": (2.0, float, "Gaussian width in px of a dot's density (--label-mode density)"),
    "density_scale": (
        100.0,
        float,
        "the network learns density x this (--label-mode density); model.keras divides by it, a final Rescaling",
    ),
    "calibrate_counts": (
        False,
        "bool",
        "after training, rescale model.keras so that its total count on the training images is right "
        "(--label-mode density; the factor goes into summary.json)",
    ),
    "num_classes": (None, int, "classes K for --label-mode index (softmax outputs)"),
    "ignore_class": (None, int, "label value left out of the loss and scores (--label-mode index)"),
    "crop": (256, int, "side of the random training crops"),
    "batch": (4, int, "crops per batch"),
    "augment": (
        "elastic",
        str,
        "paired augmentation (flips: flips and 90-degree turns only, exact for density maps; hflip: left-right "
        "mirrors only, for scenes with an up and a down such as road scenes)",
        ("none", "hflip", "flips", "geometric", "elastic", "intensity", "full"),
    ),
    "weight_map": (
        "none",
        str,
        "per-pixel weights: unet = the U-Net border weight map (binary labels)",
        ("none", "unet"),
    ),
    "class_weights": (
        "none",
        "class_weights",
        "weight each pixel's loss by its class (--label-mode index): median-frequency = SegNet's "
        "median(f) / f_c from the training labels (the ignore class 0); sqrt-median-frequency = its square "
        "root, which keeps rare classes up without painting large ones as rare; or one number a class, W0,W1,...",
    ),
    "loss": (
        "ce+j2",
        str,
        "loss (cross-entropy + squared-denominator Jaccard by default; mse or mae for --label-mode density)",
        ("ce+j2", "ce", "j2", "jaccard", "dice", "ce+dice", "mse", "mae"),
    ),
    "optimizer": ("adam", str, "optimizer", OPTIMIZERS),
    "momentum": (None, float, "momentum of --optimizer sgd (SegNet: 0.9; default none)"),
    "learning_rate": (1e-3, float, "learning rate (the peak of a cosine schedule)"),
    "schedule": ("constant", str, "learning-rate schedule", ("constant", "cosine")),
    "ema": (False, "bool", "validate and keep an exponential moving average of the weights"),
    "precise_bn": (
        0,
        int,
        "at each epoch's end, before validation and checkpoints, recompute the batch-norm statistics over N fixed "
        "batches of training crops (kfcn.batch_norm; the weights train as without it); 0 keeps Keras' moving "
        "averages (may change when the run resumes; on a finished run, recomputes model.keras's statistics)",
    ),
    "final_precise_bn": (
        0,
        int,
        "once the run has finished, recompute model.keras's batch-norm statistics over N batches of training crops "
        "(those of --precise-bn N), scoring the validation images before and after; 0 for none (a finished run "
        "given a new N recomputes them)",
    ),
    "epochs": (50, int, "epochs"),
    "steps": (50, int, "steps (batches) per epoch"),
    "patience": (None, int, "stop after this many epochs without a better validation score"),
    "monitor": (None, str, "quantity that picks the best epoch (default: val_pixel_error or val_mean_iou)"),
    "precision": (
        "float32",
        str,
        "compute precision; mixed: float32 weights, bfloat16/float16 compute (GPUs, BF16 CPUs); auto: "
        "mixed_bfloat16 without XLA on a CPU with native BF16 (avx512_bf16 or amx_bf16) and no GPU, else float32 "
        "with --jit-compile as set (recorded in config.json as precision_used, and kept when the run resumes)",
        ("float32", "mixed_bfloat16", "mixed_float16", "auto"),
    ),
    "jit_compile": (False, "bool", "compile the training step with XLA (faster on CPU with TensorFlow)"),
    "seed": (0, int, "seed of the crops, the augmentation and the initial weights"),
    "devices": (
        "one",
        str,
        "all: data parallel over every local device; --batch is the global batch",
        ("one", "all"),
    ),
    "overwrite": (False, "bool", "start again in a run folder that holds a finished or different run"),
}
TYPE_WORDS = {float: "a number", int: "an integer", str: "text", "bool": "true or false"}
BIT_DEPTH_FLAG = "--input-range LOW,HIGH"
CLASS_WEIGHTS_WORDS = ("none", "median-frequency", "sqrt-median-frequency")
# What a run records beside its options in config.json (read back by a resumed run, not an option).
RECORDED = ("extended", "class_weight_values", "precision_used", "observation_changes")
# Options that change what a run measures and keeps (validation epochs, batch-norm statistics), never the
# weights it trains: a resumed or extended run may change them (config.json records each change).
OBSERVING = ("val_every", "precise_bn", "final_precise_bn")
# What `prepare_run_dir` finds a run folder asks for: a new run, the rest of an interrupted or extended one,
# or new batch-norm statistics for a finished run's model.keras.
START, RESUME, RECOMPUTE_STATISTICS = "start", "resume", "recompute statistics"
# Where --label-mode density defaults otherwise, unless a recipe, --config or a flag sets the option.
DENSITY_DEFAULTS = {"loss": "mse", "augment": "flips"}
DENSITY_LOSSES = ("mse", "mae")
RUN_FILES = ("model.keras", "training.csv", "curves.png", "config.json", "summary.json")
# What --overwrite moves aside: the run's files, its card and its models kept before new statistics (all the old run's).
REPLACED_RUN_FILES = (*RUN_FILES, "MODEL_CARD.md", "backup", "model-epoch-*-before-statistics.keras")


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
            sub.add_argument(flag, type=_range_option, default=argparse.SUPPRESS, metavar="LOW,HIGH", help=help_text)
        elif kind == "class_weights":
            metavar = "none|[sqrt-]median-frequency|W0,W1,..."
            sub.add_argument(flag, default=argparse.SUPPRESS, metavar=metavar, help=help_text)
        else:
            sub.add_argument(
                flag, type=kind, default=argparse.SUPPRESS, help=help_text, choices=choices[0] if choices else None
            )
    add_unsafe_option(sub)  # trust in a --model file is given per command, not recorded in config.json
    sub.set_defaults(run=run, needs_tensorflow=True)


def read_config(path):
    """Options from a YAML or JSON file; keys are option names (`learning_rate` or `learning-rate`)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"Config file {path} does not exist.")
    text = path.read_text()
    try:
        if path.suffix.lower() == ".json":
            values = json.loads(text)
        else:
            import yaml

            values = yaml.safe_load(text)
    except (ValueError, ImportError) as error:  # json.JSONDecodeError and yaml.YAMLError are ValueErrors or not
        raise ValueError(f"Config file {path} cannot be read: {error}") from None
    except Exception as error:  # yaml.YAMLError
        raise ValueError(f"Config file {path} is not valid YAML: {' '.join(str(error).split())}") from None
    if not isinstance(values, dict):
        raise ValueError(f"Config file {path} must hold a mapping of option names to values.")
    options = {}
    for recorded in RECORDED:  # a run folder's config.json records these beside its options
        values.pop(recorded, None)
    for key, value in values.items():
        name = str(key).replace("-", "_")
        if name not in OPTIONS:
            raise ValueError(f"Config file {path}: unknown option {key!r}; see `kfcn train --help`.")
        options[name] = value
    return options


def resolve(args):
    """Defaults, then the recipe (if any), then the --config file, then the flags given on the command line."""
    given = {name: value for name, value in vars(args).items() if name in OPTIONS}
    from_file = read_config(args.config) if getattr(args, "config", None) else {}
    recipe_name = given.get("recipe", from_file.get("recipe"))
    from_recipe = {}
    if recipe_name is not None:
        from kfcn.recipes import recipe

        from_recipe = recipe(recipe_name)
    chosen = from_recipe | from_file | given
    config = {name: spec[0] for name, spec in OPTIONS.items()} | chosen
    if config["label_mode"] == "density":
        config |= {name: value for name, value in DENSITY_DEFAULTS.items() if name not in chosen}
    if recipe_name is not None:
        _check_recipe_data(recipe_name, config)
    _check_types(config)
    _check(config)
    return config


def _check_recipe_data(name, config):
    """A recipe whose data kfcn does not ship names the options that must give it."""
    from kfcn.recipes import data_requirements

    required, where = data_requirements(name)
    if config["tfds"]:  # the data given another way; _check refuses both ways at once
        return
    missing = [option for option in required if not config[option]]
    if missing:
        flags = " ".join(f"--{option.replace('_', '-')} DIR" for option in missing)
        raise ValueError(f"Recipe {name} trains on data kfcn does not ship: give {flags}. {where}".strip())


def _check_types(config):
    """Each option has its declared type; a number written as text (YAML reads `1e-3` as a string) is read."""
    for name, (default, kind, *_) in OPTIONS.items():
        value = config[name]
        if value is None or value == default:
            continue
        flag = "--" + name.replace("_", "-")
        if kind is float and isinstance(value, str):
            try:
                config[name] = value = float(value)
            except ValueError:
                raise ValueError(f"{flag} must be a number; got {value!r}.") from None
        if kind in TYPE_WORDS:
            fits = {
                float: is_integer(value) or isinstance(value, float),
                int: is_integer(value),
                str: isinstance(value, str),
                "bool": isinstance(value, bool),
            }[kind]
            if not fits:
                raise ValueError(f"{flag} must be {TYPE_WORDS[kind]}; got {value!r} ({type(value).__name__}).")


def _check(config):
    if not config["output"]:
        raise ValueError("--output RUN_DIR is required: the folder for the model, the log and the curves.")
    if bool(config["tfds"]) == bool(config["images"] or config["labels"]):
        raise ValueError("Give the training data either as --images DIR --labels DIR or as --tfds NAME.")
    if not config["tfds"] and not (config["images"] and config["labels"]):
        raise ValueError("--images and --labels go together: the image folder and the label folder.")
    if bool(config["val_images"]) != bool(config["val_labels"]):
        raise ValueError("--val-images and --val-labels go together.")
    _check_density(config)
    if config["label_mode"] == "index" and not config["num_classes"]:
        raise ValueError("--label-mode index needs --num-classes K (labels hold class indices 0..K-1).")
    if config["label_mode"] == "binary" and config["num_classes"] not in (None, 1, 2):
        raise ValueError("--label-mode binary trains one sigmoid output; for K classes use --label-mode index.")
    if config["ignore_class"] is not None and config["label_mode"] != "index":
        raise ValueError("--ignore-class applies to --label-mode index.")
    _check_class_weights(config)
    if config["weight_map"] == "unet" and config["label_mode"] != "binary":
        raise ValueError("--weight-map unet needs --label-mode binary (0/1 masks).")
    for name in ("filters", "depth", "crop", "batch", "epochs", "steps", "val_every"):
        if not is_integer(config[name]) or config[name] < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be a positive integer; got {config[name]!r}.")
    for name in ("precise_bn", "final_precise_bn"):
        if not is_integer(config[name]) or config[name] < 0:
            flag = f"--{name.replace('_', '-')}"
            raise ValueError(f"{flag} must be a whole number of batches, 0 for none; got {config[name]!r}.")
    if config["final_precise_bn"] and config["calibrate_counts"]:
        raise ValueError(
            "--final-precise-bn would give model.keras new batch-norm statistics after --calibrate-counts rescaled "
            "it, leaving the calibration stale. Use --precise-bn N instead (each epoch's statistics, then the "
            "calibration, in that order)."
        )
    if config["momentum"] is not None:
        if config["optimizer"] != "sgd":
            raise ValueError(
                f"--momentum is for --optimizer sgd; {config['optimizer']} keeps its own moment estimates. "
                "Drop --momentum or use --optimizer sgd."
            )
        if not 0 <= config["momentum"] < 1:
            raise ValueError(f"--momentum must lie in [0, 1), e.g. 0.9; got {config['momentum']}.")
    if not 0 <= config["val_fraction"] < 1:
        raise ValueError(f"--val-fraction must lie in [0, 1); got {config['val_fraction']}.")
    if not config["learning_rate"] > 0:
        raise ValueError(f"--learning-rate must be positive; got {config['learning_rate']}.")
    model = config["model"]
    if model not in ZOO and not str(model).endswith(".keras"):
        raise ValueError(f"--model must be one of {', '.join(ZOO)} or a .keras file; got {model!r}.")
    if str(model).endswith(".keras") and not Path(model).is_file():
        raise ValueError(f"Model file {model} does not exist.")
    if not isinstance(config["model_options"], dict):
        raise ValueError("--model-options must be a JSON object of builder arguments.")
    if config["input_range"] is not None:
        try:
            config["input_range"] = _range_option(config["input_range"])  # a config file's text or list
        except argparse.ArgumentTypeError as error:
            raise ValueError(str(error)) from None
        if config["model_options"].get("input_range") is not None:
            raise ValueError("Give the pixel range once: --input-range or input_range in --model-options, not both.")


def _check_density(config):
    """--label-mode density: dots regressed as density maps; the options of class labels are refused by name."""
    density = config["label_mode"] == "density"
    if not density:
        if config["loss"] in DENSITY_LOSSES:
            raise ValueError(
                f"--loss {config['loss']} is for --label-mode density (density maps); masks and class labels take "
                "ce+j2, ce, j2, jaccard, dice or ce+dice."
            )
        if config["calibrate_counts"]:
            raise ValueError("--calibrate-counts applies to --label-mode density (a counting model).")
        return
    refused = {
        "weight_map": (config["weight_map"] != "none", "--weight-map unet weighs the borders of binary masks"),
        "class_weights": (config["class_weights"] != "none", "--class-weights weighs class labels"),
        "num_classes": (config["num_classes"] is not None, "--num-classes counts classes"),
        "ignore_class": (config["ignore_class"] is not None, "--ignore-class leaves a class out"),
        "tfds": (bool(config["tfds"]), "--tfds reads segmentation labels"),
    }
    for given, why in refused.values():
        if given:
            raise ValueError(
                f"{why}, but --label-mode density trains one density output from dot annotations: drop it "
                "(density labels are folders: --images DIR --labels DIR)."
            )
    if config["loss"] not in DENSITY_LOSSES:
        raise ValueError(
            f"--loss {config['loss']} is a segmentation loss; --label-mode density regresses density maps with "
            "--loss mse (the default there) or mae."
        )
    if config["augment"] in ("geometric", "elastic", "full"):
        raise ValueError(
            f"--augment {config['augment']} resamples the label maps by nearest neighbour (rotations, zooms, elastic "
            "warps), which changes a density map's sum, the count; use --augment flips (flips and 90-degree turns, "
            "the default with --label-mode density), hflip, intensity or none."
        )
    for name in ("density_sigma", "density_scale"):
        value = config[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise ValueError(f"--{name.replace('_', '-')} must be a positive number; got {value!r}.")


def _check_class_weights(config):
    """--class-weights: "none", "[sqrt-]median-frequency" or one number a class, normalised to a list of floats."""
    value = config["class_weights"]
    if value == "none":
        return
    if config["weight_map"] == "unet":
        raise ValueError(
            "--class-weights and --weight-map unet do not combine: the U-Net weight map is for binary masks and "
            "already balances the two classes (its w_c term). Drop one of them."
        )
    if config["label_mode"] != "index":
        raise ValueError(
            "--class-weights applies to --label-mode index (class-index labels); for binary masks use "
            "--weight-map unet, whose w_c term balances the two classes."
        )
    if value in CLASS_WEIGHTS_WORDS:
        return
    config["class_weights"] = _explicit_class_weights(value, config["num_classes"])


def _explicit_class_weights(value, num_classes):
    """`W0,W1,...` (a flag's text, or a config file's list) as a list of `num_classes` floats."""
    fix = (
        "give none, median-frequency, sqrt-median-frequency, or "
        f"{num_classes} comma-separated numbers W0,...,W{num_classes - 1}"
    )
    parts = [part.strip() for part in value.split(",")] if isinstance(value, str) else value
    if isinstance(parts, (str, bytes)) or not isinstance(parts, (list, tuple)):
        raise ValueError(f"--class-weights: {value!r} is not a list of weights; {fix}.")
    weights = []
    for index, part in enumerate(parts):
        try:
            if isinstance(part, bool):
                raise TypeError
            weight = float(part)
        except (TypeError, ValueError):
            raise ValueError(f"--class-weights: {part!r} (class {index}) is not a number; {fix}.") from None
        if not math.isfinite(weight) or weight < 0:
            raise ValueError(
                f"--class-weights: the weight of class {index} is {part!r}; weights must be finite and >= 0."
            )
        weights.append(weight)
    if len(weights) != num_classes:
        raise ValueError(
            f"--class-weights: {len(weights)} weight(s) for --num-classes {num_classes}; {fix} (one a class, the "
            "ignore class included if it is one of them; its weight is 0 whatever is given)."
        )
    if not any(weights):
        raise ValueError(
            "--class-weights: every weight is 0, which leaves every pixel out of the loss; give at least one "
            "positive weight."
        )
    return weights


def _range_option(value):
    """`LOW,HIGH` (a flag, or a config file's text or list) as `[low, high]`, finite with low < high."""
    parts = value.split(",") if isinstance(value, str) else value
    try:
        low, high = (float(part) for part in parts)
    except (TypeError, ValueError):
        low = high = math.nan
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise argparse.ArgumentTypeError(
            f"--input-range takes LOW,HIGH with LOW < HIGH, the raw pixel range (e.g. 0,65535 for 16-bit images, "
            f"0,1 for float images scaled to [0, 1]); got {value!r}."
        )
    return [low, high]


def _pixel_range(config):
    """The training images' raw pixel range: --input-range, or read off the image files' bit depth
    (`kfcn.image_io.pixel_range`: mixed bit depths and float files are refused, naming the flag)."""
    if config["input_range"] is not None:
        return tuple(config["input_range"])
    if config["tfds"]:
        return (0, 255)  # _pairs refuses TFDS images that are not uint8 without --input-range
    from kfcn.data.folder import pair_files
    from kfcn.image_io import pixel_range

    folders = [(config["images"], config["labels"]), (config["val_images"], config["val_labels"])]
    paths = [image for images, labels in folders if images for image, _ in pair_files(images, labels)]
    return pixel_range(paths, option=BIT_DEPTH_FLAG)


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


def prepare_run_dir(config):
    """Checks the run folder: returns `(run_dir, what)`, deleting nothing; `what` is START, RESUME or
    RECOMPUTE_STATISTICS.

    Rerunning the command of an interrupted run resumes it; the same command with a larger
    `--epochs`, on a finished or an interrupted run, extends it (`config.json` records
    each extension under "extended"). The OBSERVING options (`--val-every`, `--precise-bn`,
    `--final-precise-bn`) may change on either, recorded under "observation_changes". A finished run given a new
    `--final-precise-bn N` (or, without one, a new `--precise-bn N`; N > 0) and nothing else new recomputes
    its model.keras's batch-norm statistics over those N batches (RECOMPUTE_STATISTICS), as the last epoch
    would have with `--precise-bn N`; so does its own command where that step was stopped. A finished
    run with the same settings, or a run with other settings, is refused unless `--overwrite`; its files
    are replaced only by `replace_old_run`, after every input has been checked. A folder whose run never
    completed an epoch (no log, no backup) starts afresh with any settings. Run files that
    are symbolic links are refused: writing through them would overwrite files outside the
    run folder.
    """
    from kfcn.atomic import check_writable

    run_dir = check_writable(Path(config["output"]), "--output folder")
    links = [name for name in (*RUN_FILES, "backup") if (run_dir / name).is_symlink()]
    if links:
        raise ValueError(
            f"{run_dir} holds symbolic links ({', '.join(links)}); a run writes its own files there and would "
            "overwrite what they point to. Remove the links or choose another --output."
        )
    saved = run_dir / "config.json"
    started = (run_dir / "training.csv").is_file() or (run_dir / "backup").exists()
    if config["overwrite"]:
        return run_dir, START
    if saved.is_file() and started:
        before = json.loads(saved.read_text())
        # An option added to kfcn after the run started counts as its default.
        before_options = {k: before.get(k, spec[0]) for k, spec in OPTIONS.items() if k != "overwrite"}
        changed = sorted(k for k in before_options if before_options[k] != config[k])
        observing = [k for k in changed if k in OBSERVING]
        changed = [k for k in changed if k not in OBSERVING]
        finished = (run_dir / "summary.json").is_file()
        if changed == ["epochs"] and config["epochs"] > before["epochs"]:
            if not (run_dir / "backup").is_dir():
                raise ValueError(
                    f"{run_dir} holds a finished run without its last state (backup/), which runs of kfcn before "
                    "0.2 deleted: it cannot be extended exactly. Fine-tune its model.keras in a new run folder "
                    "(--model RUN/model.keras) instead."
                )
            config["extended"] = [*before.get("extended", []), {"epochs_before": before["epochs"]}]
            _keep_recorded_class_weights(config, before)
            _record_observation_changes(config, before, before_options, observing, run_dir)
            return run_dir, RESUME
        # A finished run stopped while its model.keras took the statistics of --final-precise-bn ends that.
        if finished and not changed and not observing and not _final_statistics_pending(config, run_dir):
            raise ValueError(
                f"{run_dir} holds a finished run ({run_dir / 'model.keras'}); raise --epochs to extend it, pass "
                "--overwrite to train again, or choose another --output."
            )
        if changed:
            raise ValueError(
                f"{run_dir} holds {'a finished' if finished else 'an interrupted'} run with other settings "
                f"({', '.join(changed)} differ); rerun it with the same options to resume (a larger --epochs "
                "extends it), pass --overwrite to start again, or choose another --output."
            )
        if finished:
            _check_statistics_change(config, before_options, observing)
        config["extended"] = before.get("extended", [])
        _keep_recorded_class_weights(config, before)
        _record_observation_changes(config, before, before_options, observing, run_dir, finished=finished)
        return run_dir, RECOMPUTE_STATISTICS if finished else RESUME
    if started or (run_dir / "model.keras").exists() or (run_dir / "summary.json").exists():
        raise ValueError(f"{run_dir} holds files of another run; pass --overwrite or choose another --output.")
    return run_dir, START


def _kept_note(config):
    """For a refusal: where a finished run keeps its model.keras as it was before its statistics were recomputed."""
    run_dir = Path(config["output"])
    try:
        kept = json.loads((run_dir / "summary.json").read_text()).get("statistics_recomputed", {}).get("kept")
    except (OSError, ValueError):
        kept = None
    if kept and (run_dir / kept).is_file():
        return f"model.keras as it was before them is kept as {run_dir / kept}"
    return "no copy of them was kept"


def _check_statistics_change(config, before_options, observing):
    """A finished run can take new batch-norm statistics, not give back the ones it replaced: its model.keras's
    statistics come from --final-precise-bn N where that is set, else from --precise-bn N."""
    others = [key for key in observing if key not in ("precise_bn", "final_precise_bn")]
    if others:
        shown = ", ".join(f"--{key.replace('_', '-')} {before_options[key]}" for key in others)
        raise ValueError(
            f"{config['output']} holds a finished run: only --final-precise-bn (or --precise-bn) changes it (its "
            f"model.keras's batch-norm statistics); rerun with the recorded {shown}, or raise --epochs to extend "
            "the run."
        )
    if "final_precise_bn" in observing and not config["final_precise_bn"]:
        raise ValueError(
            f"{config['output']} holds a finished run whose model.keras keeps the statistics of --final-precise-bn "
            f"{before_options['final_precise_bn']}; --final-precise-bn 0 cannot bring back the ones they replaced "
            f"({_kept_note(config)}). Rerun with the recorded --final-precise-bn, or give another number of batches."
        )
    if config["final_precise_bn"]:
        if "precise_bn" in observing:
            raise ValueError(
                f"{config['output']} holds a finished run whose model.keras takes its batch-norm statistics from "
                f"--final-precise-bn {config['final_precise_bn']}: change that, and rerun with the recorded "
                f"--precise-bn {before_options['precise_bn']}."
            )
        return
    if not config["precise_bn"]:
        raise ValueError(
            f"{config['output']} holds a finished run whose model.keras keeps the statistics of --precise-bn "
            f"{before_options['precise_bn']}; --precise-bn 0 cannot bring back Keras' moving averages, which it "
            f"replaced ({_kept_note(config)}). Rerun with the recorded --precise-bn, or raise --epochs to train on "
            "with moving averages."
        )
    if config["calibrate_counts"]:
        raise ValueError(
            "--calibrate-counts: new batch-norm statistics would leave the finished run's count calibration stale. "
            "Start a run with --precise-bn instead (each epoch's statistics, then the calibration, in that order)."
        )


def _final_statistics_pending(config, run_dir):
    """Whether a finished run's --final-precise-bn N has yet to be given to its model.keras: summary.json marks
    the statistics of N batches complete only once model.keras holds them."""
    if not config["final_precise_bn"]:
        return False
    try:
        recomputed = json.loads((run_dir / "summary.json").read_text()).get("statistics_recomputed") or {}
    except (OSError, ValueError, AttributeError):  # unreadable: the refusal of a finished run says where it is
        return False
    return not (recomputed.get("precise_bn") == config["final_precise_bn"] and recomputed.get("complete", True))


def _record_observation_changes(config, before, before_options, changed, run_dir, finished=False):
    """Carries config.json's record of the OBSERVING options a resumed run changed, adding this one's:
    `{"after_epoch": E, "val_every": [old, new], ...}`, E the last epoch of the state it resumes from (of a
    finished run, its last epoch: the change is to model.keras's statistics, RECOMPUTE_STATISTICS)."""
    changes = list(before.get("observation_changes", []))
    if changed:
        # A finished run's last epoch is in its summary (kept also where kfcn < 0.2 deleted the backup).
        state = run_dir / ("summary.json" if finished else "backup/training_metadata.json")
        try:
            resumes_after = int(json.loads(state.read_text())["epochs_run" if finished else "epoch"])
        except (OSError, ValueError, KeyError, TypeError):  # no readable backup: the run starts from epoch 1
            resumes_after = 0
        changes.append({"after_epoch": resumes_after} | {key: [before_options[key], config[key]] for key in changed})
        shown = ", ".join(f"--{key.replace('_', '-')} {before_options[key]} -> {config[key]}" for key in changed)
        if finished:
            print(f"after the last epoch ({resumes_after}) of a finished run: {shown}")
        else:
            print(f"from epoch {resumes_after + 1} on: {shown} (they change what the run measures, not what it trains)")
    if changes:
        config["observation_changes"] = changes


def _keep_recorded_class_weights(config, before):
    """A resumed or extended run trains with the class weights and the precision its config.json records, not
    ones recomputed (on another machine, `--precision auto` could choose otherwise)."""
    if before.get("class_weight_values") is not None:
        config["class_weight_values"] = before["class_weight_values"]
    if before.get("precision_used") is not None:
        config["precision_used"] = before["precision_used"]


def precision_used(config, facts=None):
    """`{"precision", "jit_compile", "why"}`: what the run computes in. `--precision auto` is decided here, once,
    by the machine (`machine()` facts) and recorded; a resumed run keeps the recorded choice.

    bfloat16 pays only where the CPU has it natively: measured on the ISBI U-Net step (benchmarks/README.md,
    training_precision.py), mixed_bfloat16 without XLA ran 3.8x float32 on an AMX/AVX-512-BF16 Xeon, while XLA's
    CPU code gained nothing from it (0.79x) and an AVX2 CPU emulates it (0.56x).

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


def class_weight_values(config, train):
    """The class weights a run applies (a list of `num_classes` floats, the ignore class 0), or None.

    Explicit weights as given; "median-frequency" (and its square root) from the training
    pairs' labels only (`kfcn.training.median_frequency_weights`), unless a resumed run
    recorded them.
    """
    choice = config["class_weights"]
    if choice == "none":
        return None
    if config.get("class_weight_values") is not None:
        return [float(weight) for weight in config["class_weight_values"]]
    if choice in ("median-frequency", "sqrt-median-frequency"):
        from kfcn.training import median_frequency_weights

        labels = (label.numpy()[..., 0] for _, label in train)
        power = 0.5 if choice.startswith("sqrt") else 1.0
        weights = median_frequency_weights(labels, config["num_classes"], config["ignore_class"], power)
    else:
        weights = list(choice)
    ignore = config["ignore_class"]
    return [0.0 if index == ignore else float(weight) for index, weight in enumerate(weights)]


class replace_old_run:  # noqa: N801  (a context manager used as a statement)
    """Moves an old run's files (and its `kfcn card`, which describes it) aside before training over it, and puts
    them back if the new run fails before it completes its first epoch; they are deleted once it has."""

    def __init__(self, run_dir, enabled):
        self.run_dir, self.enabled = Path(run_dir), enabled
        self.aside = self.run_dir / f".kfcn-replaced-{os.getpid()}"
        self.moved = []

    def __enter__(self):
        if self.enabled:
            for path in self._old_files():
                self.aside.mkdir(exist_ok=True)
                os.replace(path, self.aside / path.name)
                self.moved.append(path.name)
        return self

    def _old_files(self):
        return [path for pattern in REPLACED_RUN_FILES for path in sorted(self.run_dir.glob(pattern))]

    def first_epoch_done(self):
        import shutil

        shutil.rmtree(self.aside, ignore_errors=True)
        self.moved = []

    def __exit__(self, kind, error, traceback):
        if self.moved:  # the new run failed before its first epoch: the old one comes back whole
            import shutil

            for new in self._old_files():  # what the new run wrote
                if new.is_dir():
                    shutil.rmtree(new, ignore_errors=True)
                else:
                    new.unlink(missing_ok=True)
            for name in self.moved:
                os.replace(self.aside / name, self.run_dir / name)
            self.aside.rmdir()
        return False


def _pairs(config, channels=None):
    """(training pairs, validation pairs or None, channels) as tf.data datasets of raw images and int labels."""
    from kfcn.data import folder_dataset

    label_args = (config["label_mode"], config["num_classes"], config["ignore_class"])
    read_folders = _dot_pairs if config["label_mode"] == "density" else folder_dataset
    if config["tfds"]:
        import tensorflow_datasets as tfds

        from kfcn.data.tfds_datasets import as_pairs

        def load(split):
            try:
                dataset = tfds.load(config["tfds"], split=split, data_dir=config["tfds_dir"])
            except Exception as error:  # TFDS raises many kinds (not found, not prepared, bad split)
                raise ValueError(f"TFDS {config['tfds']!r} split {split!r}: {' '.join(str(error).split())}") from None
            dtype = dataset.element_spec["image"].dtype
            if dtype.name != "uint8" and config["input_range"] is None:
                raise ValueError(
                    f"TFDS {config['tfds']!r} images are {dtype.name}, not 8-bit: give their raw pixel range with "
                    f"{BIT_DEPTH_FLAG} (e.g. 0,65535 for 16-bit images)."
                )
            return as_pairs(dataset, binary=config["label_mode"] == "binary")

        train = load(config["split"])
        validation = load(config["val_split"]) if config["val_split"] else None
    else:
        train = read_folders(config["images"], config["labels"], *label_args, channels=channels)
        validation = None
        if config["val_images"]:
            validation = read_folders(config["val_images"], config["val_labels"], *label_args, channels=channels)
    if validation is None and config["val_fraction"] > 0 and not config["val_split"]:
        count = sum(1 for _ in train)
        held_out = math.ceil(count * config["val_fraction"])
        if held_out >= count:
            raise ValueError(
                f"{count} training image(s) leave none for training after holding out {held_out} for validation; "
                "add images, give --val-images/--val-labels, or pass --val-fraction 0."
            )
        train, validation = train.take(count - held_out), train.skip(count - held_out)
    image, _ = next(iter(train))
    return train, validation, int(image.shape[-1])


def _dot_pairs(image_dir, label_dir, *label_args, channels=None):
    """(raw float32 image, dot mask uint8 (H, W, 1)) pairs of two folders, every file read and checked up front
    (`kfcn.data.density.dot_mask` says which pixels are dots); `folder_dataset`'s checks on the images."""
    import numpy as np
    import tensorflow as tf

    from kfcn.data.density import dot_mask
    from kfcn.data.folder import pair_files
    from kfcn.image_io import ChannelConversions, as_float32, common_dtype, convert_channels, read_image

    pairs = pair_files(image_dir, label_dir)
    common_dtype([image for image, _ in pairs])
    conversions, arrays = ChannelConversions(), []
    for image_path, label_path in pairs:
        image = read_image(image_path, palette_indices=False)
        if channels is not None and image.shape[-1] != channels:
            image = convert_channels(image, channels, image_path, conversions)
        image = as_float32(image)
        dots = read_image(label_path, palette_indices=False)
        if image.shape[:2] != dots.shape[:2]:
            raise ValueError(
                f"Image {image_path} is {image.shape[1]}x{image.shape[0]} but its dot annotation {label_path} is "
                f"{dots.shape[1]}x{dots.shape[0]}: an image and its dots must have the same size."
            )
        if not np.all(np.isfinite(image)):
            raise ValueError(f"Image {image_path} has NaN or infinite pixel values; fix or exclude the file.")
        if arrays and image.shape[-1] != arrays[0][0].shape[-1]:
            raise ValueError(
                f"{image_path} has {image.shape[-1]} channel(s) but {pairs[0][0]} has {arrays[0][0].shape[-1]}: a "
                "model takes one channel count."
            )
        arrays.append((image, dot_mask(dots, label_path)[..., None]))
    conversions.warn()
    signature = (
        tf.TensorSpec((None, None, arrays[0][0].shape[-1]), tf.float32),
        tf.TensorSpec((None, None, 1), tf.uint8),
    )
    return tf.data.Dataset.from_generator(lambda: iter(arrays), output_signature=signature)


def _density_targets(config):
    """The pipeline's `target_map`: a dot mask -> its density map (`--density-sigma`), once per image."""
    import functools

    from kfcn.data.density import density_from_mask

    return functools.partial(density_from_mask, sigma=float(config["density_sigma"]))


def _with_density_targets(dataset, target_map):
    """Whole-image (image, density map) pairs from (image, dot mask) pairs, for validation."""
    import tensorflow as tf

    def convert(image, mask):
        density = tf.numpy_function(lambda m: target_map(m[..., 0]), [mask], tf.float32)
        return image, tf.reshape(density, tf.shape(mask)[:2])[..., None]

    return dataset.map(convert)


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
        kwargs["input_range"] = _pixel_range(config)
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


def _validation_batches(validation, multiple, replicas=1):
    """Whole validation images, cropped at the bottom/right to a size the model takes, one per batch.

    On several devices each batch holds its image once per device, so that the batch
    splits evenly; every score and the mean loss are unchanged by the repetition. The
    dataset's length is declared: Keras warns "Your input ran out of data" at the end of a
    first evaluation over a dataset of unknown length.
    """
    import tensorflow as tf

    def crop(image, label):
        height = tf.shape(image)[0] // multiple * multiple
        width = tf.shape(image)[1] // multiple * multiple
        return image[:height, :width], tf.cast(label[:height, :width], tf.float32)

    def repeat(image, label):
        return tf.repeat(image[None], replicas, axis=0), tf.repeat(label[None], replicas, axis=0)

    count = sum(1 for _ in validation)
    return validation.map(crop).map(repeat).cache().apply(tf.data.experimental.assert_cardinality(count))


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


def _held_out_description(config, validation):
    """One line saying which images score the epochs (and so pick model.keras)."""
    if validation is None:
        return "no validation data: model.keras is the epoch with the best training score"
    if config["val_images"]:
        return f"validation: the images in {config['val_images']}"
    if config["tfds"]:
        return (
            f"validation: TFDS {config['tfds']} split {config['val_split'] or 'the last files of ' + config['split']}"
        )
    from kfcn.data.folder import pair_files

    names = [image.name for image, _ in pair_files(config["images"], config["labels"])]
    held_out = names[len(names) - math.ceil(len(names) * config["val_fraction"]) :]
    shown = ", ".join(held_out[:8]) + (", ..." if len(held_out) > 8 else "")
    return f"validation: {len(held_out)} held-out image(s), the last {config['val_fraction']:.0%} by name: {shown}"


def _check_image_sizes(config):
    """Every training image takes the crop (reflection padding reaches about twice a side), checked
    from the files' headers before any work; a TFDS dataset is checked as it streams."""
    if not config["images"]:
        return
    from PIL import Image

    from kfcn.data.folder import pair_files

    crop = config["crop"]
    for image_path, _ in pair_files(config["images"], config["labels"]):
        try:
            with Image.open(image_path) as image:
                width, height = image.size
        except OSError:
            continue  # the pipeline's reader names unreadable files
        if 2 * min(height - 1, width - 1) + 1 < crop:
            raise ValueError(
                f"{image_path} ({width}x{height}) is too small for --crop {crop}: reflection padding reaches at "
                f"most {2 * min(height - 1, width - 1) + 1} px. Use --crop {max(1, 2 * min(height, width) - 1)} "
                "or less (a size the model takes), or leave the small images out."
            )


def _augmentation(name):
    """--augment as random_crop_pipeline takes it: None, a PairedAugmenter recipe or a kfcn.data.augment function."""
    from kfcn.data.augment import flips_and_rot90, horizontal_flip

    return {"none": None, "flips": flips_and_rot90, "hflip": horizontal_flip}.get(name, name)


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
    config = resolve(args)
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
    train, validation, channels = _pairs(config)
    config["precision_used"] = precision_used(config)
    computing = config | {key: config["precision_used"][key] for key in ("precision", "jit_compile")}
    model = build_model(computing, channels, outputs, safe_mode)
    multiple = _check_crop(model, config["crop"])
    _check_image_sizes(config)
    recorded = config.get("class_weight_values") is not None
    weights, weight_map = _pixel_weights(config, train)
    target_map = _density_targets(config) if density else None
    if density and validation is not None:
        validation = _with_density_targets(validation, target_map)
    batches = _crop_batches(config, model, train, weight_map, target_map)
    scores = _compile(model, computing, outputs)
    monitor = _monitored_quantity(config, scores, validation is not None, density, outputs)
    mode = monitor_mode(monitor, model)
    statistics = _statistics_batches(config, model, train)
    _check_statistics_option(config, model, "final_precise_bn")  # refused now, not after the training
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
            validation_data=None if validation is None else _validation_batches(validation, multiple, replicas()),
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
    train, validation, _ = _pairs(config)
    statistics = _statistics_batches(config, model, train, option)
    summary = json.loads(summary_path.read_text())
    earlier = summary.get("statistics_recomputed", {})  # of these N batches, stopped before it was recorded
    scores = {}
    if earlier.get("precise_bn") == count and "before" in earlier:
        scores["before"] = {key.removeprefix("val_"): value for key, value in earlier["before"].items()}
    if validation is not None:
        if config["label_mode"] == "density":
            validation = _with_density_targets(validation, _density_targets(config))
        outputs = 1 if config["label_mode"] in ("binary", "density") else config["num_classes"]
        used = config.get("precision_used") or precision_used(config)  # a run of kfcn < 0.2 did not record it
        _compile(model, config | {key: used[key] for key in ("precision", "jit_compile")}, outputs)
        batches = _validation_batches(validation, _check_crop(model, config["crop"]), replicas())
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


def kept_before_statistics(run_dir, epoch):
    """The copy of a run's model.keras (the checkpoint of `epoch`) as it was before its batch-norm statistics were
    first recomputed after the run (--final-precise-bn, or a finished run's new --precise-bn).

    Example:
    >>> kept_before_statistics(Path("runs/camvid"), 39).name
    'model-epoch-0039-before-statistics.keras'
    """
    return Path(run_dir) / f"model-epoch-{epoch:04d}-before-statistics.keras"


def _timed(what, work):
    """Says what it does (a line, flushed, so a log shows it too), calls `work()`, says how long it took."""
    print(f"{what}...", flush=True)
    started = time.time()
    result = work()
    print(f"  done in {time.time() - started:.0f} s", flush=True)
    return result


def _pixel_weights(config, train):
    """`(class weights or None, the crop pipeline's weight_map)`: the U-Net border map, or per-class
    weights (recorded in config.json, so a resumed run reads the same ones back)."""
    from kfcn.training import class_weight_map

    weight_map = None if config["weight_map"] == "none" else config["weight_map"]
    weights = class_weight_values(config, train)
    if weights is not None:
        config["class_weight_values"] = weights
        weight_map = class_weight_map(weights, config["ignore_class"])
    return weights, weight_map


def _augmentation_range(config, model):
    """The pixel range intensity augmentation scales with: the model's, else the data's where it matters."""
    from kfcn.inference import input_range

    value_range = input_range(model)
    if value_range is None:  # a model without input scaling: the data's range, where augmentation needs one
        value_range = _pixel_range(config) if config["augment"] in ("intensity", "full") else (0, 255)
    return value_range


def _crop_batches(config, model, train, weight_map, target_map):
    from kfcn.data import random_crop_pipeline

    return random_crop_pipeline(
        train,
        config["crop"],
        batch_size=config["batch"],
        augment=_augmentation(config["augment"]),
        weight_map=weight_map,
        target_map=target_map,
        seed=config["seed"],
        value_range=_augmentation_range(config, model),
    )


def _statistics_batches(config, model, train, option="precise_bn"):
    """--precise-bn N (or --final-precise-bn N, `option`): the N batches of training crops (augmented as in
    training, from a stream of their own seed) on which the batch-norm statistics are recomputed; the same
    batches each epoch, each resume and at the end (the first N of one stream, whichever option asks)."""
    count = config[option]
    if not count:
        return None
    from kfcn.data import random_crop_pipeline

    _check_statistics_option(config, model, option)
    crops = random_crop_pipeline(
        train,
        config["crop"],
        batch_size=config["batch"],
        augment=_augmentation(config["augment"]),
        seed=config["seed"] + 1,  # not the training crops' stream, which stays as it was
        cache=False,  # only the N batches are kept
        value_range=_augmentation_range(config, model),
    )
    return crops.map(lambda x, *_: x).take(count).cache()


def _check_statistics_option(config, model, option):
    """Refuses --precise-bn N or --final-precise-bn N (`option`, N > 0) where there are no statistics to recompute
    or they cannot be recomputed."""
    from kfcn.batch_norm import batch_norm_layers

    count, flag = config[option], f"--{option.replace('_', '-')}"
    if not count:
        return
    if not batch_norm_layers(model):
        raise ValueError(
            f"{flag} {count}: {model.name} has no batch-normalisation layer that training updates, so there are no "
            f"statistics to recompute; leave {flag} at 0."
        )
    if config["devices"] == "all":
        raise ValueError(
            f"{flag} recomputes the statistics on one device; it does not combine with --devices all yet. "
            "Drop one of them."
        )


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
    print(_held_out_description(config, validation))
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
    import numpy as np

    from kfcn.training import plot_training_curves, read_log

    log = read_log(run_dir / "training.csv")
    plot_training_curves(run_dir / "training.csv", run_dir / "curves.png", title=f"{model.name}: {run_dir.name}")
    values = log[monitor]
    if not np.isfinite(values).any():  # the checkpoint saves finite values only: there is no model.keras
        raise ValueError(
            f"no epoch logged a finite {monitor} (see {run_dir / 'training.csv'}), so no model.keras was saved; "
            "choose another --monitor, or check the validation images and labels."
        )
    finite = np.where(np.isfinite(values), values, np.inf if mode == "min" else -np.inf)  # as the checkpoint kept it
    best = int(finite.argmin() if mode == "min" else finite.argmax())
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
