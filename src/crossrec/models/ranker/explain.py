"""Why the ranker placed an item: its largest LightGBM contributions, in words.

The positive contributions of a row, largest first, are turned into a reason a user can read:
"ranked high by ease(all)", "similar title to 'X' in arts", "learned cross-domain text
match", ... Two ways to compute the contributions (averaged over the bagged boosters):

- ``exact=False`` (the default, what serving returns): **path attribution** (Saabas; XGBoost's
  ``approx_contribs``). In each tree, the row's root-to-leaf path is followed and every split
  on it credits its feature with the change of the node's expected value (leaf values averaged
  with the training counts LightGBM keeps, as TreeSHAP does) from parent to child. As with
  SHAP, a row's contributions plus the expected value sum to its score exactly, and the
  expected value is the one ``pred_contrib`` reports. A path's contributions depend only on the
  leaf reached, so they are tabled once per ensemble; a row costs one ``pred_leaf`` traversal
  and a table lookup per tree (about 0.3 ms for 10 rows of 5 boosters, against ~15-20 ms for
  exact TreeSHAP on this project's 10-20-deep trees, which alone cost more than the rest of a
  served request). It is an approximation of SHAP: it credits a split's feature with the whole
  change it makes on the row's path, where SHAP averages over the orders features could enter.
  On the Arts -> Office ranker bundle (200 users x 10 served items, 3 signals each): each
  method's strongest feature is among the other's three on every item, the two share 2.65 of
  their 3 features on average and the same 3 reasons on 80 % of the items, but name the same
  *first* feature on 51 % only (mostly ``ease(all):rank`` first here where SHAP puts
  ``pop:cz``). Ask for ``exact=True`` where the order and weights must be SHAP's.
- ``exact=True``: LightGBM's exact per-row path-dependent TreeSHAP (``pred_contrib``),
  O(trees x leaves x depth^2) per row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from crossrec.models.base import Query

if TYPE_CHECKING:
    from crossrec.models.ranker.model import Ranker


@dataclass
class Signal:
    """One reason: the feature, its contribution to the ranker's score, and a sentence."""

    feature: str
    weight: float
    reason: str


class PathTable:
    """Path attributions of every leaf of one LightGBM booster.

    Attributes:
        offsets: ``int64 [T]`` row of tree ``t``'s leaf 0 in ``table``.
        table: ``float64 [sum of leaves, F + 1]`` per leaf: the contribution of each feature
            along its root-to-leaf path, then the tree's expected value (the row sums to the
            leaf's value).
    """

    def __init__(self, booster: Any) -> None:
        dump = booster.dump_model()
        n_features = booster.num_feature()
        trees = dump["tree_info"]
        self.offsets = np.zeros(len(trees), dtype=np.int64)
        rows: list[np.ndarray] = []
        for t, tree in enumerate(trees):
            self.offsets[t] = len(rows)
            leaves: dict[int, np.ndarray] = {}
            _walk(tree["tree_structure"], np.zeros(n_features + 1), None, leaves)
            rows.extend(leaves[i] for i in range(len(leaves)))
        self.table = np.asarray(rows, dtype=np.float64).reshape(-1, n_features + 1)

    def contributions(self, leaf: np.ndarray) -> np.ndarray:
        """``float64 [R, F + 1]`` of the leaves ``leaf`` (``[R, T]``, LightGBM's ``pred_leaf``)."""
        idx = self.offsets[None, :] + np.asarray(leaf, dtype=np.int64)
        return self.table[idx].sum(axis=1)


def _leaf(node: dict) -> bool:
    return "split_feature" not in node  # a one-leaf tree's root has no leaf_index either


def _expected(node: dict) -> tuple[float, float]:
    """(count-weighted mean of the leaf values under ``node``, their total count); internal
    nodes keep theirs under ``"_expected"``."""
    if _leaf(node):
        return float(node["leaf_value"]), float(node.get("leaf_count", 0))
    lv, lc = _expected(node["left_child"])
    rv, rc = _expected(node["right_child"])
    total = lc + rc
    node["_expected"] = (lv * lc + rv * rc) / total if total > 0 else (lv + rv) / 2
    return node["_expected"], total


def _walk(node: dict, acc: np.ndarray, parent: float | None,
          leaves: dict[int, np.ndarray]) -> None:
    """Fill ``leaves[leaf_index]`` with the path contributions (``acc``: those so far)."""
    if parent is None:  # the root: its expected value is the bias column
        parent = _expected(node)[0]
        acc = acc.copy()
        acc[-1] = parent
        if _leaf(node):
            leaves[int(node.get("leaf_index", 0))] = acc
            return
    for side in ("left_child", "right_child"):
        child = node[side]
        value = float(child["leaf_value"]) if _leaf(child) else child["_expected"]
        nxt = acc.copy()
        nxt[int(node["split_feature"])] += value - parent
        if _leaf(child):
            leaves[int(child["leaf_index"])] = nxt
        else:
            _walk(child, nxt, value, leaves)


