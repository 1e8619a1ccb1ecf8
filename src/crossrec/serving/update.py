"""Continuous update: stored events -> the bundle's training data -> a refitted new version.

``run_update`` reads the events posted since the live version was built, maps them to the
bundle's vocabularies (events of unknown items or domains are counted and skipped; new users
are added at the end of the user vocabulary, so every existing index stays the same), appends
the (user, item) pairs not already in the training data, and refits the model **from scratch**
with the bundle's own resolved model spec and seed (no incremental training). Given an
evaluation config, the old and the new version are evaluated on the same held-out users (the
config's split, with the bundle's seed, mapped to each version's id spaces by raw ids), and the
new version is made live only when asked and not worse than the old by more than a tolerance
on the validation users (unless forced).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crossrec.bundle import Bundle
from crossrec.data.dataset import MultiDomainDataset
from crossrec.data.split import Split
from crossrec.data.vocab import Vocabulary
from crossrec.errors import ConfigError
from crossrec.serving.events import Event, open_event_store
from crossrec.serving.store import BundleStore, StoreError

CURSOR_OVERLAP = 300.0  # seconds re-read before the cursor: a late commit is never missed


@dataclass
class EventCounts:
    """What became of the events read: ``read = used + duplicates + unknown_items +
    unknown_domains + excluded`` (``excluded``: posted by a key given to ``--exclude-key``);
    ``cursor`` is the newest server receive time seen."""

    read: int = 0
    used: int = 0
    duplicates: int = 0
    unknown_items: int = 0
    unknown_domains: int = 0
    new_users: int = 0
    cursor: float = 0.0
    excluded: int = 0


def merge_events(train: MultiDomainDataset, events: Sequence[Event]
                 ) -> tuple[MultiDomainDataset, EventCounts]:
    """``train`` plus the events' (user, item) pairs it lacks (one row per pair, the newest
    event's rating and timestamp); new user ids are appended to the user vocabulary."""
    counts = EventCounts(read=len(events), cursor=max((e.received_at for e in events),
                                                      default=0.0))
    if not events:
        return train, counts
    frame = pd.DataFrame({"user_id": [e.user_id for e in events],
                          "domain": [e.domain for e in events],
                          "item_id": [e.item_id for e in events],
                          "rating": [np.nan if e.rating is None else e.rating for e in events],
                          "timestamp": [e.timestamp for e in events]})
    known_domain = frame["domain"].isin(train.domains).to_numpy()
    counts.unknown_domains = int((~known_domain).sum())
    frame = frame[known_domain]
    item = np.full(len(frame), -1, dtype=np.int64)
    for d in frame["domain"].unique():
        rows = (frame["domain"] == d).to_numpy()
        item[rows] = train.item_index(d, frame.loc[rows, "item_id"].to_numpy(), missing="ignore")
    counts.unknown_items = int((item < 0).sum())
    frame, item = frame[item >= 0], item[item >= 0]
    new_ids = pd.unique(frame.loc[~frame["user_id"].isin(train.users.ids), "user_id"])
    users = train.users
    if len(new_ids):
        users = Vocabulary(np.concatenate([train.users.ids, new_ids.astype(object)]),
                           name=train.users.name)
    counts.new_users = len(new_ids)
    n_items = train.n_items
    key = users.index(frame["user_id"].to_numpy()).astype(np.int64) * n_items + item
    old = train.interactions
    old_key = old["user"].to_numpy(np.int64) * n_items + old["item"].to_numpy(np.int64)
    last = ~pd.Series(key).duplicated(keep="last").to_numpy()  # events come oldest first
    fresh = last & ~np.isin(key, old_key)
    counts.used = int(fresh.sum())
    counts.duplicates = len(frame) - counts.used
    add = frame[fresh]
    rows = {"user": (key[fresh] // n_items).astype(np.int32),
            "item": (key[fresh] % n_items).astype(np.int32),
            "domain": train.item_domain[key[fresh] % n_items].astype(np.int8),
            "rating": add["rating"].to_numpy(np.float32),
            "timestamp": add["timestamp"].to_numpy(np.int64)}
    new_rows = pd.DataFrame({c: rows[c] for c in ("user", "item", "domain", "rating",
                                                  "timestamp")})
    if "part" in old.columns:
        cats = old["part"].cat.categories if hasattr(old["part"], "cat") else ["train"]
        new_rows["part"] = pd.Categorical(["train"] * len(new_rows), categories=cats)
    merged = pd.concat([old, new_rows[[c for c in old.columns]]], ignore_index=True)
    updated = dataclasses.replace(train, users=users, interactions=merged,
                                  report={**train.report, "appended_events":
                                          int(train.report.get("appended_events", 0))
                                          + counts.used}, _cache={})
    return updated, counts


def read_events(where: str, received_after: float = 0.0) -> list[Event]:
    """Events of a SQLite file or ``postgresql://`` URL received after a server time."""
    if not where.startswith(("postgresql://", "postgres://")) and not Path(where).is_file():
        raise StoreError(f"event store {where} does not exist (give the file `crossrec serve "
                         "--events` writes, or a postgresql:// URL)")
    store = open_event_store(where)
    try:
        return store.since(received_after)
    finally:
        store.close()


def refit(old: Bundle, train: MultiDomainDataset, *, device: str = "cpu",
          validate: Callable[[Any], float] | None = None) -> tuple[Bundle, float]:
    """A new model fitted from scratch on ``train`` with ``old``'s model spec and seed;
    returns the bundle (config copied, not yet saved) and the fit seconds."""
    from crossrec.models import build_model
    from crossrec.models.base import FitOptions

    model = build_model(dict(old.config["model"]))
    options = FitOptions(target=old.target, sources=tuple(old.config.get("sources", ())),
                         seed=int(old.config.get("seed", 0)), device=device, validate=validate,
                         progress=False)
    start = time.perf_counter()
    model.fit(train, options)
    return Bundle(model, train, dict(old.config)), time.perf_counter() - start


def remap_truth(frame: pd.DataFrame, src: MultiDomainDataset, dst: MultiDomainDataset
                ) -> pd.DataFrame:
    """Truth rows of ``src``'s id spaces in ``dst``'s (by raw ids); unknown rows dropped."""
    users = dst.users.index(src.users.raw(frame["user"].to_numpy()), missing="ignore")
    domains = np.asarray(src.domains, dtype=object)[frame["domain"].to_numpy()]
    raw_items = src.item_ids(frame["item"].to_numpy())
    items = np.full(len(frame), -1, dtype=np.int64)
    dom = np.full(len(frame), -1, dtype=np.int64)
    for d in pd.unique(domains):
        rows = domains == d
        if d in dst.domains:
            items[rows] = dst.item_index(d, raw_items[rows], missing="ignore")
            dom[rows] = dst.domains.index(d)
    keep = (users >= 0) & (items >= 0)
    out = frame[keep].copy()
    out["user"] = users[keep].astype(np.int32)
    out["item"] = items[keep].astype(np.int32)
    out["domain"] = dom[keep].astype(np.int8)
    return out.reset_index(drop=True)


def held_out_for(split: Split, train: MultiDomainDataset) -> tuple[Split, dict[str, int]]:
    """``split``'s truth on ``train`` (a version's training data), with counts of truth rows
    dropped as unknown and of truth rows present in ``train`` (a leak: must be 0)."""
    valid = remap_truth(split.valid, split.train, train)
    test = remap_truth(split.test, split.train, train)
    seen = set((train.interactions["user"].to_numpy(np.int64) * train.n_items
                + train.interactions["item"].to_numpy(np.int64)).tolist())
    truth = pd.concat([valid, test])
    keys = truth["user"].to_numpy(np.int64) * train.n_items + truth["item"].to_numpy(np.int64)
    info = {"truth_dropped": len(split.valid) + len(split.test) - len(truth),
            "truth_in_train": int(sum(k in seen for k in keys.tolist()))}
    return Split(train, valid, test, split.target, split.name, dict(split.params)), info


@dataclass
class Evaluation:
    """Old vs new on the same held-out users: ``values[part][metric] = (old, new)``."""

    config: str
    headline: str
    group: str
    higher_is_better: bool
    values: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)
    n_users: dict[str, int] = field(default_factory=dict)
    checks: dict[str, dict[str, int]] = field(default_factory=dict)

    def headline_pair(self, part: str = "valid") -> tuple[float, float]:
        return self.values[part][self.headline]


