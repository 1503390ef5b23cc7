"""Use only the CPU cores that other processes leave free.

PyTorch starts one OpenMP thread per core, and those threads spin while they wait for each other. When another
busy process holds a core, every parallel region waits for a descheduled thread: measured on 2 cores, 12
training steps took 36 s instead of 8 s beside one busy process (10 s with one thread), and predict.py over
48 lines 10.1 s instead of 2.6 s beside two (3.7 s with one thread). `CpuShare` measures how much CPU the
rest of the machine uses (``/proc/stat`` minus this process's own time) and sets PyTorch's thread count to
the cores left free; with nothing else running it keeps every core. Where ``/proc/stat`` is missing (not
Linux) it changes nothing. ``OMP_NUM_THREADS`` set by the user wins: then it changes nothing either.
"""

from __future__ import annotations

import os
import time

USER_HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def usable_cores() -> int:
    """Cores this process may run on: ``HTR_CORES`` when set (e.g. by ``htr batch --engine ray`` in each reading
    actor: its share of the machine), else its affinity mask (taskset, a cluster's cgroup)."""
    if os.environ.get("HTR_CORES", "").isdigit() and int(os.environ["HTR_CORES"]) > 0:
        return int(os.environ["HTR_CORES"])
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _machine_busy_seconds() -> float | None:
    """CPU seconds all processes have spent busy since boot (every core summed), or None off Linux."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    guest = sum(fields[8:10])  # guest time is already counted in user time
    return (sum(fields) - guest - idle) / USER_HZ


def _own_busy_seconds() -> float:
    times = os.times()
    return times.user + times.system


class CpuShare:
    """Keeps PyTorch's intra-op thread count at the number of cores that other processes leave free.

    Call `update` often (training: every step; reading: every batch): it measures and acts at most once per
    ``period`` seconds, the first time over the span since the object was made (so make it before loading a
    model, and that load is the first measurement). ``max_threads``: PyTorch's own count by default.
    """

    def __init__(self, max_threads: int | None = None, period: float = 10.0) -> None:
        self.cores = usable_cores()
        self.max_threads = max_threads
        self.period = period
        self.enabled = "OMP_NUM_THREADS" not in os.environ and _machine_busy_seconds() is not None
        self.threads: int | None = None  # what this object last set; None: PyTorch's default
        self._mark()

    def _mark(self) -> None:
        self._wall, self._busy, self._own = time.monotonic(), _machine_busy_seconds(), _own_busy_seconds()

    def others_busy_cores(self) -> float | None:
        """Cores' worth of CPU the other processes used since the last measurement, or None."""
        busy, wall = _machine_busy_seconds(), time.monotonic() - self._wall
        if busy is None or self._busy is None or wall <= 0:
            return None
        others = (busy - self._busy) - (_own_busy_seconds() - self._own)
        return max(0.0, others / wall)

    def settle(self) -> int:
        """Measure now and set PyTorch's thread count to the free cores (at least 1); returns it."""
        import torch

        if self.max_threads is None:
            self.max_threads = torch.get_num_threads()
        if not self.enabled:
            return torch.get_num_threads()
        others = self.others_busy_cores()
        self._mark()
        threads = self.max_threads if others is None else max(1, min(self.max_threads, round(self.cores - others)))
        if threads != torch.get_num_threads():
            torch.set_num_threads(threads)
        self.threads = threads
        return threads

    def update(self) -> int | None:
        """`settle` when ``period`` seconds have passed since the last measurement; the thread count it set."""
        if self.enabled and time.monotonic() - self._wall >= self.period:
            return self.settle()
        return self.threads
