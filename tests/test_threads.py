"""The thread policy: --threads, CROSSREC_THREADS, OMP_NUM_THREADS, affinity, busy CPUs, Ray."""

from __future__ import annotations

import os
from contextlib import contextmanager

import pytest
import torch
from typer.testing import CliRunner

import crossrec.cluster as cluster
import crossrec.threads as threads
from crossrec.cli import app
from crossrec.errors import ConfigError
from crossrec.models.ranker.learn import threads as lightgbm_threads
from crossrec.testing import make_two_domain

runner = CliRunner()


@pytest.fixture(autouse=True)
def clean(monkeypatch):
    """No thread setting from outside; torch's count, the env and the memo restored after."""
    for var in (*threads.THREAD_VARS, threads.ENV):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(threads, "_chosen", None)
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _machine(monkeypatch, cpus: int, busy: float) -> None:
    """A process allowed ``cpus`` CPUs of which ``busy`` are kept busy by others."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cpus)))
    monkeypatch.setattr(threads, "busy_cpus", lambda window=0.0: busy)


def test_default_is_the_idle_cpus_of_the_affinity_set(monkeypatch):
    _machine(monkeypatch, 4, 0.0)
    assert threads.allowed_cpus() <= 4  # a cgroup quota may cap it further
    monkeypatch.setattr(threads, "allowed_cpus", lambda: 4)
    assert threads.resolve() == 4
    _machine(monkeypatch, 4, 1.0)
    assert threads.resolve() == 3
    _machine(monkeypatch, 4, 1.4)  # a CPU busy 40 % of the time is not free
    assert threads.resolve() == 2


def test_a_brief_load_is_measured_again_a_sustained_one_counts(monkeypatch):
    monkeypatch.setattr(threads, "allowed_cpus", lambda: 2)
    seen = iter([1.0, 0.05])  # a neighbour busy in the first window only
    monkeypatch.setattr(threads, "busy_cpus", lambda window=0.0: next(seen))
    assert threads.default_threads() == 2
    seen = iter([1.0, 0.9])  # busy in both
    monkeypatch.setattr(threads, "busy_cpus", lambda window=0.0: next(seen))
    assert threads.default_threads() == 1
    calls = []
    monkeypatch.setattr(threads, "busy_cpus", lambda window=0.0: calls.append(1) or 0.0)
    assert threads.default_threads() == 2 and len(calls) == 1  # idle: one window only


def test_a_busy_machine_gets_one_thread_never_zero(monkeypatch):
    monkeypatch.setattr(threads, "allowed_cpus", lambda: 2)
    _machine(monkeypatch, 2, 2.0)
    assert threads.resolve() == 1
    _machine(monkeypatch, 2, 7.5)  # a load average above the CPU count
    assert threads.resolve() == 1


def test_affinity_bounds_the_count(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3})
    assert threads.allowed_cpus() == 1
    monkeypatch.setattr(threads, "busy_cpus", lambda window=0.0: 0.0)
    assert threads.resolve() == 1


def test_busy_cpus_reads_a_share_of_the_allowed_cpus():
    busy = threads.busy_cpus(window=0.05)
    assert 0.0 <= busy <= len(os.sched_getaffinity(0)) + 1e-9


def test_explicit_beats_env_beats_omp_beats_default(monkeypatch):
    _machine(monkeypatch, 8, 0.0)
    monkeypatch.setattr(threads, "allowed_cpus", lambda: 8)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads.resolve() == 3
    monkeypatch.setenv(threads.ENV, "5")
    assert threads.resolve() == 5
    assert threads.resolve(2) == 2
    monkeypatch.setenv(threads.ENV, "0")  # automatic: falls through to OMP_NUM_THREADS
    assert threads.resolve() == 3
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert threads.resolve(0) == 8


@pytest.mark.parametrize("value", ["two", "-1", "1.5"])
def test_a_bad_env_value_is_a_config_error_naming_it(monkeypatch, value):
    monkeypatch.setenv(threads.ENV, value)
    with pytest.raises(ConfigError, match=threads.ENV):
        threads.resolve()


def test_configure_applies_to_torch_the_env_and_lightgbm(monkeypatch):
    assert threads.configure(1) == 1
    assert torch.get_num_threads() == 1
    assert all(os.environ[v] == "1" for v in threads.THREAD_VARS)
    assert lightgbm_threads(0) == 1 and lightgbm_threads(3) == 3


def test_current_remembers_without_touching_torch(monkeypatch):
    _machine(monkeypatch, 2, 0.0)
    monkeypatch.setattr(threads, "allowed_cpus", lambda: 2)
    torch.set_num_threads(1)
    assert threads.current() == 2 and torch.get_num_threads() == 1
    _machine(monkeypatch, 2, 2.0)
    assert threads.current() == 2  # decided once per process


def test_cli_threads_option_and_env(monkeypatch, tmp_path):
    data = tmp_path / "synthetic"
    make_two_domain(seed=1).save(data)
    r = runner.invoke(app, ["--threads", "1", "data", "stats", str(data)])
    assert r.exit_code == 0, r.output
    assert torch.get_num_threads() == 1 and os.environ["OMP_NUM_THREADS"] == "1"
    monkeypatch.setenv(threads.ENV, "2")
    r = runner.invoke(app, ["data", "stats", str(data)])
    assert r.exit_code == 0, r.output
    assert torch.get_num_threads() == 2 and os.environ["MKL_NUM_THREADS"] == "2"


def test_cli_bad_threads_exit_2_with_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv(threads.ENV, "many")
    r = runner.invoke(app, ["data", "stats", str(tmp_path)])
    assert r.exit_code == 2
    assert "CROSSREC_THREADS" in r.output and "Traceback" not in r.output


class _FakeRay:
    """Records ``init``; stands in for Ray in the session test."""

    def __init__(self) -> None:
        self.kwargs: dict = {}

    def is_initialized(self) -> bool:
        return False

    def init(self, **kwargs) -> None:
        self.kwargs = kwargs

    def shutdown(self) -> None:
        pass


@contextmanager
def _session(monkeypatch, **kw):
    fake = _FakeRay()
    monkeypatch.setattr(cluster, "import_ray", lambda: fake)
    with cluster.ray_session(2, **kw):
        yield fake


def test_ray_workers_get_one_thread(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2})
    with _session(monkeypatch) as fake:
        env = fake.kwargs["runtime_env"]["env_vars"]
        assert fake.kwargs["num_cpus"] <= 3
    assert all(env[v] == "1" for v in threads.THREAD_VARS) and env[threads.ENV] == "1"
    with _session(monkeypatch, address="auto") as fake:
        assert fake.kwargs["runtime_env"]["env_vars"]["OMP_NUM_THREADS"] == "1"