def _figures(result: Any, group: str) -> dict[str, float]:
    s = result.summary
    rows = s[s["group"] == (group if (s["group"] == group).any() else "all")]
    return {(m if pd.isna(k) else f"{m}@{int(k)}"): float(v)
            for m, k, v in zip(rows["metric"], rows["k"], rows["value"], strict=True)}


def held_out_split(config: str | Path, seed: int) -> tuple[Any, Split]:
    """The experiment config and its split (built with ``seed``) that evaluation uses."""
    from crossrec.config import load_config
    from crossrec.data.load import load_dataset, make_split

    cfg = load_config(config)
    return cfg, make_split(load_dataset(cfg.data), cfg.split, seed)


def evaluate_versions(old: Bundle, new: Bundle, cfg: Any, split: Split,
                      name: str = "") -> Evaluation:
    """Both versions on the held-out users of ``split`` (each in its own id spaces)."""
    from crossrec.eval.run import headline_metric, protocol, run

    if split.target != old.target:
        raise ConfigError(f"{name or cfg.name}: split target {split.target!r}, the bundle "
                          f"serves {old.target!r}")
    seed = int(old.config.get("seed", 0))
    ev = Evaluation(name or cfg.name, headline_metric(cfg), cfg.eval.report_group,
                    protocol(cfg.eval, cfg.train.early_stopping) != "ratings")
    held = {}
    for key, b in (("old", old), ("new", new)):
        held[key], ev.checks[key] = held_out_for(split, b.train)
    for part in ("valid", "test"):
        figs = {key: _figures(run(b.model, held[key], cfg.eval, part=part, seed=seed),
                              ev.group)
                for key, b in (("old", old), ("new", new))}
        ev.values[part] = {m: (figs["old"][m], figs["new"][m]) for m in figs["old"]
                           if m in figs["new"]}
        ev.n_users[part] = int(held["new"].truth(part)["user"].nunique())
    return ev


