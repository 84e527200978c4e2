"""The timing rule of the gradcam, methods and metrics benchmarks: a warm-up call (tracing, first
allocations), then the median of the timed calls. ``repeats=0``: one call, warm-up included, for runs too
long to repeat."""

from __future__ import annotations

import statistics
import time


def median_seconds(function, repeats: int) -> float:
    if repeats == 0:
        start = time.perf_counter()
        function()
        return time.perf_counter() - start
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
