"""The benchmarks' one way to time a call: wall times of repeated runs after a warm-up run.

The warm-up pays for what only the first call costs (tracing, XLA compilation, allocator growth),
so the figures are the steady state a user sees from the second call on; `best_of` reports the
fastest run, the least disturbed by other processes on the machine.

Example:
>>> seconds, result = best_of(lambda: sum(range(1000)), repeats=2)
>>> result, seconds < 1
(499500, True)
"""

from __future__ import annotations

import time


def timings(function, repeats=3):
    """`(seconds of each of `repeats` runs, the last run's result)`, after one warm-up run."""
    result = function()
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        result = function()
        seconds.append(time.perf_counter() - started)
    return seconds, result


def best_of(function, repeats=3):
    """`(best seconds of `repeats` runs, the last run's result)`, after one warm-up run."""
    seconds, result = timings(function, repeats)
    return min(seconds), result
