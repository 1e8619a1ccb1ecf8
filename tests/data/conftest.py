"""Small hand-checkable datasets and the real-data folders for the data-layer tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crossrec.data.builder import DatasetBuilder
from crossrec.data.dataset import MultiDomainDataset


def _real(data_dir: Path, name: str) -> Path:
    folder = data_dir / name
    if not folder.is_dir():
        pytest.skip(f"real data set {name!r} not found in {data_dir}")
    return folder


@pytest.fixture(scope="session")
def ml100k_dir(data_dir: Path) -> Path:
    return _real(data_dir, "movielens-100k")


@pytest.fixture(scope="session")
def arts_office_dir(data_dir: Path) -> Path:
    return _real(data_dir, "amazon-arts-office")


@pytest.fixture(scope="session")
def cdrib_dir(data_dir: Path) -> Path:
    return _real(data_dir, "cdrib-amazon")


def random_two_domain(
    n_users: int = 60, n_items: int = 30, per_user: int = 8, seed: int = 0
) -> MultiDomainDataset:
    """Books and movies; users u0..u39 in both, u40..u49 books only, u50..u59 movies only."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        doms = ["books", "movies"] if u < 40 else (["books"] if u < 50 else ["movies"])
        for d in doms:
            for i in rng.choice(n_items, size=per_user, replace=False):
                rows.append((f"u{u}", f"{d[0]}{i}", d, float(rng.integers(1, 6)),
                             int(rng.integers(0, 10_000))))
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "domain", "rating", "timestamp"])
    return DatasetBuilder("toy").add_interactions(frame).build()


@pytest.fixture
def make_two_domain() -> Callable[..., MultiDomainDataset]:
    return random_two_domain


@pytest.fixture
def two_domain() -> MultiDomainDataset:
    return random_two_domain()
