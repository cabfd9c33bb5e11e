"""The command-line options the training examples share, so each script adds only its own.

Example:
>>> parser = example_parser("A demo.", figure="write a PNG here", filters=16, epochs=4, learning_rate=1e-3)
>>> args = shrink_if_quick(parser.parse_args(["--quick"]), filters=2, epochs=1)
>>> args.filters, args.epochs, args.learning_rate, args.report, args.figure
(2, 1, 0.001, None, None)
"""

from __future__ import annotations

import argparse

HELP = {
    "filters": "filters of the network's first level",
    "depth": "levels of the network (each halves the resolution)",
    "crop": "side of the random training crops, px",
    "batch": "images or crops per batch",
    "epochs": "training epochs",
    "steps": "steps per epoch",
    "learning_rate": "peak learning rate (Adam, cosine schedule)",
    "seed": "seed of the data, the initial weights and the batches",
}


def example_parser(description, figure=None, **defaults):
    """An argument parser with the shared options whose defaults are given (names as in `HELP`), then
    --report, --figure (when `figure` gives its help) and --quick."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, default in defaults.items():
        if name not in HELP:
            raise ValueError(f"{name!r} is not a shared example option; add it in the script.")
        kind = float if name == "learning_rate" else int
        parser.add_argument("--" + name.replace("_", "-"), type=kind, default=default, help=HELP[name])
    parser.add_argument("--report", default=None, help="write the scores as JSON here")
    if figure:
        parser.add_argument("--figure", default=None, help=figure)
    parser.add_argument("--quick", action="store_true", help="tiny settings: checks that the script runs")
    return parser


def shrink_if_quick(args, **tiny):
    """`args` with the `tiny` settings in place when --quick was given (a smoke test of the script)."""
    if args.quick:
        for name, value in tiny.items():
            setattr(args, name, value)
    return args
