"""A quiet, interruptible start: the backend's C++ start-up log hidden, and Ctrl-C never swallowed.

Standard library only: `kfcn/__init__.py` and the command line use this before Keras is imported.

TensorFlow 2.21 (and jaxlib, which `tensorflow.lite` imports) writes its start-up lines from C++
before any setting is read (`All log messages before absl::InitializeLog()`, `cudart_stub`, and
on a machine without a GPU an alarming `E0000 ... failed call to cuInit`). kfcn hides them while
it imports the backend, unless `KFCN_STARTUP_LOG=1` is set (the command line's `--verbose` sets it).

JAX frees device buffers from a garbage-collector callback. A Ctrl-C that lands while a callback
runs is printed as "Exception ignored in: <function _xla_gc_callback>" and lost, and training goes
on. `keep_interrupts` makes every gc callback hand such an interrupt back to the main thread, and
catches in `sys.unraisablehook`, where Python reports it, one that lands anywhere else Python would
drop it: on a wrapper's first instruction (before its `try`), in a weakref callback, in `__del__`.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import os
import signal
import sys
import threading
import time

STARTUP_LOG_VARIABLE = "KFCN_STARTUP_LOG"


def startup_log_wanted():
    """True when the user asked to see the backend's start-up log (`KFCN_STARTUP_LOG=1`).

    Example:
    >>> os.environ.pop(STARTUP_LOG_VARIABLE, None) and None
    >>> startup_log_wanted()
    False
    """
    return os.environ.get(STARTUP_LOG_VARIABLE, "0") not in ("", "0")


@contextlib.contextmanager
def native_stderr_silenced(enabled=True):
    """Sends file descriptor 2 to /dev/null inside the block (C++ writes there, not to `sys.stderr`).

    An exception raised inside still propagates, and is reported after the descriptor is restored.

    Example:
    >>> with native_stderr_silenced():
    ...     os.write(2, b"hidden")
    6
    """
    if not enabled:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


@contextlib.contextmanager
def quiet_startup():
    """Imports inside this block print no backend start-up log, unless `KFCN_STARTUP_LOG=1`.

    Also sets `TF_CPP_MIN_LOG_LEVEL=3` where the user has not set it: TensorFlow's C++ log, whose
    errors reach Python as exceptions anyway (on a machine without a GPU, the first operation
    otherwise logs `E0000 ... failed call to cuInit`). Keeps Ctrl-C working (`keep_interrupts`).

    Example:
    >>> with quiet_startup():
    ...     import json
    """
    verbose = startup_log_wanted()
    if not verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")
        os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    try:
        with native_stderr_silenced(enabled=not verbose):
            yield
    finally:
        keep_interrupts()


def _handing_interrupts_back(callback):
    @functools.wraps(callback)
    def wrapped(*args):
        try:
            return callback(*args)
        except KeyboardInterrupt as interrupt:
            # Python ignores exceptions of gc callbacks: the signal is delivered to the main thread
            # again, from another thread and a moment later, once the collection has returned (a
            # signal handled while still inside a callback would be lost again; should that happen,
            # the wrapper of that callback delivers it once more).
            _hand_back(interrupt)

    wrapped.kfcn_hands_interrupts_back = True
    return wrapped


def _hand_back(interrupt):
    signum = getattr(interrupt, "signum", signal.SIGINT)
    threading.Thread(target=_deliver_later, args=(signum,), daemon=True).start()


def _deliver_later(signum, delay=0.01):
    import _thread

    time.sleep(delay)
    _thread.interrupt_main(signum)


def _redelivering_unraisable_interrupts(previous_hook):
    def hook(unraisable):
        # Python reports, and otherwise drops, an exception it cannot raise: one in a gc callback,
        # a weakref callback (a `WeakKeyDictionary` entry removed during a collection) or `__del__`.
        # A Ctrl-C or SIGTERM landing on any of those is the user's stop, so it is delivered again.
        if isinstance(unraisable.exc_value, KeyboardInterrupt):
            _hand_back(unraisable.exc_value)
        else:
            previous_hook(unraisable)

    hook.kfcn_hands_interrupts_back = True
    return hook


def keep_interrupts():
    """Wraps the garbage collector's callbacks (JAX's among them) so that a Ctrl-C or SIGTERM that
    arrives while one runs stops the program instead of being printed and ignored. Idempotent.

    A signal can also land on a wrapper's very first instruction, before its `try` (Python checks
    for signals on entering a function), or in a weakref callback or `__del__` that a collection
    runs; the interrupt then escapes to `sys.unraisablehook`, which this also wraps to deliver every
    such interrupt once more (other unraisable exceptions still reach the previous hook).

    Example:
    >>> calls = []
    >>> gc.callbacks.append(lambda phase, info: calls.append(phase))
    >>> keep_interrupts()
    >>> all(getattr(callback, "kfcn_hands_interrupts_back", False) for callback in gc.callbacks)
    True
    >>> _ = gc.callbacks.pop()
    """
    gc.callbacks[:] = [
        callback if getattr(callback, "kfcn_hands_interrupts_back", False) else _handing_interrupts_back(callback)
        for callback in gc.callbacks
    ]
    if not getattr(sys.unraisablehook, "kfcn_hands_interrupts_back", False):
        sys.unraisablehook = _redelivering_unraisable_interrupts(sys.unraisablehook)
