"""A Ray session for the ``--workers`` paths (encode, evaluate): local, or an existing cluster.

Ray is imported only here, inside ``ray_session``, so nothing of Ray loads unless a command
asks for workers. A session that is already initialised (a test fixture, a notebook, a driver
script that called ``ray.init``) is used as it is and left running.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

from crossrec.errors import ConfigError

INSTALL_HINT = "pip install 'crossrec[distributed]'"


def import_ray() -> ModuleType:
    """The ``ray`` module, or a ConfigError telling how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError(f"--workers needs Ray: {INSTALL_HINT}") from None
    return ray


def check_workers(workers: int) -> int:
    """``workers`` as an int >= 1, or a ConfigError naming the option."""
    if int(workers) < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    return int(workers)


@contextmanager
def ray_session(workers: int, address: str | None = None) -> Iterator[ModuleType]:
    """Yield ``ray`` connected to a cluster with room for ``workers`` one-CPU workers.

    Args:
        workers: how many workers the caller starts (each asks for one CPU).
        address: an existing cluster (``ray://host:10001``, ``host:6379`` or ``auto``); None
            starts a local one with ``max(workers, CPUs this process may use)`` CPUs (more
            workers than cores share them) and stops it on exit.

    Every worker runs with one torch/BLAS thread (``crossrec.threads.worker_env``). A session
    that is already initialised keeps the environment it was started with.
    """
    ray = import_ray()
    check_workers(workers)
    if ray.is_initialized():
        yield ray
        return
    from crossrec.threads import allowed_cpus, worker_env

    env = {"env_vars": worker_env()}  # one thread per worker: a worker is one CPU
    if address:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, runtime_env=env)
    else:
        ray.init(num_cpus=max(workers, allowed_cpus()), include_dashboard=False,
                 log_to_driver=False, runtime_env=env)
    try:
        yield ray
    finally:
        ray.shutdown()