def validation_hook(cfg: Any, split: Split, train: MultiDomainDataset, seed: int
                    ) -> Callable[[Any], float]:
    """Early-stopping score on the split's validation users (as in ``crossrec train``)."""
    from crossrec.eval.run import validation_hook as hook

    held, _ = held_out_for(split, train)
    return hook(held, cfg.eval, cfg.train.early_stopping, seed=seed)


@dataclass
class UpdateResult:
    """What ``run_update`` did (``new_version`` is None when no event was new)."""

    store: str
    old_version: str
    new_version: str | None
    counts: EventCounts
    train_rows: tuple[int, int] = (0, 0)  # training interactions of old, new
    fit_seconds: float = 0.0
    evaluation: Evaluation | None = None
    guard: dict[str, Any] = field(default_factory=dict)
    activated: bool = False
    live: str | None = None
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def run_update(store: BundleStore, events: str, *, eval_config: str | Path | None = None,
               activate: bool = False, force: bool = False, tolerance: float = 0.005,
               all_events: bool = False, device: str = "cpu",
               exclude_keys: Sequence[str] = (),
               log: Callable[[str], None] = lambda _: None) -> UpdateResult:
    """Read new events, refit, write the new version into ``store``; activate if asked.

    Args:
        store: the store whose live version is updated.
        events: the event store (SQLite file or ``postgresql://`` URL) ``crossrec serve``
            writes.
        eval_config: an experiment TOML whose split gives the held-out users; without it
            nothing is evaluated and the refit has no early stopping.
        activate: make the new version live when the guard passes (or without evaluation).
        force: make it live even when the guard fails.
        tolerance: the guard: the new version's validation headline metric may be worse than
            the old one's by at most this much (absolute).
        all_events: read every stored event, not only those after the live version's cursor.
        device: where the refit runs.
        exclude_keys: ids of API keys (``name=`` or digest prefix) whose events are dropped
            before the refit (counted as ``excluded``; the cursor still passes them).
        log: progress lines.
    """
    old_version = store.live
    if old_version is None:
        raise StoreError(f"{store.root}: no live version to update")
    old = store.load(old_version)
    cursor = float(store.versions()[old_version].get("events_cursor", 0.0))
    since = 0.0 if all_events else max(0.0, cursor - CURSOR_OVERLAP)
    read = read_events(events, since)
    newest = max((e.received_at for e in read), default=0.0)
    drop = set(exclude_keys)
    kept = [e for e in read if e.key_id not in drop] if drop else read
    train, counts = merge_events(old.train, kept)
    counts.excluded = len(read) - len(kept)
    counts.read = len(read)
    counts.cursor = max(counts.cursor, cursor, newest)
    if drop:
        log(f"{counts.excluded} events of key(s) {', '.join(sorted(drop))} excluded")
    result = UpdateResult(str(store.root), old_version, None, counts,
                          (len(old.train.interactions), len(train.interactions)), live=old_version)
    log(f"{counts.read} events read ({counts.used} new pairs, {counts.duplicates} duplicates, "
        f"{counts.unknown_items} unknown items, {counts.unknown_domains} unknown domains)")
    if counts.used == 0:
        result.message = "no new interaction: nothing to refit, the live version stays"
        return result
    seed = int(old.config.get("seed", 0))
    cfg, split = held_out_split(eval_config, seed) if eval_config else (None, None)
    validate = validation_hook(cfg, split, train, seed) if eval_config else None
    log(f"refitting {old.config['model']['name']} from scratch on {len(train.interactions):,} "
        "interactions ...")
    new, result.fit_seconds = refit(old, train, device=device, validate=validate)
    new.config["update"] = {"parent": old_version, "events_read": counts.read,
                            "events_used": counts.used, "refit": "from scratch"}
    if eval_config:
        log("evaluating old and new on the same held-out users ...")
        ev = result.evaluation = evaluate_versions(old, new, cfg, split, str(eval_config))
        o, n = ev.headline_pair("valid")
        worse = (o - n) if ev.higher_is_better else (n - o)
        result.guard = {"metric": ev.headline, "part": "valid", "group": ev.group, "old": o,
                        "new": n, "tolerance": tolerance, "passed": bool(worse <= tolerance)}
    metrics = None if result.evaluation is None else {
        p: {m: {"old": v[0], "new": v[1]} for m, v in vals.items()}
        for p, vals in result.evaluation.values.items()}
    result.new_version = store.add(new, parent=old_version, origin="update",
                                   events_cursor=counts.cursor, events_used=counts.used,
                                   excluded_keys=sorted(drop),
                                   fit_seconds=result.fit_seconds, metrics=metrics)
    passed = result.guard.get("passed", True)
    if activate and (passed or force):
        store.activate(result.new_version)
        result.activated, result.live = True, result.new_version
        result.message = f"{result.new_version} is live" + (
            " (forced past the metric guard)" if not passed else "")
    elif activate:
        result.message = (f"not activated: {result.guard['metric']} on validation users "
                          f"{result.guard['new']:.4f} vs {result.guard['old']:.4f} (worse by "
                          f"more than {tolerance}); --force makes it live anyway")
    else:
        result.message = (f"{result.new_version} written, not live (--activate makes it live)")
    return result
