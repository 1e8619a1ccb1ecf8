"""Memory and time of ``DatasetBuilder`` on synthetic interactions (default 10 M rows).

Run: ``python benchmarks/data_memory.py [--rows 10000000] [--k-core 0]``. Prints the build time,
the peak resident memory of the process (``ru_maxrss``) and the size of the built
``interactions`` frame (``memory_usage(deep=True)``). Ids are strings (``u123``, ``i45``), as a
reader would produce them, drawn from pools so that users and items repeat like in real logs.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time

import numpy as np
import pandas as pd

from crossrec.data.builder import DatasetBuilder


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, in MiB (Linux reports KiB)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1024 if sys.platform != "darwin" else rss / 2**20


def synthetic_frame(
    rows: int, n_users: int, n_items: int, domain: str, rng: np.random.Generator
) -> pd.DataFrame:
    """``rows`` interactions with string ids, a rating and a timestamp (some duplicates)."""
    users = np.array([f"u{i}" for i in range(n_users)], dtype=object)
    items = np.array([f"{domain[:1]}{i}" for i in range(n_items)], dtype=object)
    # skewed item popularity (a power of a uniform draw), uniform users
    item_idx = (n_items * rng.random(rows) ** 3).astype(np.int64)
    return pd.DataFrame(
        {
            "user_id": users[rng.integers(0, n_users, size=rows)],
            "item_id": items[rng.permutation(n_items)[item_idx]],
            "rating": rng.integers(1, 6, size=rows).astype(np.float32),
            "timestamp": rng.integers(1_300_000_000, 1_600_000_000, size=rows),
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--items", type=int, default=200_000, help="items per domain")
    parser.add_argument("--k-core", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=str, default=None, help="write the figures here")
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    builder = DatasetBuilder("synthetic")
    half = args.rows // 2
    for domain, rows in (("books", half), ("movies", args.rows - half)):
        frame = synthetic_frame(rows, args.users, args.items, domain, rng)
        builder.add_interactions(frame, domain=domain, source=f"synthetic:{domain}")
        del frame
    t_add = time.perf_counter() - t0
    rss_added = peak_rss_mib()

    t1 = time.perf_counter()
    dataset = builder.build(k_core=args.k_core)
    t_build = time.perf_counter() - t1
    del builder

    inter_bytes = int(dataset.interactions.memory_usage(deep=True).sum())
    t2 = time.perf_counter()
    csr = [dataset.user_items(d) for d in dataset.domains]
    t_csr = time.perf_counter() - t2
    csr_bytes = sum(m.data.nbytes + m.indices.nbytes + m.indptr.nbytes for m in csr)
    print(f"rows requested         {args.rows:>14,}")
    print(f"interactions built     {len(dataset.interactions):>14,}")
    print(f"users / items          {dataset.n_users:>14,} / {dataset.n_items:,}")
    print(f"generate + add         {t_add:>14.1f} s   (peak RSS {rss_added:,.0f} MiB)")
    print(f"build(k_core={args.k_core})         {t_build:>14.1f} s")
    print(f"peak RSS               {peak_rss_mib():>14,.0f} MiB")
    print(f"interactions frame     {inter_bytes / 2**20:>14,.0f} MiB (memory_usage(deep=True))")
    print(f"user x item CSR        {csr_bytes / 2**20:>14,.0f} MiB ({t_csr:.1f} s, all domains)")
    for step in dataset.report.get("steps", []):
        print(f"  {step['step']}: dropped {step['dropped']:,}")
    if args.json:
        import json
        from pathlib import Path

        figures = {"rows": args.rows, "interactions": len(dataset.interactions),
                   "build_s": t_build, "add_s": t_add, "peak_rss_mb": peak_rss_mib(),
                   "interactions_mb": inter_bytes / 2**20, "csr_mb": csr_bytes / 2**20,
                   "csr_s": t_csr, "k_core": args.k_core}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
