"""The shipped cell counter and its evidence, made by `kfcn train --recipe vgg-cells`: seeds, a learning curve, a card.

For each number N of training images this links a split of the VGG synthetic cells 001-100 into
RUNS/vgg-cells-nN (images/, labels/: the first N of `numpy.random.default_rng(0).permutation(100) + 1`,
the dots linked under the images' names; val-images/, val-labels/: the other 100 - N), then for
each seed runs, in that folder,

    kfcn train --recipe vgg-cells --images images --labels labels --val-images val-images \\
        --val-labels val-labels --output run-eE-sS --epochs E --seed S
    kfcn evaluate val-images val-labels --model run-eE-sS/model.keras --task counting --json run-eE-sS-heldout.json
    kfcn card run-eE-sS --evaluation run-eE-sS-heldout.json

The split is one fixed draw for every seed: the seeds vary the initial weights and the crops, so
their spread is the recipe's, not the split's. The held-out images only log a learning curve while
training (model.keras is the epoch of lowest training loss; the calibration factor comes from the
training images), so their score is honest. Rerunning the command resumes every unfinished run
(`kfcn train` resumes exactly) and skips finished ones, so it can be stopped at any moment.

    KERAS_BACKEND=tensorflow python examples/counter_runs.py --quick --runs /tmp/counter-runs
    KERAS_BACKEND=tensorflow python examples/counter_runs.py --runs ~/kfcn-runs \\
        --report saved_models/vgg_cells_counter.json --ship saved_models/vgg_cells_counter.keras

--ship copies the model of the first seed at the first training size (decided before the runs, not
the best of the seeds) and writes its card beside it with `kfcn card --output`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from kfcn.atomic import atomic_path
from kfcn.cli.common import file_sha256
from kfcn.training import read_log

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "vgg_cells"
ANCHORS = "N = 32 on the other 100 images: Lempitsky 2010 3.5, FCRN-A (Xie 2016) 2.9, Count-ception (Cohen 2017) 2.3"
QUICK = ["--filters", "4", "--depth", "2", "--crop", "64", "--steps", "2", "--no-jit-compile"]


def split(size, total=100):
    """(training image numbers, held-out image numbers), 1-based: the first `size` of the seeded draw.

    >>> train, held_out = split(32)
    >>> len(train), len(held_out), sorted(train + held_out) == list(range(1, 101))
    (32, 68, True)
    """
    order = [int(number) for number in np.random.default_rng(0).permutation(total) + 1]
    return sorted(order[:size]), sorted(order[size:])


def link_split(data, folder, size):
    """Links images and dots of the split into `folder` (images, labels, val-images, val-labels)."""
    for names, (images, labels) in zip(split(size), [("images", "labels"), ("val-images", "val-labels")]):
        for sub in (images, labels):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        for number in names:
            for source, target in [
                (data / "images" / f"{number:03d}cell.png", folder / images / f"{number:03d}cell.png"),
                (data / "dots" / f"{number:03d}dots.png", folder / labels / f"{number:03d}cell.png"),
            ]:
                if not source.is_file():
                    raise SystemExit(f"{source} is missing; pass --data with the VGG cells folder (images/, dots/).")
                if not target.exists():
                    target.symlink_to(source.resolve())


def kfcn(*arguments, cwd, log=None):
    """Runs `kfcn ARGUMENTS` in `cwd` (output appended to `log` when given); stops the script if it fails."""
    command = [sys.executable, "-m", "kfcn", *map(str, arguments)]
    environment = os.environ | {"KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2"}
    if log is None:
        done = subprocess.run(command, cwd=cwd, env=environment)
    else:
        with open(cwd / log, "a") as stream:
            done = subprocess.run(command, cwd=cwd, env=environment, stdout=stream, stderr=subprocess.STDOUT)
    if done.returncode:
        raise SystemExit(
            f"kfcn {' '.join(map(str, arguments))} failed in {cwd}" + (f"; see {cwd / log}" if log else "")
        )


def finished(run, epochs):
    summary = run / "summary.json"
    return summary.is_file() and json.loads(summary.read_text()).get("epochs_run") == epochs


def train_and_score(folder, seed, epochs, extra):
    """Trains (or resumes) one run, scores it on the held-out images and writes its card; returns its entry."""
    name = f"run-e{epochs}-s{seed}"
    run, report = folder / name, folder / f"{name}-heldout.json"
    if not finished(run, epochs):
        print(f"{folder.name}/{name}: training (log: {name}.log)", flush=True)
        kfcn("train", "--recipe", "vgg-cells", "--images", "images", "--labels", "labels", "--val-images",
             "val-images", "--val-labels", "val-labels", "--output", name, "--epochs", epochs, "--seed", seed,
             *extra, cwd=folder, log=f"{name}.log")  # fmt: skip
    summary = json.loads((run / "summary.json").read_text())
    if not finished(run, epochs):
        raise SystemExit(f"{run} stopped at epoch {summary.get('epochs_run')} of {epochs}; rerun to resume it.")
    scored = json.loads(report.read_text()) if report.is_file() else {}
    if scored.get("model_sha256") != file_sha256(run / "model.keras"):
        kfcn("evaluate", "val-images", "val-labels", "--model", f"{name}/model.keras", "--task", "counting",
             "--json", report.name, cwd=folder, log=f"{name}.log")  # fmt: skip
        scored = json.loads(report.read_text())
    kfcn("card", name, "--evaluation", report.name, cwd=folder, log=f"{name}.log")
    return entry(folder, run, summary, scored)


def entry(folder, run, summary, scored):
    """The report's line of one run: held-out count errors (as calibrated, and before the calibration), time."""
    predicted = np.array([image["predicted_count"] for image in scored["per_image"]])
    true = np.array([image["true_count"] for image in scored["per_image"]])
    factor = summary.get("total_calibration") or 1.0
    config = json.loads((run / "config.json").read_text())
    seconds = float(read_log(run / "training.csv")["seconds"].sum())
    machine = summary["machine"]
    return {
        "train_size": len(list((folder / "images").iterdir())),
        "seed": config["seed"],
        "test_images": len(true),
        "mae": float(np.abs(predicted - true).mean()),
        "mean_error": float((predicted - true).mean()),
        "relative_mae": float((np.abs(predicted - true) / true).mean()),
        "calibration_factor": factor,
        "uncalibrated_mae": float(np.abs(predicted / factor - true).mean()),
        "uncalibrated_mean_error": float((predicted / factor - true).mean()),
        "hours": round(seconds / 3600, 2),
        "machine": f"{machine['cores']}-core {machine['processor']}"
        + (" (AVX-512, BF16)" if machine.get("bf16") else " (AVX-512)" if machine.get("avx512") else ""),
        "precision": config["precision"],
        "model_sha256": scored["model_sha256"],
    }


