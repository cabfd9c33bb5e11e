"""The `kfcn` command: train, predict, evaluate, export and inspect fully convolutional networks.

    kfcn predict slice.png --output out/                      # the shipped ISBI U-Net
    kfcn train --images imgs/ --labels masks/ --output runs/cells --model unet --filters 16
    kfcn predict scans/ --model runs/cells/model.keras --output masks/ --skip-existing
    kfcn evaluate imgs/ masks/ --model runs/cells/model.keras --json scores.json
    kfcn export runs/cells/model.keras --format tflite --output cells.tflite
    kfcn inspect runs/cells/model.keras --erf erf.png
    kfcn card runs/cells                                      # runs/cells/MODEL_CARD.md
    kfcn export runs/cells/model.keras --format web --output page && kfcn serve-web page

`kfcn VERB --help` describes each verb. Images are read as raw pixel values (kfcn's input
contract); the model scales them. Errors are one line on stderr with exit status 2 and
nothing half-written; --verbose shows the backend's start-up log and full tracebacks.
"""

from __future__ import annotations

import argparse
import sys

from kfcn import __version__
from kfcn.cli import card, evaluate, export, inspect, predict, serve_web, train

VERBS = (train, predict, evaluate, export, inspect, card, serve_web)


def build_parser():
    """The argument parser of every verb.

    Example:
    >>> build_parser().parse_args(["predict", "a.png", "--output", "out"]).tile
    'auto'
    """
    parser = argparse.ArgumentParser(
        prog="kfcn", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--verbose", action="store_true", help="show the backend's start-up log and full tracebacks")
    parser.add_argument("--version", action="version", version=f"kfcn {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="VERB")
    for verb in VERBS:
        verb.register(commands)
    return parser


def main(argv=None):
    """Entry point of the `kfcn` command; returns the exit status.

    Example:
    >>> main(["--help"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    SystemExit: 0
    """
    from kfcn.cli.common import quiet_backend_import

    args = build_parser().parse_args(argv)
    resume = "; rerun the same command to resume" if args.command == "train" else ""
    try:
        with _sigterm_as_interrupt():
            if getattr(args, "needs_backend", True):  # `kfcn serve-web` serves files: no Keras, no wait
                quiet_backend_import(args.verbose, tensorflow=getattr(args, "needs_tensorflow", False))
            return args.run(args) or 0
    except (ValueError, FileNotFoundError, FileExistsError, OSError, RuntimeError, ImportError) as error:
        if args.verbose:
            raise
        message = " ".join(str(error).split())  # one line
        print(f"kfcn {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interrupt:
        if not _is_sigterm(interrupt):
            print(f"kfcn {args.command}: interrupted; nothing half-written was left behind{resume}", file=sys.stderr)
            return 130
        print(f"kfcn {args.command}: stopped (SIGTERM); nothing half-written was left behind{resume}", file=sys.stderr)
        return 143


def _is_sigterm(interrupt):
    from kfcn.atomic import Terminated

    return isinstance(interrupt, Terminated)


class _sigterm_as_interrupt:  # noqa: N801
    """Turns SIGTERM into `Terminated` inside the block (main thread only), so that a stopped run
    cleans up and says how to resume instead of dying silently with status 143."""

    def __enter__(self):
        import signal
        import threading

        self.previous = None
        if threading.current_thread() is threading.main_thread():

            def terminate(signum, frame):
                from kfcn.atomic import Terminated

                raise Terminated(f"signal {signum}")

            self.previous = signal.signal(signal.SIGTERM, terminate)
        return self

    def __exit__(self, *exc):
        import signal

        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)
        return False


if __name__ == "__main__":
    sys.exit(main())
