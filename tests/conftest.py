"""Fixtures shared by the whole test suite."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def find_data_dir() -> Path | None:
    """``$CROSSREC_DATA`` if set, else the first ``shared/data`` found walking up from the repo
    root (the checkout normally sits beside ``shared/``)."""
    if os.environ.get("CROSSREC_DATA"):
        return Path(os.environ["CROSSREC_DATA"])
    for folder in (REPO_ROOT, *REPO_ROOT.parents):
        candidate = folder / "shared" / "data"
        if candidate.is_dir():
            return candidate
    return None


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The folder of real data sets (``shared/data``); skips the test when it is absent."""
    found = find_data_dir()
    if found is None or not found.is_dir():
        pytest.skip(
            "real data not found: set CROSSREC_DATA or put shared/data beside the repository "
            f"(looked for {found or 'shared/data above ' + str(REPO_ROOT)})"
        )
    return found


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray instance (2 CPUs, no dashboard) for every ``distributed`` test; the
    ``--workers`` code paths find it initialised and use it as it is. Its worker processes
    know the test encoder "hashing" (``install_hashing_encoder``), as the tests' own process
    does within ``hashing_encoder``."""
    ray = pytest.importorskip("ray")
    started = not ray.is_initialized()
    if started:
        hook = "crossrec.testing.text.install_hashing_encoder"
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 runtime_env={"worker_process_setup_hook": hook})
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved ``pop`` bundle on the synthetic two-domain data (tests copy it, then damage the
    copy)."""
    from crossrec.bundle import Bundle
    from crossrec.models import MODELS, FitOptions
    from crossrec.testing import make_two_domain

    ds = make_two_domain(seed=1)
    model = MODELS["pop"]().fit(ds, FitOptions(target="target"))
    path = tmp_path_factory.mktemp("pristine") / "bundle"
    Bundle(model, ds, {"model": {"name": "pop"}, "target": "target", "seed": 0}).save(path)
    return path
