"""Writes the tables of README.md and saved_models/README.md from the shipped JSON reports.

    python docs/make_tables.py           # rewrites every table between its markers
    python docs/make_tables.py --check   # exit 1 (and name the table) if a committed one is stale

Each table sits between `<!-- table:NAME -->` and `<!-- /table -->` in its markdown file and
is never edited by hand: change the JSON (by rerunning the command that writes it) and run
this script (`make figures` does). `tests/test_figures.py` fails when a committed table
differs from what this script makes of the committed JSON files. No model runs here.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = "saved_models"


def _load(root, name):
    return json.loads((root / MODELS / name).read_text())


def _rows(header, rows):
    """A markdown table: a header row, the separator, then one line a row."""

    def line(cells):
        return ("| " + " | ".join(str(cell) for cell in cells) + " |").replace("|  |", "| |").replace("|  |", "| |")

    return "\n".join([line(header), "|" + "---|" * len(header), *(line(row) for row in rows)])


def _small(value):
    """A drift for the eye: 0, 0.19, 0.0048, 2.9e-6."""
    if value == 0:
        return "0"
    if abs(value) < 1e-3:
        mantissa, exponent = f"{value:.1e}".split("e")
        return f"{mantissa}e{int(exponent)}"
    return f"{value:.2g}"


def _pm(values, digits):
    """'mean ± std' (population std, as the reports state it) of `values`."""
    mean = sum(values) / len(values)
    std = math.sqrt(sum((value - mean) ** 2 for value in values) / len(values))
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def _minutes(value):
    return f"{value:g}" if value != round(value) else f"{value:.0f}"


CAMVID_NETWORKS = {"unet": "U-Net", "segnet": "SegNet"}  # saved_models/camvid_NETWORK.keras, in table order


def _camvid_shipped(root, network="unet"):
    """A shipped CamVid network, from the files beside it: `kfcn evaluate`'s whole-set scores on the
    validation images (in %) and the model's parameter count, the run's settings (its card's `_config.json`)
    and its training minutes (the sum of the seconds column of its card's `_training.csv`); None where
    saved_models holds no such network."""
    stem = f"camvid_{network}"
    if not (root / MODELS / f"{stem}_evaluation.json").is_file():
        return None
    report = _load(root, f"{stem}_evaluation.json")
    config = _load(root, f"{stem}_config.json")
    seconds = _training_seconds(root, f"{stem}_training.csv")
    whole = report["whole_set"]
    names = whole["class_names"]
    return {
        "network": network,
        "parameters": report["parameters"],
        "scores": {key: 100 * whole[key] for key in ("global_accuracy", "class_accuracy", "mean_iou")},
        "iou_per_class": dict(zip(names, (100 * value for value in whole["iou_per_class"]))),
        "accuracy_per_class": dict(zip(names, (100 * value for value in whole["accuracy_per_class"]))),
        "images": len(report["per_image"]),
        "config": config,
        "minutes": round(seconds / 60),
    }


def _logged(value):
    """A number of training.csv, 0 where the log has none (NA, an empty cell, a column it lacks)."""
    return 0.0 if value in (None, "", "NA") else float(value)


def _camvid_shipped_all(root):
    """Every shipped CamVid network (`_camvid_shipped`), the U-Net first."""
    return [shipped for shipped in map(lambda network: _camvid_shipped(root, network), CAMVID_NETWORKS) if shipped]


# The runs of `kfcn train --recipe isbi2012`: the shipped one (unet_isbi), and any kept as experiments
# (experiments/unet_isbi_recipe*, e.g. one extended to more epochs that did not beat it).
ISBI_SHIPPED, ISBI_RECIPE_EXPERIMENTS = "unet_isbi", "experiments/unet_isbi_recipe*_config.json"
ISBI_FILTERS_16 = ("unet_isbi", "experiments/unet_isbi_f16_plateau")  # shipped until the recipe's run replaced it


def _training_seconds(root, name):
    """The training seconds of a card's `_training.csv`, stopped time left out (as the card counts them)."""
    with open(root / MODELS / name, newline="") as log:
        return sum(float(row["seconds"]) - _logged(row.get("stopped_seconds")) for row in csv.DictReader(log))


def _cpu_seconds(root, name):
    """The CPU seconds (summed over the cores) of a card's `_training.csv`; None where it does not log them."""
    with open(root / MODELS / name, newline="") as log:
        rows = list(csv.DictReader(log))
    return sum(_logged(row.get("cpu_seconds")) for row in rows) if rows and "cpu_seconds" in rows[0] else None


def _isbi_recipe_runs(root):
    """The ISBI runs of `kfcn train --recipe isbi2012`: the shipped one first (saved_models/unet_isbi_*, its card's
    files) where it is such a run, then those kept as experiments (saved_models/experiments/unet_isbi_recipe*_*), by
    name: each run's settings, steps, hours and the held-out table of `examples/validate_isbi.py`."""
    stems = [ISBI_SHIPPED] if (root / MODELS / f"{ISBI_SHIPPED}_config.json").is_file() else []
    stems += sorted(
        str(path.relative_to(root / MODELS)).removesuffix("_config.json")
        for path in (root / MODELS).glob(ISBI_RECIPE_EXPERIMENTS)
    )
    runs = []
    for stem in stems:
        config = _load(root, f"{stem}_config.json")
        runs.append(
            {
                "shipped": stem == ISBI_SHIPPED,
                "config": config,
                "steps": config["epochs"] * config["steps"],
                "hours": _training_seconds(root, f"{stem}_training.csv") / 3600,
                "cpu_hours": (_cpu_seconds(root, f"{stem}_training.csv") or math.nan) / 3600,
                "validation": _load(root, f"{stem}_validation.json"),
            }
        )
    return runs


def _run_time(run):
    """'1.9 h (3.5 CPU h)': the wall time and, where logged, the CPU time summed over the cores."""
    return f"{run['hours']:.1f} h" + (
        f" ({run['cpu_hours']:.1f} CPU h)" if run["cpu_hours"] == run["cpu_hours"] else ""
    )


def _isbi_filters_16(root):
    """The 16-filter U-Net of examples/train_isbi.py: {"validation", "training"} (its final metrics and command)."""
    for stem in ISBI_FILTERS_16:
        if (root / MODELS / f"{stem}_training.json").is_file():
            training = _load(root, f"{stem}_training.json")
            return {"validation": _load(root, f"{stem}_validation.json"), "training": training}
    raise FileNotFoundError("saved_models has no 16-filter ISBI U-Net's training.json (unet_isbi or experiments)")


def _without_epochs(config):
    return {key: value for key, value in config.items() if key not in ("epochs", "extended", "precision_used")}


def _isbi_recipe_label(run, before=None):
    """'filters 32, U-Net border weights, cosine from 1e-3, ..., mixed bfloat16' from a run's settings; 'the same
    run, extended from 90 to 210 epochs' (or 'the same recipe, 210 epochs', where it was not extended from it)
    where they are those of the run listed `before` but for the epochs."""
    config = run["config"]
    if before is not None and _without_epochs(config) == _without_epochs(before["config"]):
        extended = config.get("extended") or []  # kfcn train's record of each --epochs extension
        if extended and extended[0]["epochs_before"] == before["config"]["epochs"]:
            return f"the same run, extended from {extended[0]['epochs_before']} to {config['epochs']} epochs"
        return f"the same recipe, {config['epochs']} epochs"
    weights = "U-Net border weights" if config["weight_map"] == "unet" else f"weight map {config['weight_map']}"
    return (
        f"filters {config['filters']}, {weights}, {config['schedule']} from {config['learning_rate']:g}, "
        f"`kfcn train --recipe {config['recipe']}`{_computed_in(config)}"
    )


# --- README.md -----------------------------------------------------------------------------------


def isbi_results(root):
    """README: the shipped ISBI U-Net and the attempts beside the paper and the goal."""
    shipped = _load(root, "unet_isbi_validation.json")
    unweighted = _load(root, "experiments/unet_isbi_f32_unweighted_validation.json")
    finetuned = _load(root, "experiments/unet_isbi_f32_weighted_finetune_validation.json")
    runs, filters_16 = _isbi_recipe_runs(root), _isbi_filters_16(root)
    recipe_shipped = bool(runs and runs[0]["shipped"])

    def scores(mean, labelled=False):
        thin, singletons = mean["rand_error_best_thin"], mean["rand_error_best_singletons"]
        rand = (
            f"{thin:.3f} (`--border thin`) / {singletons:.3f} (`singletons`)"
            if labelled
            else f"{thin:.3f} / {singletons:.3f}"
        )
        return f"{mean['pixel_error']:.4f}", rand

    def original(report):
        scores = report["isbi2012_original"]
        return f"{scores['pixel_error']:.4f}", f"{scores['rand_error']:.3f}"

    return _rows(
        ["ISBI 2012", "pixel error", "Rand error"],
        [
            # Published figures (Ronneberger et al. 2015, Table 1), not in any shipped file.
            (
                "U-Net paper (Ronneberger 2015): challenge test stack, trained on all 30 slices, 64 filters, 7 "
                "rotations averaged; **the challenge's definitions until 2015**: 1 − the best F-score over "
                "thresholds, counts pooled over the stack",
                "0.0611",
                "0.0382",
            ),
            (
                "kfcn shipped U-Net, held-out slices 20–24, trained on 20 slices; the same definitions "
                "(`isbi2012_original_scores`)",
                *original(shipped["plain"]),
            ),
            ('the same with `tta="d4"`', *original(shipped["tta_d4"])),
            (
                "kfcn shipped U-Net, **kfcn evaluate's definitions**: fraction of wrong pixels at 0.5; adapted "
                "Rand error at the best threshold, mean over slices",
                *scores(shipped["plain"]["mean"], labelled=True),
            ),
            ('the same with `tta="d4"`', *scores(shipped["tta_d4"]["mean"])),
            *(
                [("the 16-filter U-Net shipped before it", *scores(filters_16["validation"]["plain"]["mean"]))]
                if recipe_shipped
                else []
            ),
            *[
                (
                    f"the {run['config']['filters']}-filter U-Net of `--recipe isbi2012` with border weights, "
                    f"{run['steps']:,} steps, {_run_time(run)} (not shipped)",
                    *scores(run["validation"]["plain"]["mean"]),
                )
                for run in runs
                if not run["shipped"]
            ],
            ("a 32-filter U-Net without border weights (not shipped)", *scores(unweighted["plain"]["mean"])),
            ("that one fine-tuned with border weights (not shipped)", *scores(finetuned["plain"]["mean"])),
            ("the goal for the shipped model", "≤ 0.07", "≤ 0.06 (`singletons`), thin ≤ 0.035"),
        ],
    )


def _counter_rows(counter):
    """The README's two counter rows: the shipped counter and its seeds, then the learning curve."""
    shipped, seeds, curve = counter["result"], counter["seeds"], counter["curve"]
    others = [run for run in seeds if run != shipped]
    maes = ", ".join(f"{run['mae']:.2f}" for run in seeds)
    seed_row = (
        f"cell counting by density maps, VGG cells, N = {shipped['train_size']} "
        "(shipped: `saved_models/vgg_cells_counter.keras`, card `vgg_cells_counter.md`)",
        f"`kfcn train --recipe {counter['recipe']}` ({counter['epochs']} epochs of 40 steps; `counter_runs.py` "
        f"runs the seeds and the curve and ships seed {shipped['seed']})",
        f"MAE **{shipped['mae']:.2f}** cells on the {shipped['test_images']} unused images of 001–100 "
        f"({shipped['uncalibrated_mae']:.2f} before calibration); seeds "
        f"{', '.join(str(run['seed']) for run in seeds)} on the same split: "
        f"{maes}, **{_pm([run['mae'] for run in seeds], 2)}**",
        "test half: Lempitsky 2010 3.5, FCRN-A 2.9, Count-ception 2.3",
        f"{_minutes(round(60 * shipped['hours']))} min (other seeds: "
        + ", ".join(f"{round(60 * run['hours'])}" for run in others)
        + f" min; {shipped['machine']})",
    )
    curve_row = (
        "the same, learning curve",
        "`counter_runs.py --curve " + " ".join(str(run["train_size"]) for run in curve if run != shipped) + "`",
        ", ".join(
            f"N = {run['train_size']}: {run['mae']:.2f}"
            + (f" ({run['test_images']} images)" if run["train_size"] != shipped["train_size"] else "")
            for run in curve
        ),
        "",
        " / ".join(f"{round(60 * run['hours'])}" for run in curve) + " min",
    )
    return seed_row, curve_row


def applications(root):
    """README: the examples' full-run results, one row an application."""
    counter = _load(root, "vgg_cells_counter.json")
    restoration = _load(root, "isbi_restoration.json")
    galaxy = _load(root, "galaxy_decomposition.json")
    touching = _load(root, "touching_instances.json")
    camvid = _load(root, "camvid_segmentation.json")
    contour = _load(root, "contour_robustness.json")

    counter_row, curve_row = _counter_rows(counter)
    settings, mean = restoration["settings"], restoration["mean"]
    blur, noise = restoration["degradation"]["blur_sigma"], restoration["degradation"]["noise_std"]
    restoration_row = (
        f"restoration: deblurring + denoising of ISBI slices (blur σ {blur[0]:g}–{blur[1]:g} px, noise σ "
        f"{noise[0]:g}–{noise[1]:g} grey levels, `kfcn.data.degrade`)",
        f"`restore_isbi.py` (U-Net filters {settings['filters']}, depth {settings['depth']}, {settings['copies']} "
        f"degraded copies of slices 00–19, {settings['epochs']} epochs of {settings['steps']} steps)",
        f"held-out slices 20–24: PSNR {mean['degraded']['psnr']:.2f} → **{mean['restored']['psnr']:.2f} dB**, "
        f"SSIM {mean['degraded']['ssim']:.3f} → **{mean['restored']['ssim']:.3f}** (degraded input → restored)",
        "—",
        f"{restoration['minutes']:g} min",
    )
    settings, bulge, disk = galaxy["settings"], galaxy["components"]["bulge"], galaxy["components"]["disk"]
    galaxy_row = (
        "bulge / disk decomposition of synthetic galaxies, two outputs (`kfcn.data.bulge_disk_galaxy`)",
        f"`galaxy_decomposition.py` ({settings['train']:,} galaxies of {settings['side']}², U-Net filters "
        f"{settings['filters']}, depth {settings['depth']}, {settings['epochs']} epochs)",
        f"{galaxy['held_out']} unseen galaxies, relative flux error: disk median "
        f"**{100 * disk['median_abs_relative_error']:.1f} %** (bias {100 * disk['bias']:+.1f} %), bulge median "
        f"**{100 * bulge['median_abs_relative_error']:.1f} %** (bias {100 * bulge['bias']:+.0f} %)",
        "—",
        f"{round(galaxy['minutes'])} min (CPU shared with the tests)",
    )
    settings, three, two = touching["settings"], touching["three_class_watershed"], touching["two_class_components"]
    steps = -(-settings["train"] // settings["batch"])
    touching_row = (
        "touching objects → instances: synthetic touching ellipses "
        f"({100 * touching['touching_fraction']:.0f} % touch another; `kfcn.data.touching_ellipses`)",
        f"`touching_instances.py` ({settings['train']} images of {settings['side']}², two U-Nets of filters "
        f"{settings['filters']}, depth {settings['depth']}, {settings['epochs']} epochs of {steps} steps each)",
        f"{touching['held_out']} unseen images, instance F1 at IoU {touching['iou']:g}: 3 classes + watershed "
        f"**{three['f1']:.2f}** (precision {three['precision']:.2f}, recall {three['recall']:.2f}) against "
        f"2 classes + connected components {two['f1']:.2f} ({two['precision']:.2f} / {two['recall']:.2f})",
        "—",
        f"{touching['minutes']['three_class_watershed']:g} + {touching['minutes']['two_class_components']:g} min "
        "(CPU shared with the tests)",
    )
    settings, results, anchor = camvid["settings"], camvid["results"], camvid["anchor_segnet_basic_test"]
    shipped_all = _camvid_shipped_all(root)

    def triple(scores, bold=False):
        text = f"{scores['global_accuracy']:.1f} / {scores['class_accuracy']:.1f} / {scores['mean_iou']:.1f}"
        return f"**{text}**" if bold else text

    def listed(texts):
        return " and ".join(texts)

    example_steps = settings["epochs"] * settings["steps"]
    shipped_files = listed(f"`saved_models/camvid_{shipped['network']}.keras`" for shipped in shipped_all)
    commands = listed(
        f"`kfcn train --recipe {config['recipe']}` ({config['crop']}² crops, {config['class_weights']} weighted "
        f"cross-entropy, {config['epochs'] * config['steps']:,} steps of {config['batch']} crops)"
        for config in (shipped["config"] for shipped in shipped_all)
    )
    names = listed(CAMVID_NETWORKS[shipped["network"]] for shipped in shipped_all)
    cards = "its card" if len(shipped_all) == 1 else "their cards"
    camvid_row = (
        f"CamVid road scenes, 11 classes + void: the shipped {names} ({shipped_files}, with {cards}), and the "
        "example's SegNet (pooling-index unpooling) against a U-Net of about its size",
        f"{commands} on the 367 training images; `camvid_segmentation.py --jit` ({example_steps:,} steps per network)",
        f"{shipped_all[0]['images']} val images, global / class-average accuracy / mIoU: "
        + "; ".join(
            f"shipped {CAMVID_NETWORKS[shipped['network']]} {triple(shipped['scores'], bold=True)}"
            for shipped in shipped_all
        )
        + f"; example U-Net {triple(results['unet'])}, SegNet {triple(results['segnet'])} (per-class table in "
        "[saved_models/README.md](saved_models/README.md))",
        f"SegNet-Basic, test split: {anchor['global_accuracy']:g} / {anchor['class_accuracy']:g} / "
        f"{anchor['mean_iou']:g}",
        listed(f"{shipped['minutes']:,} min (shipped {CAMVID_NETWORKS[shipped['network']]})" for shipped in shipped_all)
        + f"; {cards} {'names' if len(shipped_all) == 1 else 'name'} the machine; example "
        f"{results['unet']['training_minutes']:g} + {results['segnet']['training_minutes']:g} min",
    )
    settings, summary = contour["settings"], contour["summary"]
    shift = settings["shift"]
    minutes = [run["minutes"] for run in contour["runs"]]

    def change(score, digits):
        clean, perturbed = summary["clean"][score], summary["perturbed"][score]
        return (
            f"{clean['mean']:.{digits}f} ± {clean['std']:.{digits}f} → "
            f"{perturbed['mean']:.{digits}f} ± {perturbed['std']:.{digits}f}"
        )

    contour_row = (
        "robustness to contour errors: the ISBI U-Net trained on labels whose cells are each eroded or dilated by "
        f"{shift[0]}–{shift[1]} px (`kfcn.data.perturb_contours`; {100 * contour['changed_training_pixels']:.1f} % "
        "of the training pixels change) against clean labels",
        f"`contour_robustness.py --seeds {' '.join(map(str, settings['seeds']))}` (the shipped model's "
        f"architecture and recipe, {settings['epochs'] * settings['steps']} steps of {settings['batch']} crops per "
        "model, same seeds: same initial weights, crops and augmentation)",
        f"held-out slices 20–24, mean ± std over {len(settings['seeds'])} seeds, clean → perturbed labels: pixel "
        f"error **{change('pixel_error', 4)}**, adapted Rand error (best threshold) {change('rand_error_best', 3)}, "
        f"Dice {summary['clean']['dice']['mean']:.3f} → {summary['perturbed']['dice']['mean']:.3f}",
        "—",
        f"{len(minutes)} runs of {min(minutes):g}–{max(minutes):g} min",
    )
    return _rows(
        ["application", "example, full command", "kfcn (held-out data)", "anchor", "CPU time"],
        [counter_row, curve_row, restoration_row, galaxy_row, touching_row, camvid_row, contour_row],
    )


# --- saved_models/README.md ----------------------------------------------------------------------


def isbi_validation(root):
    """Model card: the shipped U-Net on each held-out slice, the mean, and the mean with test-time augmentation."""
    report = _load(root, "unet_isbi_validation.json")

    def cells(row):
        return (
            f"{row['pixel_error']:.4f}",
            f"{row['dice']:.4f}",
            f"{row['rand_error_best_thin']:.4f} / {row['rand_error_best_singletons']:.4f}",
            f"{row['vi_split']:.3f} / {row['vi_merge']:.3f}",
        )

    rows = [(name.removeprefix("slice_"), *cells(row)) for name, row in report["plain"]["per_slice"].items()]
    rows.append(("**mean**", *cells(report["plain"]["mean"])))
    rows.append(('mean, `tta="d4"`', *cells(report["tta_d4"]["mean"])))
    return _rows(
        [
            "slice",
            "pixel error",
            "Dice (interior)",
            "adapted Rand error, best threshold: thin / singletons",
            "VI split / merge",
        ],
        rows,
    )


def isbi_attempts(root):
    """Model card: every ISBI training attempt, scored on the held-out slices."""
    runs, filters_16 = _isbi_recipe_runs(root), _isbi_filters_16(root)
    unweighted = _load(root, "experiments/unet_isbi_f32_unweighted_validation.json")
    unweighted_training = _load(root, "experiments/unet_isbi_f32_unweighted_training.json")
    finetuned = _load(root, "experiments/unet_isbi_f32_weighted_finetune_validation.json")
    finetuned_training = _load(root, "experiments/unet_isbi_f32_weighted_finetune_training.json")

    def steps(training):
        flags = dict(re.findall(r"--(epochs|steps) (\d+)", training["command"]))
        return int(flags["epochs"]) * int(flags["steps"])

    def scores(mean, bold=()):
        def emphasise(key, text):
            return f"**{text}**" if key in bold else text

        thin = f"{mean['rand_error_best_thin']:.3f}"
        return (
            emphasise("pixel_error", f"{mean['pixel_error']:.4f}"),
            f"{emphasise('rand', thin)} / {mean['rand_error_best_singletons']:.3f}",
            f"{mean['vi_split']:.3f} / {mean['vi_merge']:.3f}",
        )

    recipe_rows = []
    for before, run in zip([None, *runs], runs):
        shipped = run["shipped"]
        recipe_rows += [
            (
                ("**shipped**: " if shipped else "") + _isbi_recipe_label(run, before),
                f"{run['steps']:,}",
                _run_time(run),
                *scores(run["validation"]["plain"]["mean"], bold=("pixel_error", "rand") if shipped else ()),
            ),
            ('the same, `tta="d4"`', "", "", *scores(run["validation"]["tta_d4"]["mean"])),
        ]
    previous = bool(runs and runs[0]["shipped"])
    return _rows(
        ["model", "steps", "time on a 2-core CPU", "pixel error", "Rand error", "VI split / merge"],
        [
            *recipe_rows,
            (
                ("shipped until the recipe's run: " if previous else "**shipped**: ")
                + "filters 16, U-Net border weights, plateau schedule",
                f"{steps(filters_16['training']):,}",
                f"{round(filters_16['training']['minutes'])} min",
                *scores(filters_16["validation"]["plain"]["mean"], bold=() if previous else ("rand",)),
            ),
            # No report of this run was kept: its figures are the ones measured on 2026-11-26.
            (
                "the shipped one fine-tuned: cosine from 5e-4, EMA, best epoch (2026-11-26)",
                "+18 epochs",
                "~50 min",
                "0.0924",
                "0.048 / 0.113",
                "",
            ),
            (
                "filters 32, **no** border weights, cosine from 1e-3, XLA (2026-11-27)",
                f"{steps(unweighted_training):,}",
                f"{round(unweighted_training['minutes'])} min",
                *scores(unweighted["plain"]["mean"], bold=("pixel_error",)),
            ),
            ('the same, `tta="d4"`', "", "", *scores(unweighted["tta_d4"]["mean"])),
            (
                "that one fine-tuned **with** border weights, cosine from 3e-4 (2026-11-27)",
                f"+{steps(finetuned_training):,}",
                f"{round(finetuned_training['minutes'])} min",
                *scores(finetuned["plain"]["mean"]),
            ),
            ('the same, `tta="d4"`', "", "", *scores(finetuned["tta_d4"]["mean"])),
        ],
    )


def _megabytes(size):
    return f"{size / 1e6:.1f} MB"


def deployment_files(root):
    """Model card: the shipped deployment forms and their sizes (from the deployment report, which
    `examples/export_isbi.py` writes beside the files; only the int8 one is committed)."""
    report = _load(root, "unet_isbi_deployment.json")
    files = report["files"]
    saved_model = files["saved_model"]
    contract = report["input_contract"]
    served = ", ".join(f"`{name}` ({dtype})" for name, dtype in saved_model["signatures"].items())
    return _rows(
        ["file", "what", "size"],
        [
            (
                f"`{Path(saved_model['path']).relative_to(MODELS).as_posix()}/`",
                f"SavedModel for TF Serving: {served} take `{contract['name']}` (any height and width) and return "
                f"`{report['output']['name']}`; `kfcn_model_card.json` inside",
                _megabytes(saved_model["bytes"]),
            ),
            (
                "`unet_isbi_float32.tflite`",
                "TFLite, builtin ops only, 512×512 input; each TFLite file has its card beside it "
                "(`<file>.kfcn_model_card.json`)",
                _megabytes(files["tflite_float32"]["bytes"]),
            ),
            ("`unet_isbi_float16.tflite`", "float16 weights", _megabytes(files["tflite_float16"]["bytes"])),
            (
                "`unet_isbi_int8.tflite`",
                "full-integer int8, calibrated on training slices 00–19; float32 input/output tensors",
                _megabytes(files["tflite_int8"]["bytes"]),
            ),
        ],
    )


FORM_NAMES = {
    "keras": "Keras (`kfcn.inference.predict`)",
    "saved_model": "SavedModel",
    "tflite_float32": "TFLite float32",
    "tflite_float16": "TFLite float16",
    "tflite_int8": "TFLite int8",
}


def deployment_metrics(root):
    """Model card: pixel error, membrane Dice and drift of each deployment form on the held-out slices."""
    metrics = _load(root, "unet_isbi_deployment.json")["metrics_mean_over_held_out_slices"]
    return _rows(
        ["form", "pixel error", "membrane Dice", "max drift", "mean drift"],
        [
            (
                FORM_NAMES.get(form, form),
                f"{row['pixel_error']:.4f}",
                f"{row['membrane_dice']:.4f}",
                _small(row["max_abs_drift_vs_keras"]),
                _small(row["mean_abs_drift_vs_keras"]),
            )
            for form, row in metrics.items()
        ],
    )


def counter(root):
    """Model card: the cell counter's held-out count error per seed (calibrated and not) and its learning curve."""
    report = _load(root, "vgg_cells_counter.json")
    shipped = report["result"]

    def row(name, run):
        return (
            name,
            f"{run['train_size']} / {run['test_images']}",
            f"{run['mae']:.2f}",
            f"{run['mean_error']:+.2f}".replace("-", "−"),
            f"{100 * run['relative_mae']:.1f} %",
            f"{run['uncalibrated_mae']:.2f}",
            f"{run['calibration_factor']:.4f}",
            f"{60 * run['hours']:.0f}",
        )

    seeds = [
        row(f"**seed {run['seed']} (shipped)**" if run == shipped else f"seed {run['seed']}", run)
        for run in report["seeds"]
    ]
    maes = [run["mae"] for run in report["seeds"]]
    curve = [row(f"seed {run['seed']}, N = {run['train_size']}", run) for run in report["curve"] if run != shipped]
    return _rows(
        [
            "run",
            "training / held-out images",
            "MAE (cells)",
            "mean error",
            "relative MAE",
            "MAE before calibration",
            "calibration factor",
            "minutes",
        ],
        [
            *seeds,
            (
                f"**mean ± std over seeds {', '.join(str(run['seed']) for run in report['seeds'])}**",
                "",
                f"**{_pm(maes, 2)}**",
                "",
                "",
                "",
                "",
                "",
            ),
            *curve,
        ],
    )


def _deployment_table(root, names, metrics_key, header, cells):
    """Model card: shipped models' deployment forms (reports `names`, as examples/deployment_forms.py writes
    them), one row a form: the task's figures `cells(row)` under `header`, the file's size and the drift.
    `names` maps each report to the label its rows start with (one report: a str, no label column)."""
    labelled = not isinstance(names, str)
    rows = []
    for name, label in names.items() if labelled else [(names, None)]:
        report = _load(root, name)
        rows += [
            (
                *([label] if labelled else []),
                FORM_NAMES.get(form, form),
                *cells(row),
                _megabytes(report["files"][form]["bytes"]) if form.startswith("tflite") else "—",
                _small(row["max_abs_drift_vs_keras"]),
                _small(row["mean_abs_drift_vs_keras"]),
            )
            for form, row in report[metrics_key].items()
        ]
    return _rows([*(["network"] if labelled else []), "form", *header, "size", "max drift", "mean drift"], rows)


def counter_deployment(root):
    """Model card: the cell counter's count error and drift in each deployment form on its held-out images."""
    return _deployment_table(
        root,
        "vgg_cells_counter_deployment.json",
        "metrics_over_held_out_images",
        ["MAE (cells)", "mean error", "relative MAE"],
        lambda row: (
            f"{row['mae']:.3f}",
            f"{row['mean_error']:+.3f}".replace("-", "−"),
            f"{100 * row['relative_mae']:.2f} %",
        ),
    )


def camvid_deployment(root):
    """Model card: each shipped CamVid network's whole-set scores and drift in each deployment form on the
    validation images (a network's rows appear once its `camvid_NETWORK_deployment.json` is committed)."""
    reports = {
        f"camvid_{shipped['network']}_deployment.json": CAMVID_NETWORKS[shipped["network"]]
        for shipped in _camvid_shipped_all(root)
        if (root / MODELS / f"camvid_{shipped['network']}_deployment.json").is_file()
    }
    return _deployment_table(
        root,
        reports,
        "metrics_over_validation_images",
        ["global accuracy", "class-average accuracy", "mIoU"],
        lambda row: tuple(f"{row[key]:.2f}" for key in ("global_accuracy", "class_accuracy", "mean_iou")),
    )


def _camvid_shipped_name(shipped):
    config = shipped["config"]
    kernel = (config.get("model_options") or {}).get("kernel_size")
    return (
        f"**{CAMVID_NETWORKS[shipped['network']]}** (filters {config['filters']}, depth {config['depth']}"
        + (f", {kernel}×{kernel} convolutions" if kernel else "")
        + (", pooling-index unpooling" if shipped["network"] == "segnet" else "")
        + f"), `kfcn train --recipe {config['recipe']}`: {config['epochs']} epochs of {config['steps']} steps, "
        f"{config['class_weights']} weights{_computed_in(config)} — shipped"
    )


def _computed_in(config):
    """`", mixed bfloat16"` where a run computed in a mixed policy (its config.json's `precision_used`; the saved
    model computes in float32 either way), else `""`."""
    used = (config.get("precision_used") or {}).get("precision", config.get("precision", "float32"))
    return "" if used == "float32" else f", {used.replace('_', ' ')}"


def camvid_scores(root):
    """Model card: the shipped CamVid networks' validation scores, the example's two networks' and SegNet-Basic's."""
    report = _load(root, "camvid_segmentation.json")
    results, anchor, settings = report["results"], report["anchor_segnet_basic_test"], report["settings"]
    steps = settings["epochs"] * settings["steps"]
    described = {
        "segnet": f"SegNet (`kfcn.models.segnet`, filters {settings['filters']}, depth {settings['depth']}, "
        f"pooling-index unpooling), `camvid_segmentation.py`: {steps:,} steps",
        "unet": f"U-Net (filters {settings['unet_filters']}, depth {settings['depth']}, transposed convolutions), "
        f"`camvid_segmentation.py`: {steps:,} steps",
    }
    keys = ("global_accuracy", "class_accuracy", "mean_iou")
    rows = [
        (_camvid_shipped_name(shipped), f"{shipped['parameters']:,}")
        + tuple(f"**{shipped['scores'][key]:.1f}**" for key in keys)
        for shipped in _camvid_shipped_all(root)
    ]
    for family, scores in results.items():
        rows.append((described[family], f"{scores['parameters']:,}", *(f"{scores[key]:.1f}" for key in keys)))
    rows.append(
        (
            "anchor: SegNet-Basic, CamVid *test* split (Badrinarayanan et al. 2015)",
            "—",
            *(f"{anchor[key]:g}" for key in keys),
        )
    )
    return _rows(["network", "parameters", "global accuracy", "class-average accuracy", "mIoU"], rows)


def camvid_per_class(root):
    """Model card: IoU and accuracy of each CamVid class for the shipped networks and the example's two."""
    report = _load(root, "camvid_segmentation.json")
    short = {"sign_symbol": "Sign"}
    header = ["class", *(short.get(name, name.capitalize()) for name in report["classes"])]
    names = {"unet": "example U-Net", "segnet": "example SegNet"}
    rows = []
    for key, what in (("iou_per_class", "IoU"), ("accuracy_per_class", "accuracy")):
        for shipped in _camvid_shipped_all(root):
            label = f"**shipped {CAMVID_NETWORKS[shipped['network']]} {what}**"
            rows.append((label, *(f"{shipped[key][name]:.1f}" for name in report["classes"])))
        for family, scores in report["results"].items():
            rows.append((f"{names[family]} {what}", *(f"{scores[key][name]:.1f}" for name in report["classes"])))
    return _rows(header, rows)


TABLES = {  # name: (markdown file, the function making the table from the shipped files)
    "isbi-results": ("README.md", isbi_results),
    "applications": ("README.md", applications),
    "isbi-validation": ("saved_models/README.md", isbi_validation),
    "isbi-attempts": ("saved_models/README.md", isbi_attempts),
    "deployment-files": ("saved_models/README.md", deployment_files),
    "deployment-metrics": ("saved_models/README.md", deployment_metrics),
    "counter": ("saved_models/README.md", counter),
    "counter-deployment": ("saved_models/README.md", counter_deployment),
    "camvid-scores": ("saved_models/README.md", camvid_scores),
    "camvid-per-class": ("saved_models/README.md", camvid_per_class),
    "camvid-deployment": ("saved_models/README.md", camvid_deployment),
}


def _marked(name):
    """The block of table `name`: its opening marker, the table (never crossing another marker), the end marker."""
    return re.compile(rf"(<!-- table:{re.escape(name)} -->\n)((?:(?!<!-- /?table).)*?)(<!-- /table -->)", re.DOTALL)


def render(root=ROOT):
    """{table name: markdown} made from the shipped files under `root`."""
    return {name: make(Path(root)) for name, (_, make) in TABLES.items()}


def committed(root=ROOT):
    """{table name: the markdown between its markers in the committed file}; a missing marker raises."""
    found = {}
    for name, (markdown, _) in TABLES.items():
        match = _marked(name).search((Path(root) / markdown).read_text())
        if match is None:
            raise ValueError(f"{markdown} has no `<!-- table:{name} -->` … `<!-- /table -->` block.")
        found[name] = match.group(2).removesuffix("\n")
    return found


def write(root=ROOT):
    """Rewrites every table between its markers; returns the names of the tables that changed."""
    tables, stale = render(root), committed(root)
    changed = [name for name in TABLES if tables[name] != stale[name]]
    for markdown in sorted({TABLES[name][0] for name in changed}):
        path = Path(root) / markdown
        text = path.read_text()
        for name in changed:
            if TABLES[name][0] == markdown:
                table = tables[name]
                text = _marked(name).sub(lambda match, table=table: f"{match.group(1)}{table}\n{match.group(3)}", text)
        path.write_text(text)
    return changed


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only report stale tables (exit 1 if any)")
    args = parser.parse_args()
    if args.check:
        tables, stale = render(), committed()
        changed = [f"{TABLES[name][0]}: {name}" for name in TABLES if tables[name] != stale[name]]
        print("stale: " + ", ".join(changed) if changed else "every table agrees with the shipped files")
        return 1 if changed else 0
    changed = write()
    print(f"rewrote {', '.join(changed)}" if changed else "every table already agreed with the shipped files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
