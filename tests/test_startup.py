"""kfcn.startup: the backend starts without its C++ log, and an interrupt inside a gc callback is not lost."""

import gc
import os
import signal
import subprocess
import sys
import time
import weakref

import pytest

from kfcn.atomic import Terminated
from kfcn.startup import STARTUP_LOG_VARIABLE, keep_interrupts


def _raising_once(exception):
    raised = []

    def callback(phase, info):
        if phase == "start" and not raised:
            raised.append(phase)
            raise exception

    return callback


def _collect_then_run_on():
    gc.collect()
    for _ in range(200):  # a redelivered signal is raised at the next instructions
        time.sleep(0.001)


@pytest.fixture
def gc_callbacks():
    before = list(gc.callbacks)
    yield
    gc.callbacks[:] = before


def test_without_the_wrapper_python_ignores_an_interrupt_inside_a_gc_callback(gc_callbacks):
    # What JAX's `_xla_gc_callback` did to one Ctrl-C in four: the program went on.
    gc.callbacks.append(_raising_once(KeyboardInterrupt()))
    unraisable = []
    hook, sys.unraisablehook = sys.unraisablehook, unraisable.append
    try:
        _collect_then_run_on()
    finally:
        sys.unraisablehook = hook
    assert [type(event.exc_value) for event in unraisable] == [KeyboardInterrupt]


def test_an_interrupt_inside_a_gc_callback_stops_the_program(gc_callbacks):
    # Python's own Ctrl-C handler (a process started in the background with job control off, as
    # CI may start the suite, inherits SIGINT ignored, and Python then installs no handler at all).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        gc.callbacks.append(_raising_once(KeyboardInterrupt()))
        keep_interrupts()
        keep_interrupts()  # idempotent: wrapped once
        assert sum(getattr(c, "kfcn_hands_interrupts_back", False) for c in gc.callbacks) == len(gc.callbacks)
        with pytest.raises(KeyboardInterrupt):
            _collect_then_run_on()
    finally:
        signal.signal(signal.SIGINT, previous)


def test_an_interrupt_on_a_wrappers_first_instruction_still_stops_the_program(gc_callbacks):
    # The signal handed back can land while another collection runs, on the first instruction of
    # a wrapper, before its `try` (CI saw this once): Python then reports it to sys.unraisablehook.
    # A callback that is marked as wrapped but raises stands for that wrapper.
    landed_before_the_try = _raising_once(KeyboardInterrupt())
    landed_before_the_try.kfcn_hands_interrupts_back = True
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    hook = sys.unraisablehook
    try:
        gc.callbacks.append(landed_before_the_try)
        keep_interrupts()
        keep_interrupts()  # idempotent: the hook is wrapped once
        assert sys.unraisablehook.kfcn_hands_interrupts_back and sys.unraisablehook.__closure__
        with pytest.raises(KeyboardInterrupt):
            _collect_then_run_on()
    finally:
        sys.unraisablehook = hook
        signal.signal(signal.SIGINT, previous)


def test_an_interrupt_inside_a_weakref_callback_of_a_collection_stops_the_program():
    # CI saw the interrupt handed back land in a `WeakKeyDictionary` entry's removal, which a
    # collection ran: Python reported it to sys.unraisablehook and dropped it.
    class Node:
        pass

    def remove(reference):
        raise KeyboardInterrupt

    cycle = Node()
    cycle.itself = cycle
    reference = weakref.ref(cycle, remove)  # noqa: F841 (kept alive so that its callback runs)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    hook = sys.unraisablehook
    try:
        keep_interrupts()
        del cycle
        with pytest.raises(KeyboardInterrupt):
            _collect_then_run_on()
    finally:
        sys.unraisablehook = hook
        signal.signal(signal.SIGINT, previous)


def test_other_unraisable_exceptions_still_reach_the_previous_hook():
    reported = []
    hook, sys.unraisablehook = sys.unraisablehook, reported.append
    try:
        keep_interrupts()

        class Broken:
            def __del__(self):
                raise ValueError("in __del__")

        Broken()
        gc.collect()
    finally:
        sys.unraisablehook = hook
    assert [type(event.exc_value) for event in reported] == [ValueError]


def test_a_sigterm_inside_a_gc_callback_stays_a_sigterm(gc_callbacks):
    def terminate(signum, frame):
        raise Terminated(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        gc.callbacks.append(_raising_once(Terminated("signal 15")))
        keep_interrupts()
        with pytest.raises(Terminated):
            _collect_then_run_on()
    finally:
        signal.signal(signal.SIGTERM, previous)


STARTUP = """
import gc, sys
import kfcn, keras
keras.ops.convert_to_tensor([1.0]) + 1  # the first operation sets up the devices (and tries CUDA)
hands_back = all(getattr(c, "kfcn_hands_interrupts_back", False) for c in gc.callbacks)
print(keras.backend.backend(), "jax" in sys.modules, hands_back)
"""


@pytest.mark.parametrize("startup_log", ["0", "1"])
def test_import_kfcn_then_keras_starts_tensorflow_without_its_log_unless_asked(startup_log):
    environment = {**os.environ, "KERAS_BACKEND": "tensorflow", STARTUP_LOG_VARIABLE: startup_log}
    environment.pop("TF_CPP_MIN_LOG_LEVEL", None)
    done = subprocess.run([sys.executable, "-c", STARTUP], env=environment, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    backend, jax_imported, hands_back = done.stdout.split()
    assert backend == "tensorflow" and hands_back == "True"
    if startup_log == "0":
        assert done.stderr == ""
    else:  # the same start with the log asked for prints it: the quiet run above hid something real
        assert "absl::InitializeLog" in done.stderr or "cuda" in done.stderr.lower(), done.stderr
