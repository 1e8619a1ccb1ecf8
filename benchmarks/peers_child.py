"""One contender of ``benchmarks/peers.py``, run in the contender's own virtual environment.

Usage: ``python peers_child.py CONTENDER IN.npz OUT.npz PARAMS_JSON``.

Reads the training matrix and the test users that the parent wrote (``IN.npz``: a binary CSR
``[n_users, n_items]`` over every domain, the target's item range, the test users and, per test
user, the target items to mask), fits the contender, ranks the target items for the test users
and writes ``OUT.npz``: ``top [n_test, k]`` local target indices, ``fit_s``, ``eval_s`` and
``info`` (JSON). Imports numpy and scipy, and the contender's own library only; crossrec's
contenders import crossrec (they run in the project's environment).

Top-k of the peers whose library has no batched masked top-k over a candidate subset: one numpy
routine for all (``top_k``: masked items last, ties to the lower item index, crossrec's rule).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable

import numpy as np
import scipy.sparse as sp


def load_input(path: str) -> dict:
    """The arrays of ``IN.npz`` with the CSR matrices rebuilt."""
    z = np.load(path)
    d = {k: z[k] for k in z.files}
    d["X"] = sp.csr_matrix((np.ones(len(d["x_indices"]), np.float32), d["x_indices"],
                            d["x_indptr"]), shape=tuple(d["x_shape"]))
    d["seen"] = sp.csr_matrix((np.ones(len(d["seen_indices"]), np.float32), d["seen_indices"],
                               d["seen_indptr"]),
                              shape=(len(d["test_users"]), int(d["t_stop"] - d["t_start"])))
    return d


def top_k(scores: np.ndarray, seen: sp.csr_matrix, k: int) -> np.ndarray:
    """``[B, k]`` best columns of ``scores [B, N]`` with ``seen`` rows masked; equal scores:
    lower column first (a stable sort of the negated scores)."""
    s = np.asarray(scores, dtype=np.float64).copy()
    rows = np.repeat(np.arange(seen.shape[0]), np.diff(seen.indptr))
    s[rows, seen.indices] = -np.inf
    s[np.isnan(s)] = -np.inf
    return np.argsort(-s, axis=1, kind="stable")[:, :k]


def peak_rss_mib() -> float:
    """This process's peak resident memory since exec (``VmHWM``), MiB. Not ``ru_maxrss``:
    on Linux that keeps the high-water mark of the parent's forked copy across exec."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _timed(fit: Callable[[], object], rank: Callable[[object], np.ndarray]) -> tuple:
    t0 = time.perf_counter()
    model = fit()
    t1 = time.perf_counter()
    top = rank(model)
    return top, t1 - t0, time.perf_counter() - t1


# ---------------------------------------------------------------------------- crossrec
def run_crossrec(d: dict, p: dict) -> tuple:
    """crossrec's model on the split it builds itself (checked equal to the parent's matrix);
    the ranking is ``eval.ranking.ranked_items``; the evaluator's own NDCG/Recall go to info."""
    import hashlib

    from crossrec.config import EvalConfig, load_config
    from crossrec.data.load import load_dataset, make_split
    from crossrec.eval.ranking import ranked_items
    from crossrec.eval.run import run
    from crossrec.models import build_model
    from crossrec.models.base import FitOptions

    cfg = load_config(p["config"])
    split = make_split(load_dataset(cfg.data), cfg.split, seed=p["seed"])
    x = split.train.user_items(None).tocsr()
    x.data[:] = 1.0
    x.sum_duplicates()
    x.sort_indices()
    digest = hashlib.sha256(x.indptr.tobytes() + x.indices.astype(np.int64).tobytes())
    if digest.hexdigest() != str(d["x_digest"]):
        raise SystemExit("crossrec child: the training matrix differs from the parent's")
    model = build_model(p["model"])
    options = FitOptions(target=split.target, sources=tuple(cfg.split.source), seed=p["seed"],
                         progress=False)
    users = d["test_users"].astype(np.int64)
    top, fit_s, eval_s = _timed(lambda: model.fit(split.train, options),
                                lambda m: ranked_items(m, split, users, int(d["k"])))
    result = run(model, split, EvalConfig(ks=[10], metrics=["ndcg", "recall"]), part="test")
    info = {"evaluator": {"ndcg@10": result.value("ndcg", 10),
                          "recall@10": result.value("recall", 10)}}
    return top, fit_s, eval_s, info


