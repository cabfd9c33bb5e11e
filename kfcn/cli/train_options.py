"""What a `kfcn train` command means: its options (`OPTIONS`: default, type, help and choices), a
`--config` file or a `--recipe` read into them, and every check of the resolved settings that needs
neither data nor a model.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path

from kfcn.arguments import is_integer

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
# Options that name a file or folder (`model` where it is a .keras file).
PATH_OPTIONS = ("model", "images", "labels", "tfds_dir", "val_images", "val_labels")
OBSERVING = ("val_every", "precise_bn", "final_precise_bn")
# Where --label-mode density defaults otherwise, unless a recipe, --config or a flag sets the option.
DENSITY_DEFAULTS = {"loss": "mse", "augment": "flips"}
DENSITY_LOSSES = ("mse", "mae")


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
    _absolute_paths(config)
    _check(config)
    return config


def _absolute_paths(config):
    """Files and folders as absolute paths (links kept), so that the run folder's config.json names the same
    place when the run is resumed from another working folder."""
    for key in PATH_OPTIONS:
        value = config[key]
        if isinstance(value, str) and value and (key != "model" or value.endswith(".keras")):
            config[key] = os.path.abspath(value)


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
            config["input_range"] = range_option(config["input_range"])  # a config file's text or list
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


def range_option(value):
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


def pixel_range(config):
    """The training images' raw pixel range: --input-range, or read off the image files' bit depth
    (`kfcn.image_io.pixel_range`: mixed bit depths and float files are refused, naming the flag)."""
    if config["input_range"] is not None:
        return tuple(config["input_range"])
    if config["tfds"]:
        return (0, 255)  # data_pairs refuses TFDS images that are not uint8 without --input-range
    from kfcn.data.folder import pair_files
    from kfcn.image_io import pixel_range

    folders = [(config["images"], config["labels"]), (config["val_images"], config["val_labels"])]
    paths = [image for images, labels in folders if images for image, _ in pair_files(images, labels)]
    return pixel_range(paths, option=BIT_DEPTH_FLAG)
