"""Seeded, reproducible splits: cold-start users, cold-start items, a new domain, leave-one-out,
temporal, predefined.

Every split keeps the full id spaces; only the training interactions shrink. The truth frames
(``valid``/``test``) have the interaction columns (``user, item, domain, rating, timestamp``) with
global item indices. A user in the truth is *cold* when they have no training interaction in the
target domain, *warm* otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from crossrec.data.dataset import MultiDomainDataset
from crossrec.errors import DataError

TRUTH_COLUMNS = ["user", "item", "domain", "rating", "timestamp"]


@dataclass(frozen=True, eq=False)
class Split:
    """Training data plus held-out truth for one target domain."""

    train: MultiDomainDataset
    valid: pd.DataFrame
    test: pd.DataFrame
    target: str
    name: str
    params: dict = field(default_factory=dict)

    def truth(self, part: str = "test", domain: str | None = None) -> pd.DataFrame:
        """Held-out interactions of ``part`` ("valid" / "test") in ``domain`` (default: target)."""
        if part not in ("valid", "test"):
            raise ValueError(f"part must be 'valid' or 'test', not {part!r}")
        frame = self.valid if part == "valid" else self.test
        d = self.train.info.domain_index(domain or self.target)
        return frame[frame["domain"].to_numpy() == d]

    def user_groups(self, users: np.ndarray, domain: str | None = None) -> np.ndarray:
        """``"cold"`` / ``"warm"`` per user: cold = no training interaction in ``domain``."""
        known = self.train.domain_users(domain or self.target)
        return np.where(np.isin(users, known), "warm", "cold").astype(object)

    def describe(self) -> dict:
        out = {"name": self.name, "target": self.target, **self.params,
               "train_interactions": len(self.train.interactions)}
        for part in ("valid", "test"):
            t = self.truth(part)
            users = np.unique(t["user"].to_numpy())
            groups = self.user_groups(users)
            out[f"{part}_users"] = len(users)
            out[f"{part}_cold_users"] = int((groups == "cold").sum())
            out[f"{part}_interactions"] = len(t)
        return out


def _as_tuple(x: str | Sequence[str]) -> tuple[str, ...]:
    return (x,) if isinstance(x, str) else tuple(x)


def _truth(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[TRUTH_COLUMNS].reset_index(drop=True)


def _held_out(
    dataset: MultiDomainDataset, is_valid: np.ndarray, is_test: np.ndarray, *, target: str,
    name: str, params: dict, drop: np.ndarray | None = None,
) -> Split:
    """The split that holds out the rows ``is_valid`` / ``is_test`` (bool ``[n_interactions]``)
    of ``dataset.interactions`` and trains on the rest (less ``drop``, when given)."""
    inter = dataset.interactions
    held = is_valid | is_test if drop is None else is_valid | is_test | drop
    return Split(
        train=dataset.with_interactions(inter[~held]),
        valid=_truth(inter[is_valid]),
        test=_truth(inter[is_test]),
        target=target,
        name=name,
        params=params,
    )


def cold_start_users(
    dataset: MultiDomainDataset,
    source: str | Sequence[str],
    target: str,
    ratio: float = 0.2,
    *,
    valid_share: float = 0.5,
    seed: int = 0,
) -> Split:
    """The EMCDR / PTUPCDR / CDRIB protocol.

    Among users with interactions in the target and in a source domain, a fraction ``ratio``
    become cold-start users: all their target interactions leave training and become the truth
    (``valid_share`` of these users for validation, the rest for test); their source history
    stays in training.
    """
    if not 0.0 < ratio < 1.0:
        raise DataError(f"cold_start_users: ratio must be in (0, 1), got {ratio}")
    sources = _as_tuple(source)
    for d in (*sources, target):
        dataset.info.domain_index(d)
    if target in sources:
        raise DataError(f"cold_start_users: target {target!r} is also a source")
    overlap = np.unique(np.concatenate([dataset.overlap_users(s, target) for s in sources]))
    if len(overlap) < 2:
        raise DataError(
            f"cold_start_users: domains {', '.join(sources)} and {target!r} share "
            f"{len(overlap)} users; a cold-start split needs overlapping users"
        )
    rng = np.random.default_rng(seed)
    cold = rng.permutation(overlap)[: max(2, int(round(ratio * len(overlap))))]
    n_valid = max(1, int(round(valid_share * len(cold))))
    valid_users, test_users = np.sort(cold[:n_valid]), np.sort(cold[n_valid:])
    inter = dataset.interactions
    t = dataset.info.domain_index(target)
    in_target = inter["domain"].to_numpy() == t
    role = np.zeros(dataset.n_users, dtype=np.int8)  # 1 = valid, 2 = test (a lookup, no sort)
    role[valid_users], role[test_users] = 1, 2
    role_of = role[inter["user"].to_numpy()]
    is_valid = in_target & (role_of == 1)
    is_test = in_target & (role_of == 2)
    params = {"sources": list(sources), "ratio": ratio, "valid_share": valid_share, "seed": seed,
              "overlap_users": len(overlap), "cold_users": len(cold)}
    return _held_out(dataset, is_valid, is_test, target=target,
                     name=f"cold_start_users(ratio={ratio})", params=params)


def leave_one_out(dataset: MultiDomainDataset, domain: str, *, min_interactions: int = 3) -> Split:
    """Per user of ``domain``: the last interaction is test, the one before is valid.

    Order is by timestamp, ties by row order. Users with fewer than ``min_interactions`` in the
    domain stay entirely in training.
    """
    d = dataset.info.domain_index(domain)
    inter = dataset.interactions
    dom = inter[inter["domain"].to_numpy() == d]
    dom = dom.assign(_row=np.arange(len(dom))).sort_values(["user", "timestamp", "_row"])
    size = dom.groupby("user")["item"].transform("size").to_numpy()
    rank_from_end = dom.groupby("user").cumcount(ascending=False).to_numpy()
    eligible = size >= min_interactions
    test_idx = dom.index[eligible & (rank_from_end == 0)]
    valid_idx = dom.index[eligible & (rank_from_end == 1)]
    held = inter.index.isin(test_idx.union(valid_idx))
    return Split(
        train=dataset.with_interactions(inter[~held]),
        valid=_truth(inter.loc[valid_idx]),
        test=_truth(inter.loc[test_idx]),
        target=domain,
        name="leave_one_out",
        params={"min_interactions": min_interactions},
    )


def temporal(
    dataset: MultiDomainDataset, domain: str, *, valid_frac: float = 0.1, test_frac: float = 0.1
) -> Split:
    """Global time cut in ``domain``: the latest ``test_frac`` of its interactions are test,
    the ``valid_frac`` before them valid. Other domains keep only interactions before the valid
    cut, so no future leaks in through a source domain."""
    if not (0 < valid_frac < 1 and 0 < test_frac < 1 and valid_frac + test_frac < 1):
        raise DataError("temporal: valid_frac and test_frac must be in (0, 1) with sum < 1")
    d = dataset.info.domain_index(domain)
    inter = dataset.interactions
    ts = inter["timestamp"].to_numpy()
    in_dom = inter["domain"].to_numpy() == d
    if np.all(ts[in_dom] == ts[in_dom][0]):
        raise DataError(f"temporal: domain {domain!r} has no timestamps (all equal)")
    t_valid, t_test = np.quantile(ts[in_dom], [1 - valid_frac - test_frac, 1 - test_frac])
    is_test = in_dom & (ts > t_test)
    is_valid = in_dom & (ts > t_valid) & ~is_test
    future = ~in_dom & (ts > t_valid)
    return _held_out(dataset, is_valid, is_test, target=domain, name="temporal", drop=future,
                     params={"valid_frac": valid_frac, "test_frac": test_frac,
                             "valid_cut": int(t_valid), "test_cut": int(t_test)})


def predefined(dataset: MultiDomainDataset, target: str) -> Split:
    """The split the source ships with (the ``part`` column: train / valid / test).

    Truth frames keep every domain; evaluation picks the rows of the domain it ranks.
    """
    dataset.info.domain_index(target)
    inter = dataset.interactions
    if "part" not in inter.columns:
        raise DataError(
            f"dataset {dataset.name!r} has no predefined split (no 'part' column); "
            "give a split file when preparing it, or use another split"
        )
    part = inter["part"].astype(str).to_numpy()
    train = inter[part == "train"].drop(columns="part")
    return Split(
        train=dataset.with_interactions(train),
        valid=_truth(inter[part == "valid"]),
        test=_truth(inter[part == "test"]),
        target=target,
        name="predefined",
        params={},
    )


def cold_start_items(
    dataset: MultiDomainDataset,
    domain: str,
    ratio: float = 0.2,
    *,
    valid_share: float = 0.5,
    seed: int = 0,
) -> Split:
    """Cold-start items: a share ``ratio`` of the domain's items leave training entirely.

    Among the items of ``domain`` with at least one interaction, ``ratio`` are drawn; every
    interaction with them leaves training. ``valid_share`` of the drawn items give the
    validation truth (their interactions), the others the test truth, so model choices are
    made on other unseen items than the ones tested. Evaluation ranks them among *all* items of
    the domain; no model has seen any interaction with a truth item.
    """
    if not 0.0 < ratio < 1.0:
        raise DataError(f"cold_start_items: ratio must be in (0, 1), got {ratio}")
    if not 0.0 < valid_share < 1.0:
        raise DataError(f"cold_start_items: valid_share must be in (0, 1), got {valid_share}")
    d = dataset.info.domain_index(domain)
    inter = dataset.interactions
    items = inter["item"].to_numpy()
    active = np.unique(items[inter["domain"].to_numpy() == d])
    if len(active) < 2:
        raise DataError(f"cold_start_items: domain {domain!r} has {len(active)} items with "
                        "interactions; at least 2 are needed")
    rng = np.random.default_rng(seed)
    held = rng.permutation(active)[: max(2, int(round(ratio * len(active))))]
    n_valid = min(len(held) - 1, max(1, int(round(valid_share * len(held)))))
    valid_items, test_items = np.sort(held[:n_valid]), np.sort(held[n_valid:])
    is_valid, is_test = np.isin(items, valid_items), np.isin(items, test_items)
    params = {"ratio": ratio, "valid_share": valid_share, "seed": seed,
              "active_items": len(active), "held_out_items": len(held),
              "valid_items": len(valid_items), "test_items": len(test_items)}
    return _held_out(dataset, is_valid, is_test, target=domain,
                     name=f"cold_start_items(ratio={ratio})", params=params)


def new_domain(
    dataset: MultiDomainDataset,
    target: str,
    source: str | Sequence[str] | None = None,
    *,
    valid_share: float = 0.2,
    seed: int = 0,
) -> Split:
    """A brand-new target domain: training holds no interaction of ``target`` at all.

    Models learn from the source domains only (default: every other domain) and rank the
    target's items for users from their source history. The truth is every target interaction
    of the users who also have a source interaction: ``valid_share`` of these users (drawn
    with ``seed``) validate, the others test. Users with target interactions but no source
    history cannot be scored from anything and are left out of both (counted in ``params``).
    """
    if not 0.0 < valid_share < 1.0:
        raise DataError(f"new_domain: valid_share must be in (0, 1), got {valid_share}")
    sources = (tuple(d for d in dataset.domains if d != target) if source is None
               else _as_tuple(source))
    for d in (*sources, target):
        dataset.info.domain_index(d)
    if target in sources or not sources:
        raise DataError(f"new_domain: give source domains other than the target {target!r}")
    overlap = np.unique(np.concatenate([dataset.overlap_users(s, target) for s in sources]))
    if len(overlap) < 2:
        raise DataError(f"new_domain: {len(overlap)} users have both a source history and "
                        f"{target!r} interactions; at least 2 are needed")
    rng = np.random.default_rng(seed)
    drawn = rng.permutation(overlap)
    n_valid = min(len(drawn) - 1, max(1, int(round(valid_share * len(drawn)))))
    valid_users, test_users = np.sort(drawn[:n_valid]), np.sort(drawn[n_valid:])
    inter = dataset.interactions
    in_target = inter["domain"].to_numpy() == dataset.info.domain_index(target)
    users = inter["user"].to_numpy()
    codes = [dataset.info.domain_index(s) for s in sources]
    keep = np.isin(inter["domain"].to_numpy(), codes)  # sources only: the target is new
    params = {"sources": list(sources), "valid_share": valid_share, "seed": seed,
              "target_users": len(dataset.domain_users(target)), "scored_users": len(overlap),
              "valid_users": len(valid_users), "test_users": len(test_users)}
    return Split(
        train=dataset.with_interactions(inter[keep]),
        valid=_truth(inter[in_target & np.isin(users, valid_users)]),
        test=_truth(inter[in_target & np.isin(users, test_users)]),
        target=target,
        name="new_domain",
        params=params,
    )


def few_shot(split: Split, n_shots: int, shot_pool: int | None = None) -> Split:
    """Few-shot target users: each held-out user of the target keeps ``n_shots`` of their
    target interactions (the earliest: timestamp, then row order) in training.

    The same users and the same truth at every ``n_shots <= shot_pool`` (default
    ``shot_pool = n_shots``), so a curve over ``n`` compares like with like: only users with
    more than ``shot_pool`` target interactions in ``valid``/``test`` are kept there; of each,
    the first ``n_shots`` rows move to training, the rows up to ``shot_pool`` are dropped and
    the rest stay the truth. Users with fewer rows leave the truth (and stay out of
    training). ``n_shots = shot_pool = 0`` keeps ``split`` as it is, less no user.
    Applies to splits whose truth users are cold in the target (``cold_start_users``,
    CDRIB's ``predefined``); the moved users are then *warm* (``Split.user_groups``).
    """
    pool = n_shots if shot_pool is None else shot_pool
    if not 0 <= n_shots <= pool:
        raise DataError(f"few_shot: need 0 <= n_shots <= shot_pool, got n_shots={n_shots}, "
                        f"shot_pool={pool}")
    t = split.train.info.domain_index(split.target)
    warm = split.train.domain_users(split.target)
    moved, parts, kept = [], {}, {}
    for part in ("valid", "test"):
        frame = split.valid if part == "valid" else split.test
        in_t = frame["domain"].to_numpy() == t
        dom = frame[in_t].assign(_row=np.arange(int(in_t.sum())))
        dom = dom.sort_values(["user", "timestamp", "_row"], kind="mergesort")
        if np.isin(dom["user"].to_numpy(), warm).any():
            raise DataError(f"few_shot: split {split.name!r} has {part} users with target "
                            "training interactions; few-shot needs cold truth users")
        rank = dom.groupby("user").cumcount().to_numpy()
        size = dom.groupby("user")["item"].transform("size").to_numpy()
        eligible = size > pool
        moved.append(dom[eligible & (rank < n_shots)])
        truth = dom[eligible & (rank >= pool)].sort_values("_row", kind="mergesort")
        parts[part] = _truth(pd.concat([truth, frame[~in_t]]))  # other domains as they were
        kept[part] = int(dom.loc[eligible, "user"].nunique())
    add = pd.concat(moved)[TRUTH_COLUMNS]
    inter = split.train.interactions
    train = pd.concat([inter, add.astype({c: inter[c].dtype for c in TRUTH_COLUMNS})],
                      ignore_index=True)
    params = {**split.params, "n_shots": n_shots, "shot_pool": pool,
              "few_shot_valid_users": kept["valid"], "few_shot_test_users": kept["test"]}
    return Split(train=split.train.with_interactions(train), valid=parts["valid"],
                 test=parts["test"], target=split.target,
                 name=f"{split.name}+few_shot(n={n_shots}, pool={pool})", params=params)
