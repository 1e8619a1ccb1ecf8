"""How many CPU threads torch, BLAS and LightGBM use: one policy, one setting.

The count is, first found:

1. ``configure(n)`` with ``n >= 1`` (the CLI's global ``--threads N``);
2. the ``CROSSREC_THREADS`` environment variable (``0`` = automatic);
3. ``OMP_NUM_THREADS``, when the user set it;
4. the default: the CPUs this process may use (``os.sched_getaffinity`` and a cgroup CPU quota)
   that are idle now, at least one.

Why idle CPUs and not all of them: OpenMP threads wait for each other at every parallel region,
and a thread whose core another process keeps busy makes all of them wait. On a busy two-core
machine, torch's default of two threads made a BPR epoch 40x slower than one thread (8.8 s
against 0.2 s, identical losses); on an idle machine the extra thread helps. Idleness is measured
over a short window (``/proc/stat``, the CPUs of this process only; a second window when the
first finds a CPU taken, the quieter one counting), not with the one-minute load average,
which lags a load that has just started or stopped. ``benchmarks/threads.py`` measures the
default against one and two threads, on a quiet machine and under a competing load.

Ray workers get one thread each (``worker_env``): a worker is one CPU of the cluster.

Example:
    >>> from crossrec.threads import configure
    >>> configure(1)  # what ``crossrec --threads 1 ...`` does
    1
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from crossrec.errors import ConfigError

ENV = "CROSSREC_THREADS"
# read by the OpenMP runtime, MKL and OpenBLAS when they load (torch, numpy, LightGBM)
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
# a CPU counts as free when it was idle at least this share of the window
IDLE_SHARE = 0.75
WINDOW_S = 0.15

_chosen: int | None = None


def allowed_cpus() -> int:
    """CPUs this process may run on: its affinity set, capped by a cgroup v2 CPU quota."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        n = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            n = min(n, max(1, int(-(-int(quota) // int(period)))))
    except (OSError, ValueError):
        pass
    return max(1, n)


def _cpu_times(cpus: set[int]) -> tuple[int, int] | None:
    """``(busy, total)`` jiffies of ``cpus`` since boot (``/proc/stat``), None if unreadable."""
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return None
    busy = total = 0
    for line in lines:
        name, *fields = line.split()
        if not name.startswith("cpu") or name == "cpu" or int(name[3:]) not in cpus:
            continue
        ticks = [int(f) for f in fields[:8]]  # user nice system idle iowait irq softirq steal
        total += sum(ticks)
        busy += sum(ticks) - ticks[3] - ticks[4]
    return (busy, total) if total else None


def busy_cpus(window: float = WINDOW_S) -> float:
    """How many of this process's CPUs other work keeps busy now (0 = all idle).

    Measured over ``window`` seconds from ``/proc/stat`` (this process sleeps meanwhile);
    where that cannot be read, the one-minute load average.
    """
    try:
        cpus = os.sched_getaffinity(0)
    except AttributeError:
        cpus = set(range(os.cpu_count() or 1))
    before = _cpu_times(cpus)
    if before is not None:
        time.sleep(window)
        after = _cpu_times(cpus)
        if after is not None and after[1] > before[1]:
            share = (after[0] - before[0]) / (after[1] - before[1])
            return share * len(cpus)
    try:
        return os.getloadavg()[0]
    except OSError:
        return 0.0


def default_threads() -> int:
    """The automatic count: CPUs this process may use that are (mostly) idle, at least 1.

    A window that finds a CPU taken is measured once more and the quieter of the two counts:
    a sustained load shows in both, a brief one (a process exiting, a cron tick) in one only
    (on an idle 2-core machine one window in nine picked 1 thread, benchmarks/RESULTS.md).
    """
    n = allowed_cpus()

    def fits(busy: float) -> int:
        return max(1, min(n, int(n - busy + (1 - IDLE_SHARE))))

    k = fits(busy_cpus())
    return k if k == n else max(k, fits(busy_cpus()))


def _positive_int(value: str, name: str) -> int:
    try:
        n = int(value.strip())
    except ValueError:
        n = -1
    if n < 0:
        raise ConfigError(f"{name} must be a whole number >= 0 (0 = automatic), got {value!r}")
    return n


def resolve(n: int | None = None) -> int:
    """The thread count for ``n`` (None or 0 = automatic): see the module's order.

    Raises:
        ConfigError: ``n`` is negative, or ``CROSSREC_THREADS`` is not a whole number >= 0.
    """
    if n is not None and n < 0:
        raise ConfigError(f"--threads must be >= 0 (0 = automatic), got {n}")
    if n:
        return int(n)
    env = os.environ.get(ENV, "")
    if env.strip() and _positive_int(env, ENV):
        return _positive_int(env, ENV)
    omp = os.environ.get("OMP_NUM_THREADS", "").strip()
    if omp.isdigit() and int(omp) >= 1:
        return int(omp)
    return default_threads()


def configure(n: int | None = None) -> int:
    """Decide the thread count (``resolve``) and apply it to torch, BLAS and child processes.

    Sets ``OMP_NUM_THREADS``/``MKL_NUM_THREADS``/``OPENBLAS_NUM_THREADS`` (read by libraries
    not loaded yet and by child processes), ``torch.set_num_threads`` if torch is loaded, and
    the BLAS pools of a loaded numpy (threadpoolctl). Returns the count.
    """
    global _chosen
    k = resolve(n)
    for var in THREAD_VARS:
        os.environ[var] = str(k)
    if "torch" in sys.modules:
        import torch

        torch.set_num_threads(k)
    if "numpy" in sys.modules:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # pragma: no cover - installed with crossrec
            pass
        else:
            threadpool_limits(limits=k, user_api="blas")
    _chosen = k
    return k


def current() -> int:
    """The configured count, or (nothing configured yet) ``resolve()``'s choice, remembered
    (for libraries that take a count per call, such as LightGBM; nothing else changes)."""
    global _chosen
    if _chosen is None:
        _chosen = resolve()
    return _chosen


def worker_env() -> dict[str, str]:
    """Environment of a Ray worker: one thread for every library (a worker is one CPU)."""
    return {**{var: "1" for var in THREAD_VARS}, ENV: "1"}
