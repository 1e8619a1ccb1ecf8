"""Helpers of the store / update / reload tests: a replay set-up on the synthetic data.

``replay_setup`` holds back the newest interactions of some training users (the users with no
held-out truth), trains v1 (ItemKNN on all domains) on the rest, and returns what an update
should bring back: the held-back rows, as events.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from crossrec.bundle import Bundle
from crossrec.data.dataset import MultiDomainDataset
from crossrec.data.split import Split, cold_start_users
from crossrec.models import MODELS, FitOptions
from crossrec.serving.events import Event
from crossrec.testing import make_two_domain

CONFIG = {"model": {"name": "itemknn", "train_on": "all"}, "target": "target",
          "sources": ["source"], "seed": 0}


@dataclass
class Replay:
    split: Split  # the full split (its train = everything v1 and the events hold together)
    v1: Bundle  # trained without the held-back rows, saved
    held_back: pd.DataFrame  # rows of split.train left out of v1
    events: list[Event]  # the held-back rows as events
    config_path: Path  # an experiment TOML giving the same split (for --eval-config)


def fit_bundle(train: MultiDomainDataset) -> Bundle:
    model = MODELS["itemknn"](train_on="all").fit(train, FitOptions(target="target",
                                                                    sources=("source",)))
    return Bundle(model, train, dict(CONFIG))


def as_events(train: MultiDomainDataset, rows: pd.DataFrame, prefix: str = "r") -> list[Event]:
    users = train.users.raw(rows["user"].to_numpy())
    items = train.item_ids(rows["item"].to_numpy())
    domains = np.asarray(train.domains, dtype=object)[rows["domain"].to_numpy()]
    return [Event(f"{prefix}{i}", str(u), str(d), str(it), None, int(t), 1000.0 + i)
            for i, (u, d, it, t) in enumerate(zip(users, domains, items, rows["timestamp"],
                                                  strict=True))]


def replay_setup(tmp: Path, share: float = 0.1) -> Replay:
    ds = make_two_domain(seed=1)
    data = ds.save(tmp / "dataset")
    split = cold_start_users(ds, "source", "target", 0.3, seed=0)
    inter = split.train.interactions
    held_users = np.union1d(split.valid["user"], split.test["user"])
    trainee = ~np.isin(inter["user"].to_numpy(), held_users)
    # per training user, the newest rows (by timestamp) are held back: about ``share`` of them
    rank = inter.groupby("user")["timestamp"].rank(method="first", ascending=False)
    size = inter.groupby("user")["user"].transform("size")
    back = trainee & (rank.to_numpy() <= np.round(share * size.to_numpy()))
    v1 = fit_bundle(split.train.with_interactions(inter[~back]))
    v1.save(tmp / "v1")
    config = tmp / "toy.toml"
    config.write_text(f'name = "toy"\n[data]\nprepared = "{data}"\n[split]\n'
                      'kind = "cold_start_users"\nsource = ["source"]\ntarget = "target"\n'
                      'ratio = 0.3\n[eval]\nks = [10]\n[model]\nname = "itemknn"\n'
                      'train_on = "all"\n')
    held = inter[back].reset_index(drop=True)
    return Replay(split, v1, held, as_events(split.train, held), config)


def pairs(train: MultiDomainDataset) -> set[tuple[str, str, str]]:
    """(user id, domain, item id) of every training interaction, in raw ids."""
    inter = train.interactions
    users = train.users.raw(inter["user"].to_numpy())
    domains = np.asarray(train.domains, dtype=object)[inter["domain"].to_numpy()]
    items = train.item_ids(inter["item"].to_numpy())
    return set(zip(users.tolist(), domains.tolist(), items.tolist(), strict=True))