def path_tables(ensemble: Any) -> list[PathTable]:
    """The ``PathTable`` of each booster of ``ensemble`` (an ``Ensemble`` or one booster),
    built on first use and kept on the ensemble object (a refit makes a new one)."""
    tables = getattr(ensemble, "_path_tables", None)
    if tables is None:
        tables = [PathTable(b) for b in getattr(ensemble, "boosters", [ensemble])]
        ensemble._path_tables = tables
    return tables


def path_contributions(ensemble: Any, x: np.ndarray) -> np.ndarray:
    """``float64 [R, F + 1]`` path attributions of the rows ``x``, averaged over the boosters
    (the last column: the expected value); each row sums to the ensemble's score."""
    from crossrec.models.ranker.learn import merged_trees

    boosters = getattr(ensemble, "boosters", [ensemble])
    tables = path_tables(ensemble)
    if not hasattr(ensemble, "_merged_trees"):
        ensemble._merged_trees = merged_trees(boosters)
    merged = ensemble._merged_trees
    if merged is not None:
        leaf = np.asarray(merged.predict(x, pred_leaf=True, num_threads=1)).reshape(len(x), -1)
        ends = np.cumsum([len(t.offsets) for t in tables])
        leaves = np.split(leaf, ends[:-1], axis=1)
    else:
        leaves = [np.asarray(b.predict(x, pred_leaf=True, num_threads=1)).reshape(len(x), -1)
                  for b in boosters]
    total = None
    for table, lf in zip(tables, leaves, strict=True):
        c = table.contributions(lf)
        total = c if total is None else total + c
    return total / len(boosters)


def _positions(cands: np.ndarray, items: np.ndarray) -> np.ndarray:
    """``int64 [K]`` the position of each of ``items`` in ``cands`` (distinct), -1 if absent."""
    if len(cands) == 0:
        return np.full(len(items), -1, dtype=np.int64)
    order = np.argsort(cands, kind="stable")
    pos = np.minimum(np.searchsorted(cands[order], items), len(cands) - 1)
    return np.where(cands[order][pos] == items, order[pos], -1).astype(np.int64)


def _title(model: Ranker, item: int) -> str:
    text = model.train_data.item_text[item] or model.train_data.item_ids([item])[0]
    return text if len(text) <= 60 else text[:57] + "..."


TEXT_SOURCES = frozenset({"text_zero_shot", "text_transfer", "hybrid", "distill"})
"""Source models that nominate by title similarity: explained by the closest history title."""


def _reason(model: Ranker, feature: str, item: int, history: np.ndarray) -> str:
    """A sentence for ``feature`` of global item ``item`` given the user's ``history``."""
    train = model.train_data
    head, _, tail = feature.partition(":")
    if head in model.source_names and tail.startswith("link"):
        return _link_reason(model, model.source_names.index(head), item, history)
    if head in model.source_names:
        spec = model.config.candidates[model.source_names.index(head)]
        if spec["name"] not in TEXT_SOURCES or model.features.state.vectors is None:
            return f"ranked high by {head}"
        head, tail = "text", "profile"  # a title-similarity source: name the closest title
    if head == "pop":
        return {"recent": "popular recently"}.get(tail, "popular in its domain")
    if head in ("history", "domain"):
        return "fits how much history you have in each domain"
    vectors = model.features.state.vectors
    if head == "text" and vectors is not None and len(history):
        domain = tail.partition(":")[0]
        pool = history if domain in ("last", "profile", "density") else history[
            train.item_domain[history] == train.info.domain_index(domain)]
        if tail == "last":
            pool = history[-1:]
        if tail == "density":
            return "its title sits among many similar items"
        if len(pool):
            best = pool[int(np.argmax(vectors[pool] @ vectors[item]))]
            where = train.domains[train.item_domain[best]]
            return f"similar title to '{_title(model, int(best))}' in {where}"
    if head == "text_smooth" and vectors is not None:
        st = model.features.state
        near = st.neighbours[item][~np.isnan(st.neighbour_sims[item])]
        if tail == "seen" and len(history):
            own = near[np.isin(near, history)]
            if len(own):
                return f"similar title to '{_title(model, int(own[0]))}', which you have"
        if len(near):
            title = _title(model, int(near[0]))
            return f"people with your history choose items titled like '{title}'"
    if head == "time":
        return "popular around the time of your latest activity"
    if head == "text_map":
        return "learned cross-domain text match with your history in other domains"
    if head == "text_tower":
        return "learned (two-tower) text match with your history in other domains"
    if head == "text2cf":
        return "its title predicts people with your history choose it"
    if head == "meta":
        return _meta_reason(model, tail, item, history)
    return feature


def _link_reason(model: Ranker, j: int, item: int, history: np.ndarray) -> str:
    """The history item with the strongest item-to-item weight to ``item``, named."""
    train = model.train_data
    domain = train.domains[train.item_domain[item]]
    start = train.domain_items(domain).start
    if not len(history):
        return f"ranked high by {model.source_names[j]}"
    links = model.sources[j].item_links(history, domain, np.array([item - start]))[:, 0]
    best = int(history[int(np.argmax(links))])
    where = train.domains[train.item_domain[best]]
    return f"bought with '{_title(model, best)}' in {where}"


