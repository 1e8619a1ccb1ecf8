"""A real bundle (ItemKNN on all domains of the synthetic two-domain data) and app clients."""

from __future__ import annotations

from pathlib import Path

import pytest
from serving_toy import ADMIN_KEY, KEY

from crossrec.bundle import Bundle
from crossrec.data.split import cold_start_users
from crossrec.models import MODELS, FitOptions
from crossrec.testing import make_two_domain


@pytest.fixture(scope="session")
def bundle_path(tmp_path_factory) -> Path:
    ds = make_two_domain(seed=1)
    split = cold_start_users(ds, "source", "target", 0.3, seed=0)
    model = MODELS["itemknn"](train_on="all").fit(split.train, FitOptions(target="target"))
    config = {"model": {"name": "itemknn", "train_on": "all"}, "target": "target",
              "sources": ["source"], "seed": 0}
    path = tmp_path_factory.mktemp("serving") / "bundle"
    Bundle(model, split.train, config).save(path)
    return path


@pytest.fixture(scope="session")
def bundle(bundle_path) -> Bundle:
    return Bundle.load(bundle_path)


@pytest.fixture(scope="session")
def users(bundle) -> dict[str, str]:
    """Raw ids of a user with target history and of a user known only in the source."""
    train = bundle.train
    in_target = set(train.domain_users("target").tolist())
    source_only = [u for u in train.domain_users("source").tolist() if u not in in_target]
    return {"target": str(train.users.raw([min(in_target)])[0]),
            "source_only": str(train.users.raw([source_only[0]])[0])}


@pytest.fixture()
def make_client(bundle, tmp_path):
    """``make_client(**settings)`` -> a TestClient of a fresh app (own event store)."""
    from fastapi.testclient import TestClient

    from crossrec.serving.app import create_app
    from crossrec.serving.auth import KeyRing, digest
    from crossrec.serving.settings import ServeSettings

    clients = []

    def make(b: Bundle | None = None, **settings) -> TestClient:
        settings.setdefault("events", str(tmp_path / "events.sqlite"))
        app = create_app(b or bundle, ServeSettings(**settings), keys=KeyRing([digest(KEY)]),
                         admin_keys=KeyRing([digest(ADMIN_KEY)]))
        client = TestClient(app, raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for c in clients:
        c.__exit__(None, None, None)


@pytest.fixture()
def client(make_client):
    return make_client()
