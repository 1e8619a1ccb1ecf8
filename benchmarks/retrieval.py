"""Retrieval for serving: exact scoring vs faiss indexes, compressed vectors, an int8 encoder.

Run: ``OMP_NUM_THREADS=1 python benchmarks/retrieval.py --bundle runs/retrieval/bpr/bundle
--encoder-bundle runs/retrieval/ptupcdr/bundle [--synthetic-items 200000] [--json out.json]``.

Three parts, each variant a ``RetrievalConfig`` (``crossrec.serving.retrieval``):

1. ``--bundle`` (a factorised model trained on the split its config names, e.g. ``bpr(all)`` on
   Arts -> Office cold-start users, seed 0): every variant ranks the target items for the test
   users (training and validation items left out, as ``crossrec.eval.ranking.evaluate`` does)
   through the path ``Bundle.recommend`` uses; NDCG@10 against the test truth, its change vs
   exact, and recall@10 against the exact top 10. The exact row is also checked against
   ``evaluate`` itself. Latency: ``Bundle.recommend`` per user, one user per call (batch 1)
   and 256 per call.
2. ``--encoder-bundle`` (a model with ``nn.Linear`` layers, e.g. PTUPCDR's meta network): the
   same, with the user encoder quantised to int8; memory is that of the Linear layers.
3. A synthetic catalogue (``--synthetic-items`` x ``--dim``, ``crossrec.testing.vectors``):
   ``VectorIndex.search`` for given user vectors, recall@10 against exact, build time.

Memory: the stored item vectors (n x d' x bytes) and the whole index (faiss: serialised size,
HNSW graph and IVF lists included; exact: the fp32 matrix). Latency: median wall ms per user
and CPU ms per user (``time.process_time``, the figure that does not depend on the machine's
load). Run it single-threaded (``OMP_NUM_THREADS=1``) for per-core figures.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from crossrec.bundle import Bundle
from crossrec.eval import metrics as M
from crossrec.eval.topk import exact_top_k
from crossrec.models.base import Query
from crossrec.serving.retrieval import RetrievalConfig, Retriever, VectorIndex

VARIANTS = {
    "exact fp32 (torch)": RetrievalConfig(),
    "flat fp32 (faiss)": RetrievalConfig(kind="flat"),
    "exact fp16": RetrievalConfig(vectors="fp16"),
    "exact int8": RetrievalConfig(vectors="int8"),
    "hnsw fp32 ef64": RetrievalConfig(kind="hnsw", hnsw_ef_search=64),
    "hnsw fp32 ef128": RetrievalConfig(kind="hnsw", hnsw_ef_search=128),
    "hnsw fp32 ef256": RetrievalConfig(kind="hnsw", hnsw_ef_search=256),
    "ivf fp32 nprobe16": RetrievalConfig(kind="ivf", ivf_nprobe=16),
    "ivf fp32 nprobe64": RetrievalConfig(kind="ivf", ivf_nprobe=64),
    "hnsw int8 ef128": RetrievalConfig(kind="hnsw", vectors="int8", hnsw_ef_search=128),
    "hnsw int8 M16 ef128": RetrievalConfig(kind="hnsw", vectors="int8", hnsw_m=16,
                                           hnsw_ef_search=128),
    "ivf int8 nprobe64": RetrievalConfig(kind="ivf", vectors="int8", ivf_nprobe=64),
}
TWO_TOWER = "exact fp32 (two-tower)"  # the Retriever's torch path, nothing compressed
ENCODER_VARIANTS = {
    "exact fp32 (torch)": RetrievalConfig(),
    TWO_TOWER: RetrievalConfig(),
    "exact fp32 + int8 encoder": RetrievalConfig(quantize_user_encoder=True),
    "hnsw int8 + int8 encoder": RetrievalConfig(kind="hnsw", vectors="int8",
                                                hnsw_ef_search=128, quantize_user_encoder=True),
}
SEARCH_ONLY = {"hnsw_ef_search", "ivf_nprobe", "max_fetch", "quantize_user_encoder"}


def timed(fn: Any, repeats: int) -> tuple[float, float]:
    """Median wall ms and mean CPU ms of ``fn()`` over ``repeats`` calls."""
    walls, cpu0 = [], time.process_time()
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        walls.append(time.perf_counter() - start)
    return 1e3 * float(np.median(walls)), 1e3 * (time.process_time() - cpu0) / repeats


def overlap(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean([len(set(x[x >= 0]) & set(y)) / len(y) for x, y in zip(a, b,
                                                                                  strict=True)]))


# ------------------------------------------------------------------ real data
def evaluation_data(bundle: Bundle) -> tuple[Any, np.ndarray, list[np.ndarray], list[set]]:
    """The bundle's split, its test users in the target, their known items (training and
    validation, local indices) and their test items (local)."""
    from crossrec.config import ExperimentConfig
    from crossrec.experiment import load_dataset, make_split

    cfg = ExperimentConfig(**bundle.config["experiment"])
    split = make_split(load_dataset(cfg.data), cfg.split, int(bundle.config["seed"]))
    target, s = bundle.target, split.train.domain_items(bundle.target)
    test, valid = split.truth("test", target), split.truth("valid", target)
    users = np.unique(test["user"].to_numpy(np.int64))
    train = split.train.user_items(target)
    valid_of = valid.groupby("user")["item"].apply(lambda x: x.to_numpy() - s.start).to_dict()
    test_of = test.groupby("user")["item"].apply(lambda x: set(x.to_numpy() - s.start))
    known = [np.union1d(train.indices[train.indptr[u]:train.indptr[u + 1]],
                        valid_of.get(u, np.zeros(0, np.int64))).astype(np.int64)
             for u in users]
    known = [k[~np.isin(k, list(test_of[u]))] for k, u in zip(known, users, strict=True)]
    return split, users, known, [test_of[u] for u in users]


def ndcg10(top: np.ndarray, truth: list[set]) -> float:
    hits = torch.tensor([[i in t for i in row] for row, t in zip(top, truth, strict=True)])
    n_truth = np.array([len(t) for t in truth])
    return float(M.ndcg_at_k(hits, n_truth, 10).mean())


def run_bundle(path: Path, variants: dict[str, RetrievalConfig], batch1_users: int,
               console: Console) -> tuple[list[dict], dict]:
    base = Bundle.load(path)
    split, users, known, truth = evaluation_data(base)
    target = base.target
    from crossrec.eval.ranking import evaluate

    official = evaluate(base.model, split, part="test", ks=(10,), metrics=("ndcg",))
    raw = [str(u) for u in base.train.users.raw(users)]
    rng = np.random.default_rng(0)
    sample = [raw[i] for i in rng.choice(len(raw), min(batch1_users, len(raw)), replace=False)]
    info = {"bundle": str(path), "model": base.config["model"]["name"], "domain": target,
            "n_items": base.train.info.n_domain_items(target), "test_users": len(users),
            "ndcg10_evaluate": official.value("ndcg", 10)}
    batches = [raw[i:i + 256] for i in range(0, len(raw), 256)]
    rows, reference = [], None
    for name, cfg in variants.items():
        b = Bundle.load(path)  # a fresh model: the int8 encoder changes it in place
        start = time.perf_counter()
        if name == TWO_TOWER:
            b.retrieval = Retriever(b.model, b.train, target, cfg)
        else:
            b.use_retrieval(cfg)
        build = time.perf_counter() - start
        query = [Query(torch.from_numpy(users))]
        if b.retrieval is None:
            _, top, _ = exact_top_k(b.model, query, target, 10, known)
        else:
            _, top, _ = b.retrieval.top_k(query, target, 10, known)
        top = top.numpy()
        reference = top if reference is None else reference
        b1 = timed(lambda b=b: [b.recommend([u], target, 10) for u in sample], 3)
        b256 = timed(lambda b=b: [b.recommend(chunk, target, 10) for chunk in batches], 3)
        if b.retrieval is None:  # the model's own fp32 item table of the domain
            vectors = memory = base.model.retrieval_items(target).numel() * 4
        else:
            index = b.retrieval.index(target)
            vectors, memory = index.vector_bytes(), index.memory_bytes()
        row = {"variant": name, "config": cfg.model_dump(), "vector_bytes": vectors,
               "index_bytes": memory, "build_s": build,
               "batch1_ms": b1[0] / len(sample), "batch1_cpu_ms": b1[1] / len(sample),
               "batch256_ms": b256[0] / len(raw), "batch256_cpu_ms": b256[1] / len(raw),
               "recall10_vs_exact": overlap(top, reference), "ndcg10": ndcg10(top, truth)}
        if cfg.quantize_user_encoder:
            row["linear_bytes"] = linear_bytes(b.model)
        rows.append(row)
        console.print(f"  {name}: ndcg@10 {row['ndcg10']:.4f}, recall@10 "
                      f"{row['recall10_vs_exact']:.4f}, {row['batch1_cpu_ms']:.3f} CPU ms/user")
    for row in rows:
        row["ndcg10_delta"] = row["ndcg10"] - rows[0]["ndcg10"]
    if any(cfg.quantize_user_encoder for cfg in variants.values()):
        info["linear_bytes_fp32"] = linear_bytes(base.model)
    return rows, info


def linear_bytes(model: torch.nn.Module) -> int:
    """Bytes of the weights and biases of the model's Linear layers (fp32 or dynamic int8:
    int8 weights, per-channel scales and zero points, fp32 biases)."""
    total = 0
    for m in model.modules():
        if type(m) is torch.nn.Linear:
            total += sum(p.numel() * p.element_size() for p in m.parameters())
        elif type(m).__module__.startswith("torch.ao.nn.quantized.dynamic"):
            w, bias = m._packed_params._weight_bias()
            total += w.int_repr().numel() + (bias.numel() * 4 if bias is not None else 0)
            if w.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
                total += w.q_per_channel_scales().numel() * 8 \
                    + w.q_per_channel_zero_points().numel() * 8
    return total


# ------------------------------------------------------------------ synthetic
def run_synthetic(n_items: int, dim: int, n_users: int, batch1_users: int,
                  console: Console) -> tuple[list[dict], dict]:
    from crossrec.testing.vectors import make_vectors

    items, users = make_vectors(n_items, n_users=n_users, dim=dim, seed=0)
    rows, reference, built = [], None, {}
    for name, cfg in VARIANTS.items():
        key = json.dumps(cfg.model_dump(exclude=SEARCH_ONLY), sort_keys=True)
        if key not in built:  # one build per index; search settings change per variant
            built = {key: VectorIndex(items, cfg)}
        index = built[key]
        index.config = cfg
        _, top = index.search(users, 10)
        reference = top if reference is None else reference
        b1 = timed(lambda ix=index: [ix.search(users[i:i + 1], 10)
                                     for i in range(batch1_users)], 3)
        b256 = timed(lambda ix=index: [ix.search(users[i:i + 256], 10)
                                       for i in range(0, n_users, 256)], 3)
        rows.append({"variant": name, "config": cfg.model_dump(),
                     "vector_bytes": index.vector_bytes(), "index_bytes": index.memory_bytes(),
                     "build_s": index.build_seconds,
                     "batch1_ms": b1[0] / batch1_users, "batch1_cpu_ms": b1[1] / batch1_users,
                     "batch256_ms": b256[0] / n_users, "batch256_cpu_ms": b256[1] / n_users,
                     "recall10_vs_exact": overlap(top, reference)})
        console.print(f"  {name}: recall@10 {rows[-1]['recall10_vs_exact']:.4f}, build "
                      f"{index.build_seconds:.1f} s, {rows[-1]['batch1_cpu_ms']:.3f} CPU ms")
    return rows, {"n_items": n_items, "dim": dim + 1, "users": n_users}


def table(title: str, rows: list[dict]) -> Table:
    t = Table(title=title)
    cols = ["variant", "vectors MiB", "index MiB", "build s", "b1 ms/user", "b1 CPU ms",
            "b256 ms/user", "b256 CPU ms", "recall@10", "NDCG@10", "Δ NDCG@10"]
    for c in cols:
        t.add_column(c, justify="left" if c == "variant" else "right")
    for r in rows:
        ndcg = f"{r['ndcg10']:.4f}" if "ndcg10" in r else "-"
        delta = f"{r['ndcg10_delta']:+.4f}" if "ndcg10_delta" in r else "-"
        t.add_row(r["variant"], f"{r['vector_bytes'] / 2**20:.2f}",
                  f"{r['index_bytes'] / 2**20:.2f}", f"{r['build_s']:.2f}",
                  f"{r['batch1_ms']:.3f}", f"{r['batch1_cpu_ms']:.3f}",
                  f"{r['batch256_ms']:.4f}", f"{r['batch256_cpu_ms']:.4f}",
                  f"{r['recall10_vs_exact']:.4f}", ndcg, delta)
    return t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, help="factorised model bundle (real data)")
    ap.add_argument("--encoder-bundle", type=Path, help="bundle of a model with Linear layers")
    ap.add_argument("--synthetic-items", type=int, default=200_000, help="0 = skip")
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--synthetic-users", type=int, default=1024)
    ap.add_argument("--batch1-users", type=int, default=200, help="users timed one by one")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    console = Console(width=180)
    out: dict[str, Any] = {"command": " ".join(["python", *sys.argv]),
                           "threads": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS",
                                                                      "MKL_NUM_THREADS")},
                           "torch_threads": torch.get_num_threads()}
    if args.bundle:
        console.print(f"bundle {args.bundle}")
        rows, info = run_bundle(args.bundle, VARIANTS, args.batch1_users, console)
        out["bundle"] = {**info, "rows": rows}
        console.print(table(f"{info['model']} on {info['domain']} ({info['n_items']} items, "
                            f"{info['test_users']} test users; evaluate() NDCG@10 "
                            f"{info['ndcg10_evaluate']:.4f})", rows))
    if args.encoder_bundle:
        console.print(f"encoder bundle {args.encoder_bundle}")
        rows, info = run_bundle(args.encoder_bundle, ENCODER_VARIANTS, args.batch1_users,
                                console)
        out["encoder"] = {**info, "rows": rows}
        console.print(table(f"{info['model']} user encoder int8 on {info['domain']} "
                            f"(Linear layers {info['linear_bytes_fp32']} B fp32, "
                            f"{rows[-1]['linear_bytes']} B int8)", rows))
    if args.synthetic_items:
        console.print(f"synthetic {args.synthetic_items} x {args.dim}")
        rows, info = run_synthetic(args.synthetic_items, args.dim, args.synthetic_users,
                                   args.batch1_users, console)
        out["synthetic"] = {**info, "rows": rows}
        console.print(table(f"synthetic catalogue: {info['n_items']} items x {info['dim']} "
                            f"dims, {info['users']} users", rows))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.json.with_suffix(args.json.suffix + ".tmp")
        tmp.write_text(json.dumps(out, indent=2))
        tmp.replace(args.json)


if __name__ == "__main__":
    main()
