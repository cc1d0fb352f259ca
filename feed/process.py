"""The server process's own numbers for ``/metrics``: open files against their limit,
resident memory, CPU time and the garbage collector.

They carry the names of prometheus_client's process and GC collectors, so dashboards
made for those work, but are read here: in multiprocess mode (metrics.py, on sharing)
those collectors would describe only the worker a scrape reaches, and the GC one turns
itself off. Open files are counted from the size of ``/proc/self/fd``, which Linux
gives at no cost from 6.2 on; older kernels give 0, and then the entries are listed,
which takes longer the more files are open. Time spent collecting comes from
``gc.callbacks``, which prometheus_client does not measure: a long full collection is
what stalls delivery (server.py, on the GC thresholds). How the workers' numbers add
up is metrics.py's.
"""

from __future__ import annotations

import contextlib
import gc
import os
import resource
import time
from typing import Literal

FD_DIR = "/proc/self/fd"
STATM = "/proc/self/statm"

# Name -> (help, how the workers' values add up: metrics.py, on sharing).
PROCESS_FIGURES: dict[str, tuple[str, Literal["sum", "max", "all", "counter"]]] = {
    "process_open_fds": ("Open files, sockets included", "sum"),
    "process_max_fds": ("The open-files limit", "sum"),
    "feed_open_files_ratio": ("Open files over their limit, in the process nearest it", "max"),
    "process_resident_memory_bytes": ("Resident memory", "sum"),
    "process_cpu_seconds": ("CPU time, user and system", "counter"),
    "feed_workers": ("Processes counted in the process_* numbers", "sum"),
}
# The garbage collector's counters, each by generation.
COLLECTIONS: dict[str, str] = {
    "python_gc_collections": "Collections, by generation",
    "python_gc_objects_collected": "Objects collections freed, by generation",
    "python_gc_objects_uncollectable": "Objects collections could not free, by generation",
    "feed_gc_seconds": "Seconds spent collecting, by generation",
}


class ProcessNumbers:
    """This process's own numbers, read when asked; time spent collecting, counted as
    the collector runs once ``start`` has hooked it."""

    def __init__(self) -> None:
        self._seconds = [0.0] * len(gc.get_stats())
        self._began = 0.0

    def start(self) -> None:
        gc.callbacks.append(self._timed)

    def stop(self) -> None:
        with contextlib.suppress(ValueError):
            gc.callbacks.remove(self._timed)

    def _timed(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
        elif self._began:  # not a collection that began before this was installed
            self._seconds[info["generation"]] += time.perf_counter() - self._began
            self._began = 0.0

    def figures(self) -> dict[str, float]:
        files = _open_files()
        limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        with open(STATM, "rb") as statm:
            resident = int(statm.read().split()[1]) * resource.getpagesize()
        return {
            "process_open_fds": files,
            "process_max_fds": limit,
            "feed_open_files_ratio": files / limit if limit > 0 else 0.0,
            "process_resident_memory_bytes": resident,
            "process_cpu_seconds": time.process_time(),
            "feed_workers": 1,
        }

    def collections(self) -> dict[str, list[float]]:
        stats = gc.get_stats()
        return {
            "python_gc_collections": [s["collections"] for s in stats],
            "python_gc_objects_collected": [s["collected"] for s in stats],
            "python_gc_objects_uncollectable": [s["uncollectable"] for s in stats],
            "feed_gc_seconds": list(self._seconds),
        }


def _open_files() -> int:
    size = os.stat(FD_DIR).st_size
    # Before Linux 6.2 the size is 0; the listing's own file is not counted.
    return size if size > 0 else len(os.listdir(FD_DIR)) - 1