def command_line(args):
    """The command that made the report, the run folder shown as RUNS (no path of this machine)."""
    words = ["KERAS_BACKEND=tensorflow python examples/counter_runs.py --runs RUNS", f"--train {args.train}"]
    words += [f"--seeds {' '.join(map(str, args.seeds))}"] + (
        [f"--curve {' '.join(map(str, args.curve))}"] if args.curve else []
    )
    words += [f"--epochs {args.epochs}", f"--report {args.report}"] + ([f"--ship {args.ship}"] if args.ship else [])
    return " ".join(words + (["--quick"] if args.quick else []))


def summary_of(runs):
    maes = np.array([run["mae"] for run in runs])
    return {"mae_mean": float(maes.mean()), "mae_std": float(maes.std()), "runs": len(runs)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="VGG cells folder (images/, dots/)")
    parser.add_argument(
        "--runs", type=Path, required=True, help="folder of the run folders (keep it outside the repository)"
    )
    parser.add_argument(
        "--train", type=int, default=32, help="training images of the seeds' runs (and the shipped model)"
    )
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds at --train images; the first is shipped"
    )
    parser.add_argument(
        "--curve", type=int, nargs="*", default=[16, 50], help="further training sizes, first seed only"
    )
    parser.add_argument("--epochs", type=int, default=100, help="epochs of every run (40 steps each)")
    parser.add_argument("--report", type=Path, help="write the results as JSON here")
    parser.add_argument("--ship", type=Path, help="copy the shipped model here, its card beside it (.md)")
    parser.add_argument(
        "--quick", action="store_true", help="tiny networks, 1 epoch of 2 steps, N = 4: checks that it runs"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.train, args.seeds, args.curve, args.epochs = 4, args.seeds[:1], [], 1
    extra = QUICK if args.quick else []

    results = {}
    for size in [args.train, *args.curve]:
        folder = (args.runs / f"vgg-cells-n{size}").resolve()
        link_split(args.data, folder, size)
        for seed in args.seeds if size == args.train else args.seeds[:1]:
            results[size, seed] = run = train_and_score(folder, seed, args.epochs, extra)
            print(f"N = {size}, seed {seed}: held-out MAE {run['mae']:.2f} cells on {run['test_images']} images "
                  f"({run['uncalibrated_mae']:.2f} before calibration), {run['hours']} h", flush=True)  # fmt: skip

    seeds = [results[args.train, seed] for seed in args.seeds]
    overall = summary_of(seeds)
    print(f"N = {args.train}: MAE {overall['mae_mean']:.2f} ± {overall['mae_std']:.2f} over seeds "
          f"{', '.join(map(str, args.seeds))} ({ANCHORS})")  # fmt: skip
    shipped_folder = args.runs.resolve() / f"vgg-cells-n{args.train}"
    shipped_run = shipped_folder / f"run-e{args.epochs}-s{args.seeds[0]}"
    if args.report:
        train, held_out = split(args.train)
        report = {
            "model": str(args.ship) if args.ship else None,
            "command": command_line(args),
            "recipe": "vgg-cells",
            "epochs": args.epochs,
            "data": "VGG synthetic cells, images 001-100 (../shared/datasets/vgg_cells); dots = pure-red pixels of "
            "*dots.png; density sigma 2 px",
            "split": "training images: the first N of numpy.random.default_rng(0).permutation(100) + 1, the same for "
            "every seed; held out: the other 100 - N",
            "train_images": train,
            "held_out_images": held_out,
            "result": seeds[0],
            "seeds": seeds,
            "seeds_summary": overall,
            "curve": sorted(
                (run for (size, seed), run in results.items() if seed == args.seeds[0]),
                key=lambda run: run["train_size"],
            ),  # fmt: skip
            "anchors": ANCHORS,
        }
        args.report.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(args.report) as temporary:  # a stopped script leaves the old report whole
            temporary.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.report}")
    if args.ship:
        args.ship.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(args.ship) as temporary:  # never a half-copied shipped model
            shutil.copyfile(shipped_run / "model.keras", temporary)
        card = args.ship.resolve().with_suffix(".md")
        kfcn("card", shipped_run.name, "--evaluation", f"{shipped_run.name}-heldout.json", "--output", card,
             cwd=shipped_folder)  # fmt: skip
        print(f"shipped {shipped_run / 'model.keras'} as {args.ship}, its card {card.name} beside it")


if __name__ == "__main__":
    main()