# ---------------------------------------------------------------------------- implicit
def run_implicit(d: dict, p: dict) -> tuple:
    """implicit's ``recommend`` (batched, its own top-k) over the target items."""
    from implicit.als import AlternatingLeastSquares
    from implicit.bpr import BayesianPersonalizedRanking
    from implicit.nearest_neighbours import CosineRecommender

    algo, kw = p["algorithm"], dict(p["params"])
    cls = {"itemknn": CosineRecommender, "bpr": BayesianPersonalizedRanking,
           "als": AlternatingLeastSquares}[algo]
    X, users, k = d["X"], d["test_users"], int(d["k"])
    start, stop = int(d["t_start"]), int(d["t_stop"])
    model = cls(**kw)

    def fit():
        model.fit(X, show_progress=False)
        return model

    def rank(m):
        extra = int(np.diff(d["seen"].indptr).max(initial=0))  # masked beyond the history
        ids, _ = m.recommend(users, X[users], N=k + extra, filter_already_liked_items=True,
                             items=np.arange(start, stop))
        n = min(k, stop - start)
        out = np.empty((len(users), n), dtype=np.int64)
        for r in range(len(users)):
            local = ids[r][ids[r] >= 0] - start
            local = local[~np.isin(local, d["seen"][r].indices)][:n]
            rest = np.setdiff1d(np.arange(stop - start), local)  # short row: masked items last,
            out[r] = np.concatenate([local, rest[: n - len(local)]])  # lower index first
        return out

    top, fit_s, eval_s = _timed(fit, rank)
    return top, fit_s, eval_s, {}


# ---------------------------------------------------------------------------- cornac
def run_cornac(d: dict, p: dict) -> tuple:
    """Cornac: a ``Dataset`` from the training triples, then ``score(user)`` per user (Cornac's
    way), the target columns taken and ranked by ``top_k``."""
    from cornac.data import Dataset
    from cornac.models import BPR, EASE, ItemKNN

    cls = {"bpr": BPR, "ease": EASE, "itemknn": ItemKNN}[p["algorithm"]]
    X, users, k = d["X"].tocoo(), d["test_users"], int(d["k"])
    start, stop = int(d["t_start"]), int(d["t_stop"])

    def fit():
        triples = list(zip(X.row.astype(str), X.col.astype(str), np.ones(X.nnz), strict=True))
        data = Dataset.from_uir(triples, seed=p["seed"])
        return cls(**p["params"]).fit(data), data

    def rank(fitted):
        model, data = fitted
        local = np.full(stop - start, -1, dtype=np.int64)  # cornac item idx per target item
        for j in range(start, stop):
            local[j - start] = data.iid_map.get(str(j), -1)
        scores = np.full((len(users), stop - start), -np.inf)
        known = local >= 0
        for r, u in enumerate(users):
            s = np.asarray(model.score(data.uid_map[str(u)])).ravel()  # EASE: [1, n]
            scores[r, known] = s[local[known]]
        return top_k(scores, d["seen"], k)

    top, fit_s, eval_s = _timed(fit, rank)
    return top, fit_s, eval_s, {}


RUNNERS = {"crossrec": run_crossrec, "implicit": run_implicit, "cornac": run_cornac}


def main(argv: list[str]) -> int:
    name, src, dst, params = argv
    p = json.loads(params)
    if p["library"] in ("lenskit", "recbole"):
        import peers_child_torch

        runner = getattr(peers_child_torch, f"run_{p['library']}")
    else:
        runner = RUNNERS[p["library"]]
    d = load_input(src)
    top, fit_s, eval_s, info = runner(d, p)
    tmp = dst + ".part.npz"
    np.savez(tmp, top=np.asarray(top, dtype=np.int64), fit_s=fit_s, eval_s=eval_s,
             info=json.dumps(info), peak_mib=peak_rss_mib())
    os.replace(tmp, dst)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