def _meta_reason(model: Ranker, tail: str, item: int, history: np.ndarray) -> str:
    """The history item whose category words are closest to ``item``'s, named."""
    train, meta = model.train_data, model.features.state.meta
    if tail == "brand":
        return "a brand you have chosen before"
    domain = tail.partition(":")[0]
    pool = history[train.item_domain[history] == train.info.domain_index(domain)] if len(
        history) and domain in train.domains else history[:0]
    if meta is None or not len(pool):
        return "its categories match your history"
    t = meta.tokens
    a, b = t.indptr[item], t.indptr[item + 1]
    query = np.zeros(t.shape[1], dtype=t.dtype)  # the item's row, dense: one sparse x dense
    query[t.indices[a:b]] = t.data[a:b]
    best = pool[int(np.argmax(t[pool] @ query))]
    return f"same categories as '{_title(model, int(best))}' in {domain}"


def signals(model: Ranker, query: Query, domain: str, items: np.ndarray, n: int, *,
            exact: bool = False) -> list[list[Signal]]:
    """The ``n`` strongest positive signals of each item for one query row.

    Args:
        model: a fitted ranker.
        query: one user (``users`` ``[1]``, optional ``history`` ``[1, L]``).
        domain: the ranked domain.
        items: ``int64 [K]`` local item indices (in ``domain``).
        n: signals kept per item.
        exact: exact TreeSHAP (``pred_contrib``) instead of path attribution (module doc).

    Returns:
        ``K`` lists (empty for an item outside the candidate union).
    """
    return batch_signals(model, [query], domain, [items], n, exact=exact)[0]


def batch_signals(model: Ranker, queries: Sequence[Query], domain: str,
                  items: Sequence[np.ndarray], n: int, *, exact: bool = False
                  ) -> list[list[list[Signal]]]:
    """``signals`` of several one-user queries: one LightGBM pass (``pred_leaf``, or
    ``pred_contrib`` when ``exact``) over the rows of every user instead of one per user.
    A row's contributions do not depend on the other rows: the same floats as one call each.

    Args:
        model: a fitted ranker.
        queries: one-user queries (``users`` ``[1]``, optional ``history`` ``[1, L]``).
        domain: the ranked domain.
        items: per query, ``int64 [K_b]`` local item indices (in ``domain``).
        n: signals kept per item.
        exact: exact TreeSHAP instead of path attribution (module doc).

    Returns:
        Per query, ``K_b`` lists (empty for an item outside the candidate union).
    """
    if len(queries) != len(items):
        raise ValueError(f"{len(queries)} queries for {len(items)} item lists")
    train = model._check_fitted()
    names = model.features.names(train)
    start = train.domain_items(domain).start
    hists = _histories(model, queries)
    xs, positions = [], []
    for query, its in zip(queries, items, strict=True):
        cand_items, x = model.user_rows(query, domain)
        rows = _positions(np.asarray(cand_items), np.asarray(its, dtype=np.int64).reshape(-1))
        positions.append(rows)
        xs.append(x[rows[rows >= 0]])
    x = np.concatenate(xs) if xs else np.zeros((0, len(names)), dtype=np.float32)
    if not len(x):
        contrib = np.zeros((0, len(names)))
    elif exact:
        contrib = model.booster.predict(x, pred_contrib=True)[:, :-1]
    else:
        contrib = path_contributions(model.booster, x)[:, :-1]
    # per row, the n largest contributions (stable: ties keep the feature order)
    order = np.argsort(-contrib, axis=1, kind="stable")[:, :n]
    top = np.take_along_axis(contrib, order, axis=1)
    out: list[list[list[Signal]]] = []
    j = 0
    for its, rows, hist in zip(items, positions, hists, strict=True):
        mine: list[list[Signal]] = []
        for item, r in zip(np.asarray(its).reshape(-1).tolist(), rows.tolist(), strict=True):
            if r < 0:
                mine.append([])
                continue
            mine.append([Signal(names[f], w, _reason(model, names[f], item + start, hist))
                         for f, w in zip(order[j].tolist(), top[j].tolist(), strict=True)
                         if w > 0])
            j += 1
        out.append(mine)
    return out


def _histories(model: Ranker, queries: Sequence[Query]) -> list[np.ndarray]:
    """Per one-user query, ``int64 [L]`` its most recent global items (``max_history``), as
    ``query_histories`` gives them; the training users of the batch in one call."""
    from crossrec.models.baselines.text_zero_shot import query_histories

    train, max_len = model.train_data, model.config.max_history
    out: list[np.ndarray | None] = [None] * len(queries)
    plain = [k for k, q in enumerate(queries) if q.history is None]
    if plain:
        users = torch.cat([queries[k].users.reshape(-1) for k in plain])
        for k, h in zip(plain, query_histories(train, Query(users), max_len), strict=True):
            out[k] = h[h >= 0]
    for k, q in enumerate(queries):
        if out[k] is None:
            h = query_histories(train, q, max_len)[0]
            out[k] = h[h >= 0]
    return out  # type: ignore[return-value]
