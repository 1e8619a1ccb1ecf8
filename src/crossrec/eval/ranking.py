"""Batched evaluation: full ranking (default), sampled ranking (labelled), rating error.

Full ranking scores every item of the domain for a batch of users, masks what the user is known
to have (training items, and the valid items when testing), takes the top ``max(ks)`` (``topk``:
ties to the lower index, as in serving) and looks the returned items up in the truth — all on
tensors, one batch at a time, so memory is bounded by ``batch_size x n_items(domain)``.

Masking happens in place on the tensor ``Recommender.score`` returns (it is a fresh tensor for
every model that computes its scores); a view of another tensor, or a tensor that shares storage
with the model's parameters, is copied first so the model is never changed.

An item that is both known (e.g. in training) and in the truth of the part being evaluated
stays rankable: the truth decides (repeat consumption). With deduplicated data the two sets are
disjoint and this never matters.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from torch import Tensor

from crossrec.data.split import Split
from crossrec.errors import DataError
from crossrec.eval import metrics as M
from crossrec.eval.result import EvalResult, summarize
from crossrec.eval.shard import check_shard, in_shard, mix64, stream
from crossrec.eval.topk import top_indices
from crossrec.models.base import Query, Recommender

SAMPLE_BLOCK = 1024
"""Cases per block of sampled scoring (bounds memory). The draws themselves are keyed by
``(seed, user, case)``, so they depend on neither blocks, ``batch_size``, ``users`` nor
``shard``."""


class _CSRRows:
    """Nonzeros of a CSR matrix ``[R, N]`` as flat offsets ``row * N + col`` (torch, sorted),
    so that a batch of consecutive rows is one slice of a precomputed tensor."""

    def __init__(self, csr: sp.csr_matrix, device: torch.device) -> None:
        self.indptr = csr.indptr.astype(np.int64)
        self.n_cols = csr.shape[1]
        row = np.repeat(np.arange(csr.shape[0], dtype=np.int64), np.diff(self.indptr))
        flat = row * self.n_cols + csr.indices.astype(np.int64)
        self.flat = torch.as_tensor(flat, device=device)

    def batch(self, rows: slice) -> Tensor:
        """Offsets into the flattened ``[len(rows), N]`` block of ``rows`` (``int64[nnz]``)."""
        a, b = self.indptr[rows.start], self.indptr[rows.stop]
        return self.flat[a:b] - rows.start * self.n_cols


def _binary_csr(users: np.ndarray, items: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    m = sp.csr_matrix((np.ones(len(users), np.float32), (users, items)), shape=shape)
    m.sum_duplicates()
    m.data[:] = 1.0
    m.sort_indices()
    return m


def _known(split: Split, domain: str, part: str, truth: sp.csr_matrix) -> sp.csr_matrix:
    """Items each user is known to have at evaluation time, minus the truth: ``[U, n_dom]``."""
    known = split.train.user_items(domain).astype(bool).astype(np.float32)
    if part == "test":
        known = known + _truth_csr(split, domain, "valid", known.shape)
    known = known - known.multiply(truth)  # the truth stays rankable
    known.data = (known.data > 0).astype(np.float32)
    known.eliminate_zeros()
    known.sort_indices()
    return known.tocsr()


def _truth_csr(split: Split, domain: str, part: str, shape: tuple[int, int]) -> sp.csr_matrix:
    frame = split.truth(part, domain)
    offset = split.train.domain_items(domain).start
    return _binary_csr(frame["user"].to_numpy(np.int64),
                       frame["item"].to_numpy(np.int64) - offset, shape)


def _writable(scores: Tensor, model: Recommender) -> Tensor:
    """``scores`` itself when it is safe to mask in place, else a copy."""
    if scores._base is not None or not scores.is_contiguous():
        return scores.clone()
    if isinstance(model, torch.nn.Module):
        ptr = scores.untyped_storage().data_ptr()
        for t in (*model.parameters(), *model.buffers()):
            if t.untyped_storage().data_ptr() == ptr:
                return scores.clone()
    return scores


def _batches(n: int, size: int, progress: bool, label: str) -> Iterator[slice]:
    starts = range(0, n, size)
    if progress:
        from rich.progress import track

        starts = track(starts, description=label, total=len(starts))
    for s in starts:
        yield slice(s, min(n, s + size))


def _model_device(model: Recommender) -> torch.device:
    """Where the model wants its query: the device of its parameters (CPU if it has none)."""
    if isinstance(model, torch.nn.Module):
        for t in (*model.parameters(), *model.buffers()):
            return t.device
    return torch.device("cpu")


def _score(model: Recommender, users: Tensor, domain: str, n_dom: int, device: torch.device
           ) -> Tensor:
    """``model.score`` for ``users`` ``[B]`` -> ``[B, n_dom]`` on ``device``, safe to mask."""
    with torch.no_grad():
        scores = model.score(Query(users=users.to(_model_device(model))), domain)
    if scores.shape != (len(users), n_dom):
        raise ValueError(f"{type(model).__name__}.score returned shape {tuple(scores.shape)}; "
                         f"expected [{len(users)}, {n_dom}] for domain {domain!r}")
    if not scores.is_floating_point():
        scores = scores.float()  # e.g. integer counts: masking needs -inf
    return _writable(scores.to(device), model)


def _ranked(model: Recommender, users: Tensor, domain: str, n_dom: int, device: torch.device,
            seen: Tensor, length: int) -> tuple[Tensor, Tensor]:
    """Scores ``[B, n_dom]`` with flat offsets ``seen`` at -inf; their top ``[B, length]``."""
    scores = _score(model, users, domain, n_dom, device)
    scores.view(-1).index_fill_(0, seen, -torch.inf)
    return scores, top_indices(scores, length)


def ranked_items(model: Recommender, split: Split, users: np.ndarray, k: int = 10, *,
                 domain: str | None = None, part: str = "test") -> np.ndarray:
    """The local items ``[U, min(k, n)]`` that ``evaluate(..., part=part)`` ranks first for
    ``users`` (known items masked, the same top-k): what the metrics are computed on."""
    domain, _, _ = _check_args(split, domain, part, [k], [], 1)
    n_dom = split.train.info.n_domain_items(domain)
    truth = _truth_csr(split, domain, part, (split.train.n_users, n_dom))
    dev = _model_device(model)
    seen = _CSRRows(_known(split, domain, part, truth)[users], dev).batch(slice(0, len(users)))
    u = torch.as_tensor(users, dtype=torch.int64, device=dev)
    return _ranked(model, u, domain, n_dom, dev, seen, min(k, n_dom))[1].cpu().numpy()


def _check_args(split: Split, domain: str | None, part: str, ks: Sequence[int],
                metrics: Sequence[str], batch_size: int) -> tuple[str, list[int], list[str]]:
    domain = domain or split.target
    split.train.info.domain_index(domain)
    if part not in ("valid", "test"):
        raise ValueError(f"part must be 'valid' or 'test', not {part!r}")
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1:
        raise ValueError(f"ks must be positive integers, got {ks}")
    unknown = [m for m in metrics if m not in M.FULL_METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; known: {', '.join(M.FULL_METRICS)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return domain, ks, list(dict.fromkeys(metrics))


def evaluate(
    model: Recommender,
    split: Split,
    *,
    domain: str | None = None,
    part: str = "test",
    ks: Sequence[int] = (10, 20),
    metrics: Sequence[str] = ("recall", "ndcg", "hr", "mrr", "precision"),
    batch_size: int = 1024,
    n_negatives: int | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    users: Sequence[int] | np.ndarray | None = None,
    shard: tuple[int, int] | None = None,
    progress: bool = False,
) -> EvalResult:
    """Rank the items of ``domain`` for the users of ``split.truth(part, domain)``.

    Args:
        model: a fitted recommender.
        split: the split whose training items are masked and whose truth is looked up.
        domain: the domain to rank (default: ``split.target``).
        part: ``"valid"`` or ``"test"``; at test time the valid items are masked too.
        ks: cut-offs.
        metrics: among ``recall, precision, hr, ndcg, mrr`` (at each k) and ``auc`` (ask for
            it only when needed: it locates every item among the user's positives, several
            times the cost of the top-k).
        batch_size: users per ``score`` call (full) or cases per call (sampled); peak memory is
            about ``batch_size x n_items(domain)`` scores.
        n_negatives: None (default) = full ranking. N = sampled protocol: each truth row is
            ranked against N negatives drawn uniformly (with replacement) from the domain
            items the user has not interacted with; ties count against the positive. Labelled
            ``"sampled-N"`` in the result.
        seed: seed of the negative draws (sampled protocol only).
        device: where the masking and top-k run.
        users: evaluate only these users (those without truth are skipped).
        shard: ``(i, n)``: evaluate only the users of shard ``i`` of ``n`` (a fixed partition
            by user index, see ``crossrec.eval.shard``); ``merge_results`` of the ``n`` parts
            equals the unsharded result exactly. A shard may be empty.
        progress: show a progress bar.

    Full ranking lists the top ``max(ks)`` items (fewer when the domain is smaller); equal
    scores are ordered by item index, lower first, also at the cut-off. A model whose scores
    contain NaN is an error.

    Returns:
        EvalResult with one row per user (per case when sampled).

    Raises:
        DataError: no truth for ``part`` in ``domain`` (for the users asked for).
    """
    domain, ks, metrics = _check_args(split, domain, part, ks, metrics, batch_size)
    train = split.train
    n_dom = train.info.n_domain_items(domain)
    dev = torch.device(device)
    truth = _truth_csr(split, domain, part, (train.n_users, n_dom))
    known = _known(split, domain, part, truth)
    params = {"ks": ks, "metrics": metrics, "batch_size": batch_size, "n_items": n_dom}
    if shard is not None:
        params["shard"] = list(check_shard(shard))
    if n_negatives is not None:
        return _evaluate_sampled(model, split, domain, part, truth, known, ks, metrics,
                                 int(n_negatives), seed, batch_size, dev, users, shard,
                                 progress,
                                 {**params, "n_negatives": int(n_negatives), "seed": seed})
    eval_users = np.flatnonzero(np.diff(truth.indptr))  # users with truth, sorted
    if users is not None:
        eval_users = np.intersect1d(eval_users, np.asarray(users, dtype=np.int64))
    if len(eval_users) == 0:
        raise DataError(f"no {part} truth in domain {domain!r}"
                        + (" for the users asked for" if users is not None else ""))
    eval_users = eval_users[in_shard(eval_users, shard)]
    known_rows, truth_rows = _CSRRows(known[eval_users], dev), _CSRRows(truth[eval_users], dev)
    n_truth = np.diff(truth.indptr)[eval_users].astype(np.int64)
    length = min(ks[-1], n_dom)
    # one reusable [B, n_dom] bool block: set the truth, gather at the top-k, clear again
    is_truth = torch.zeros(min(batch_size, len(eval_users)) * n_dom, dtype=torch.bool,
                           device=dev)
    columns: list[dict[str, np.ndarray]] = [  # empty columns for an empty shard
        {**M.rank_metrics(torch.zeros((0, length), dtype=torch.bool), n_truth[:0], ks, metrics),
         **({"auc": np.zeros(0)} if "auc" in metrics else {})}]
    for sl in _batches(len(eval_users), batch_size, progress, f"ranking {domain}"):
        u = torch.as_tensor(eval_users[sl], dtype=torch.int64, device=dev)
        seen, held = known_rows.batch(sl), truth_rows.batch(sl)
        scores, top = _ranked(model, u, domain, n_dom, dev, seen, length)
        block = is_truth[: len(u) * n_dom]
        block.index_fill_(0, held, True)
        hits = torch.gather(block.view(len(u), n_dom), 1, top).cpu()
        block.index_fill_(0, held, False)
        cols = M.rank_metrics(hits, n_truth[sl], ks, metrics)
        if "auc" in metrics:
            cols["auc"] = _batch_auc(scores, seen, held)
        columns.append(cols)
        del scores
    frame = pd.DataFrame({
        "user": eval_users.astype(np.int64),
        "group": split.user_groups(eval_users, domain),
        "n_truth": n_truth,
        **{c: np.concatenate([part[c] for part in columns]) for c in columns[0]},
    })
    return EvalResult("full", domain, part, frame, summarize(frame), params)


def _batch_auc(scores: Tensor, seen: Tensor, held: Tensor) -> np.ndarray:
    """AUC per row of a masked ``[B, N]`` score block; ``seen``/``held`` are flat offsets."""
    excl = torch.zeros(scores.numel(), dtype=torch.bool, device=scores.device)
    pos = torch.zeros_like(excl)
    excl.index_fill_(0, seen, True)
    pos.index_fill_(0, held, True)
    return M.auc(scores, pos.view(scores.shape), excl.view(scores.shape)).cpu().numpy()


def _draw_negatives(users: np.ndarray, case_keys: np.ndarray, n: int, n_dom: int,
                    seen_keys: np.ndarray, seen: sp.csr_matrix) -> np.ndarray:
    """``int64[C, n]`` items drawn uniformly from those each user has not seen.

    Draw ``j`` of case ``c`` is value ``j`` of a splitmix64 stream keyed by ``case_keys[c]``
    (redraws of seen items: keyed by the attempt too), modulo ``n_dom``: it depends on the
    case alone, never on which other cases are drawn with it.
    """
    cols = np.arange(n, dtype=np.int64)[None, :]
    neg = (stream(case_keys[:, None], cols) % np.uint64(n_dom)).astype(np.int64)
    if len(seen_keys) == 0:
        return neg
    base = users.astype(np.int64)[:, None] * n_dom
    for attempt in range(1, 51):
        keys = base + neg
        pos = np.minimum(np.searchsorted(seen_keys, keys), len(seen_keys) - 1)
        bad = seen_keys[pos] == keys
        if not bad.any():
            return neg
        r, c = np.nonzero(bad)
        neg[r, c] = (stream(mix64(case_keys[r], attempt), c) % np.uint64(n_dom)
                     ).astype(np.int64)
    for r in np.flatnonzero(bad.any(1)):  # users who have seen most items: draw from the rest
        allowed = np.setdiff1d(np.arange(n_dom), seen.indices[seen.indptr[users[r]]:
                                                              seen.indptr[users[r] + 1]])
        if len(allowed) == 0:
            raise DataError(f"user {users[r]} has interacted with every item of the domain; "
                            "no negatives can be sampled")
        c = np.flatnonzero(bad[r])
        neg[r, c] = allowed[(stream(mix64(case_keys[r], 51), c) % np.uint64(len(allowed))
                             ).astype(np.int64)]
    return neg


def _evaluate_sampled(model: Recommender, split: Split, domain: str, part: str,
                      truth: sp.csr_matrix, known: sp.csr_matrix, ks: list[int],
                      metrics: list[str], n: int, seed: int, batch_size: int,
                      dev: torch.device, users: Sequence[int] | np.ndarray | None,
                      shard: tuple[int, int] | None, progress: bool, params: dict
                      ) -> EvalResult:
    if n < 1:
        raise ValueError(f"n_negatives must be >= 1 (or None for full ranking), got {n}")
    frame = split.truth(part, domain)
    offset = split.train.domain_items(domain).start
    case_users = frame["user"].to_numpy(np.int64)
    case_items = frame["item"].to_numpy(np.int64) - offset
    # a case is (user, its k-th truth row): the key of its negative draws
    case_keys = mix64(seed, case_users, frame.groupby("user").cumcount().to_numpy(np.int64))
    keep = np.ones(len(case_users), bool)
    if users is not None:
        keep &= np.isin(case_users, np.asarray(users, dtype=np.int64))
    if not keep.any():
        raise DataError(f"no {part} truth in domain {domain!r}"
                        + (" for the users asked for" if users is not None else ""))
    keep &= in_shard(case_users, shard)
    position = np.flatnonzero(keep)  # index of the rows: order of the cases in the truth
    case_users, case_items, case_keys = case_users[keep], case_items[keep], case_keys[keep]
    n_dom = truth.shape[1]
    seen = (known + truth).tocsr()
    seen.sort_indices()
    seen_keys = (np.repeat(np.arange(seen.shape[0], dtype=np.int64), np.diff(seen.indptr))
                 * n_dom + seen.indices)
    ranks = [torch.zeros(0, dtype=torch.int64)]
    for block in _batches(len(case_users), SAMPLE_BLOCK, progress, f"sampled {domain}"):
        bu, bi = case_users[block], case_items[block]
        neg = _draw_negatives(bu, case_keys[block], n, n_dom, seen_keys, seen)
        cand = torch.as_tensor(np.concatenate([bi[:, None], neg], axis=1), device=dev)
        for sl in _batches(len(bu), batch_size, False, ""):
            uniq, inv = np.unique(bu[sl], return_inverse=True)
            scores = _score(model, torch.as_tensor(uniq, device=dev), domain, n_dom, dev)
            c = scores[torch.as_tensor(inv, device=dev)[:, None], cand[sl]]  # [b, n + 1]
            if torch.isnan(c).any():
                raise ValueError("the model's scores contain NaN")
            ranks.append((1 + (c[:, 1:] >= c[:, :1]).sum(1)).cpu())
    rank = torch.cat(ranks).numpy()
    per_case = pd.DataFrame({
        "user": case_users,
        "item": case_items + offset,
        "group": split.user_groups(case_users, domain),
        "n_truth": np.ones(len(case_users), np.int64),
        **M.sampled_metrics(rank, n + 1, ks, metrics),
    }, index=position if shard is not None else None)
    return EvalResult(f"sampled-{n}", domain, part, per_case, summarize(per_case), params)


def evaluate_ratings(
    model: Recommender, split: Split, *, domain: str | None = None, part: str = "test",
    batch_size: int = 1024,
) -> EvalResult:
    """MAE / RMSE of ``model.score`` at the truth items against their explicit ratings.

    Per-case rows (one per truth rating) with columns ``user, item, group, n_truth, rating,
    pred, mae`` (absolute error) and ``mse`` (squared error); the summary has ``mae`` and
    ``rmse`` (square root of the mean squared error over all ratings, the PTUPCDR figure).

    Raises:
        DataError: the truth has no explicit ratings (all NaN).
    """
    domain = domain or split.target
    frame = split.truth(part, domain)
    rating = frame["rating"].to_numpy(np.float64)
    has = ~np.isnan(rating)
    if not has.any():
        raise DataError(f"the {part} truth of domain {domain!r} has no explicit ratings "
                        "(the 'rating' column is all NaN); use evaluate() for ranking metrics")
    u = frame["user"].to_numpy(np.int64)[has]
    item = frame["item"].to_numpy(np.int64)[has]
    local = item - split.train.domain_items(domain).start
    n_dom = split.train.info.n_domain_items(domain)
    preds = []
    for sl in _batches(len(u), batch_size, False, ""):
        uniq, inv = np.unique(u[sl], return_inverse=True)
        scores = _score(model, torch.as_tensor(uniq), domain, n_dom, torch.device("cpu"))
        preds.append(scores[torch.as_tensor(inv), torch.as_tensor(local[sl])].double())
    pred = torch.cat(preds).numpy()
    err = pred - rating[has]
    per_case = pd.DataFrame({
        "user": u, "item": item, "group": split.user_groups(u, domain),
        "n_truth": np.ones(len(u), np.int64), "rating": rating[has], "pred": pred,
        "mae": np.abs(err), "mse": err**2,
    })
    return EvalResult("ratings", domain, part, per_case, summarize(per_case),
                      {"batch_size": batch_size})
