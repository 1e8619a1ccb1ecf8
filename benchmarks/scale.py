"""Scale: prepare time and memory, dataset bytes, one BPR epoch and full-ranking evaluation
at growing sizes, with the fitted growth exponent of each.

Run: ``python benchmarks/scale.py --json runs/bench/scale.json [--sizes 1e6,5e6,2e7]``.

Per size ``n`` (interactions before cleaning) the script writes synthetic three-domain logs as
hive-partitioned Parquet (``raw/domain=<d>/part-*.parquet``, string ids; ``n / 40`` users,
``n / 100`` items per domain, skewed item popularity, so duplicates exist), then runs each
stage in a fresh subprocess (its peak RSS is that process's ``ru_maxrss``):

* ``prepare``: ``prepare_large`` (DuckDB, ``--memory-limit``, dedupe, 5-core), i.e.
  ``crossrec prepare tabular raw/ out --engine duckdb``;
* ``model``: load the prepared dataset (bytes held per interaction: ``memory_usage(deep=True)``
  of the interactions, the user and item vocabularies and the item texts, and the RSS growth
  of the load), a ``cold_start_users`` split (target ``movies``), one BPR epoch
  (``epochs = 1``, ``train_on = "all"``, d = 64, ``sparse_updates = true``: row-sparse
  gradients and lazy Adam; fit time includes building its batches), the same epoch with dense
  Adam (the baseline, up to ``--max-dense-train`` interactions) and full-ranking
  evaluation of a **fixed sample** of ``--eval-users`` test users against
  every ``movies`` item (its cost grows with the number of items, i.e. linearly here).

It also times one dense ``torch.optim.Adam`` step and one ``torch.optim.SparseAdam`` step over
a table of the users + items (d = 64), the part of a BPR step that grows with them (dense) or
not (sparse). ``--max-train N`` skips the epoch above N
interactions (evaluation then scores random factors of BPR's shapes), ``--prepare-only`` stops
after prepare, ``--merge OLD.json`` adds an earlier run's rows to the table, fit and plot.

The growth exponent is the slope of ``log(value)`` against ``log(n)`` over the sizes (1 is
linear). ``--ray-size`` adds, at that size, evaluation of *all* test users in-process and
with ``evaluate --workers 1`` and ``2`` (Ray tasks on this machine's cores), and
``crossrec train --workers 1`` vs ``2`` (one BPR epoch; the fit time ``metrics.json``
records, and the command's wall time) when that option exists. A log-log PNG is written
beside the JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

DOMAINS = ("books", "movies", "music")
SHARE = (0.4, 0.35, 0.25)
CHUNK = 1_000_000


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_s() -> float:
    """CPU seconds of this process, all threads (user + system)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def release_memory() -> None:
    """Give freed memory back to the OS (Arrow's pool, glibc), so RSS shows what is held."""
    import ctypes
    import gc

    import pyarrow as pa

    gc.collect()
    pa.default_memory_pool().release_unused()
    ctypes.CDLL("libc.so.6").malloc_trim(0)


def rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def generate(n: int, root: Path, seed: int = 0) -> dict:
    """Synthetic logs of ``n`` rows as hive-partitioned Parquet, written chunk by chunk."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    n_users, n_items = max(1, n // 40), max(1, n // 100)
    perm = [rng.permutation(n_items) for _ in DOMAINS]
    for c, start in enumerate(range(0, n, CHUNK)):
        m = min(CHUNK, n - start)
        dom = rng.choice(len(DOMAINS), size=m, p=SHARE)
        users = rng.integers(0, n_users, size=m)
        pop = (n_items * rng.random(m) ** 3).astype(np.int64)
        ts = rng.integers(1_300_000_000, 1_600_000_000, size=m)
        rating = rng.integers(1, 6, size=m).astype(np.float32)
        for d, name in enumerate(DOMAINS):
            sel = dom == d
            items = perm[d][pop[sel]]
            table = pa.table({
                "user_id": pc.binary_join_element_wise("u", pa.array(users[sel]).cast(pa.string()),
                                                       ""),
                "item_id": pc.binary_join_element_wise(name[0], pa.array(items).cast(pa.string()),
                                                       ""),
                "rating": pa.array(rating[sel]), "timestamp": pa.array(ts[sel])})
            out = root / f"domain={name}" / f"part-{c:04d}.parquet"
            out.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, out)
    return {"users": n_users, "items_per_domain": n_items,
            "bytes_on_disk": sum(f.stat().st_size for f in root.rglob("*.parquet"))}


# ----------------------------------------------------------------------------- stages
def stage_prepare(raw: Path, out: Path, memory_limit: str, k_core: int) -> dict:
    from crossrec.data.large import prepare_large

    t, c = time.perf_counter(), cpu_s()
    meta = prepare_large(raw, out, k_core=k_core, memory_limit=memory_limit, name="scale",
                         temp_dir=out.parent)
    return {"prepare_s": time.perf_counter() - t, "prepare_cpu_s": cpu_s() - c,
            "prepare_peak_rss_mib": peak_rss_mib(),
            "interactions": meta["stats"]["interactions"], "users": meta["stats"]["users"],
            "items": meta["stats"]["items"], "report": meta["report"]}


def dataset_bytes(ds) -> int:  # noqa: ANN001
    """Bytes the loaded dataset holds: interactions, vocabularies, item domains and texts."""
    b = int(ds.interactions.memory_usage(deep=True).sum())
    b += int(ds.users._index.memory_usage(deep=True)) + int(ds.items._index.memory_usage(deep=True))
    b += ds.item_domain.nbytes + sum(sys.getsizeof(t) for t in ds.item_text)
    return b + int(ds.item_attrs.memory_usage(deep=True).sum())


def adam_step_ms(rows: int, d: int = 64, batch: int = 4096, repeats: int = 5,
                 sparse: bool = False) -> float:
    """CPU ms of one backward + optimiser step on a ``[rows, d]`` embedding table when a batch
    touches ``3 * batch`` rows (user, positive, negative): dense ``torch.optim.Adam`` (its cost
    grows with the table) or, with ``sparse``, ``torch.optim.SparseAdam`` on row-sparse
    gradients (best of ``repeats``)."""
    import torch

    table = torch.nn.Embedding(rows, d, sparse=sparse)
    opt = (torch.optim.SparseAdam if sparse else torch.optim.Adam)(table.parameters(), lr=1e-3)
    idx = torch.randint(0, rows, (3 * batch,))
    best = float("inf")
    for _ in range(repeats):
        c = time.process_time()
        opt.zero_grad()
        (table(idx) ** 2).sum().backward()
        opt.step()
        best = min(best, time.process_time() - c)
    return best * 1000


def random_factors(train):  # noqa: ANN001, ANN201
    """A recommender scoring ``U[users] @ V[domain items].T`` with random factors (d = 64)."""
    import torch

    from crossrec.models.base import Recommender

    class Factors(Recommender):
        name = "random_factors"

        def __init__(self) -> None:
            super().__init__()
            g = torch.Generator().manual_seed(0)
            self.u = torch.randn(train.n_users, 64, generator=g)
            self.v = torch.randn(train.n_items, 64, generator=g)

        def fit(self, train, options):  # noqa: ANN001, ANN202
            return self

        def score(self, query, domain: str) -> torch.Tensor:  # noqa: ANN001
            s = train.domain_items(domain)
            return self.u[query.users] @ self.v[s.start:s.stop].T

    return Factors()


def stage_model(data: Path, eval_users: int, ray_workers: list[int], train: bool = True,
                dense: bool = True) -> dict:
    import torch

    from crossrec.data.dataset import MultiDomainDataset
    from crossrec.data.split import cold_start_users
    from crossrec.eval.ranking import evaluate
    from crossrec.experiment import build_model
    from crossrec.models.base import FitOptions

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    release_memory()
    base = rss_mib()
    t = time.perf_counter()
    ds = MultiDomainDataset.load(data)
    out: dict = {"load_s": time.perf_counter() - t}
    n = len(ds.interactions)
    out["dataset_bytes"] = dataset_bytes(ds)
    out["bytes_per_interaction"] = out["dataset_bytes"] / n
    release_memory()
    out["rss_growth_per_interaction"] = (rss_mib() - base) * 2**20 / n
    t = time.perf_counter()
    split = cold_start_users(ds, ["books", "music"], "movies", 0.2, seed=0)
    out["split_s"] = time.perf_counter() - t
    out["train_interactions"] = len(split.train.interactions)
    out["adam_step_ms"] = adam_step_ms(ds.n_users + ds.n_items)
    out["sparse_adam_step_ms"] = adam_step_ms(ds.n_users + ds.n_items, sparse=True)
    out["train_steps"] = -(-out["train_interactions"] // 4096)
    test_users = np.unique(split.truth("test", "movies")["user"].to_numpy())
    sample = np.random.default_rng(0).choice(test_users, min(eval_users, len(test_users)),
                                             replace=False)
    kw = dict(ks=(10, 20), metrics=("recall", "ndcg"), batch_size=512)
    fit_options = FitOptions(target="movies", sources=("books", "music"), progress=False)
    if train and dense:  # the baseline: the same epoch with dense Adam over whole tables
        model = build_model({"name": "bpr", "epochs": 1, "train_on": "all"})
        t, c = time.perf_counter(), time.process_time()
        model.fit(split.train, fit_options)
        out["epoch_dense_s"] = time.perf_counter() - t
        out["epoch_dense_cpu_s"] = time.process_time() - c
        res = evaluate(model, split, users=sample, **kw)
        out["ndcg@10_dense"] = float(res.per_user["ndcg@10"].mean())
        del model
    if train:
        model = build_model({"name": "bpr", "epochs": 1, "train_on": "all",
                             "sparse_updates": True})
        t, c = time.perf_counter(), time.process_time()
        model.fit(split.train, fit_options)
        out["epoch_s"], out["epoch_cpu_s"] = time.perf_counter() - t, time.process_time() - c
    else:  # scoring costs what BPR's does: user rows @ the domain's item rows (d = 64)
        model = random_factors(split.train)
        out["eval_model"] = "random factors, d = 64 (no BPR epoch at this size)"
    t, c = time.perf_counter(), cpu_s()
    res = evaluate(model, split, users=sample, **kw)
    out["eval_s"], out["eval_cpu_s"] = time.perf_counter() - t, cpu_s() - c
    out["eval_users"] = len(res.per_user)
    out["eval_items"] = split.train.info.n_domain_items("movies")
    out["ndcg@10"] = float(res.per_user["ndcg@10"].mean())
    out["model_peak_rss_mib"] = peak_rss_mib()  # before Ray puts anything in shared memory
    if ray_workers:
        out["ray"] = ray_compare(model, split, ray_workers, kw)
    return out


def ray_compare(model, split, workers: list[int], kw: dict) -> dict:  # noqa: ANN001
    """All test users: in-process, then ``evaluate_distributed`` with each worker count."""
    import pandas as pd
    import ray

    from crossrec.eval.distributed import evaluate_distributed
    from crossrec.eval.ranking import evaluate

    t = time.perf_counter()
    whole = evaluate(model, split, **kw)
    res = {"users": len(whole.per_user), "in_process_s": time.perf_counter() - t}
    t = time.perf_counter()
    ray.init(num_cpus=max(workers), include_dashboard=False, log_to_driver=False)
    res["ray_init_s"] = time.perf_counter() - t
    try:
        for w in workers:
            t = time.perf_counter()
            merged = evaluate_distributed(model, split, workers=w, **kw)
            res[f"workers_{w}_s"] = time.perf_counter() - t
            pd.testing.assert_frame_equal(merged.per_user, whole.per_user, check_exact=True)
        res["identical_to_in_process"] = True
    finally:
        ray.shutdown()
    return res


def run_stage(args: list[str]) -> dict:
    """Run this file with ``--stage ...`` in a fresh process; its last line is JSON."""
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"stage {args[:2]} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- report
def slope(sizes: list[float], values: list[float]) -> float | None:
    ok = [(s, v) for s, v in zip(sizes, values, strict=True) if v and v > 0]
    if len(ok) < 2:
        return None
    x, y = np.log([s for s, _ in ok]), np.log([v for _, v in ok])
    return float(np.polyfit(x, y, 1)[0])


MEASURES = {  # key -> label
    "prepare_s": "prepare (DuckDB) s", "prepare_cpu_s": "prepare CPU s",
    "prepare_peak_rss_mib": "prepare peak RSS MiB",
    "bytes_per_interaction": "dataset bytes / interaction",
    "epoch_s": "BPR epoch (lazy Adam) s", "epoch_cpu_s": "BPR epoch (lazy Adam) CPU s",
    "epoch_dense_cpu_s": "BPR epoch (dense Adam) CPU s",
    "adam_step_ms": "dense Adam step CPU ms", "sparse_adam_step_ms": "lazy Adam step CPU ms",
    "eval_s": "eval (fixed user sample) s", "eval_cpu_s": "eval CPU s",
    "model_peak_rss_mib": "load+train+eval peak MiB",
}


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = [r["interactions"] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    for key, label in (("prepare_s", "prepare (wall)"), ("prepare_cpu_s", "prepare (CPU)"),
                       ("epoch_s", "BPR epoch, lazy Adam (wall)"),
                       ("epoch_cpu_s", "BPR epoch, lazy Adam (CPU)"),
                       ("epoch_dense_cpu_s", "BPR epoch, dense Adam (CPU)"),
                       ("eval_s", "eval, fixed users (wall)")):
        pts = [(x, r[key]) for x, r in zip(n, rows, strict=True) if key in r]
        if pts:
            a.loglog(*zip(*pts, strict=True), "o-" if "cpu" not in key else "s--", label=label)
    ref = rows[0]["prepare_s"]
    a.loglog(n, [ref * x / n[0] for x in n], ":", color="gray", label="slope 1")
    a.set(xlabel="interactions (prepared)", ylabel="seconds", title="time")
    for key, label in (("prepare_peak_rss_mib", "prepare peak RSS"),
                       ("model_peak_rss_mib", "train+eval peak RSS"),
                       ("dataset_mib", "dataset held")):
        b.loglog(n, [r[key] for r in rows], "o-", label=label)
    b.set(xlabel="interactions (prepared)", ylabel="MiB", title="memory")
    for ax in (a, b):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="1e6,5e6,2e7", help="comma-separated row counts")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--work", type=Path, default=Path("runs/bench/scale-data"))
    p.add_argument("--memory-limit", default="2GB", help="DuckDB memory limit of prepare")
    p.add_argument("--k-core", type=int, default=5)
    p.add_argument("--eval-users", type=int, default=2000)
    p.add_argument("--ray-size", type=float, default=5e6, help="size of the 1 vs 2 worker "
                   "comparison (0 = none)")
    p.add_argument("--keep", action="store_true", help="keep the generated data")
    p.add_argument("--prepare-only", action="store_true", help="generate and prepare only")
    p.add_argument("--max-dense-train", type=float, default=5e6, help="no dense-Adam "
                   "baseline epoch above this many interactions")
    p.add_argument("--max-train", type=float, default=float("inf"), help="no BPR epoch above "
                   "this size (evaluation then scores random factors of the same shapes)")
    p.add_argument("--merge", type=Path, action="append", default=[],
                   help="rows of an earlier --json to include in the table, fit and plot")
    p.add_argument("--stage", default=None, help=argparse.SUPPRESS)
    p.add_argument("--args", default="{}", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.stage:  # a subprocess: one stage, JSON on the last line
        kw = json.loads(a.args)
        if a.stage == "prepare":
            res = stage_prepare(Path(kw["raw"]), Path(kw["out"]), kw["memory_limit"],
                                kw["k_core"])
        elif a.stage == "train":
            res = stage_train(Path(kw["data"]), Path(kw["work"]), kw["workers"])
        else:
            res = stage_model(Path(kw["data"]), kw["eval_users"], kw["ray_workers"],
                              kw.get("train", True), kw.get("dense", True))
        print(json.dumps(res, default=float))
        return
    sizes = [int(float(s)) for s in a.sizes.split(",")]
    rows = []
    for n in sizes:
        root = a.work / f"n{n}"
        shutil.rmtree(root, ignore_errors=True)
        t = time.perf_counter()
        gen = generate(n, root / "raw")
        row: dict = {"rows": n, "generate_s": time.perf_counter() - t, **gen}
        print(f"[{n:,}] generated in {row['generate_s']:.0f} s", flush=True)
        row.update(run_stage(["--stage", "prepare", "--args", json.dumps(
            {"raw": str(root / "raw"), "out": str(root / "ds"), "memory_limit": a.memory_limit,
             "k_core": a.k_core})]))
        print(f"[{n:,}] prepared in {row['prepare_s']:.0f} s", flush=True)
        shutil.rmtree(root / "raw") if not a.keep else None
        row["loadavg"] = os.getloadavg()
        if a.prepare_only:
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "report"}), flush=True)
            shutil.rmtree(root, ignore_errors=True) if not a.keep else None
            continue
        ray_workers = [1, 2] if a.ray_size and int(a.ray_size) == n else []
        row.update(run_stage(["--stage", "model", "--args", json.dumps(
            {"data": str(root / "ds"), "eval_users": a.eval_users, "ray_workers": ray_workers,
             "train": n <= a.max_train, "dense": n <= a.max_dense_train})]))
        if ray_workers:
            row["train_workers"] = run_stage(["--stage", "train", "--args", json.dumps(
                {"data": str(root / "ds"), "work": str(root / "train"), "workers": ray_workers})])
        row["dataset_mib"] = row["dataset_bytes"] / 2**20
        row["loadavg"] = os.getloadavg()
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "report"}, default=float),
              flush=True)
        if not a.keep:
            shutil.rmtree(root, ignore_errors=True)
    for prev in a.merge:
        rows.extend(json.loads(prev.read_text())["sizes"])
    rows.sort(key=lambda r: r["interactions"])
    x = [r["interactions"] for r in rows]
    measures = {k: v for k, v in MEASURES.items() if sum(k in r for r in rows) >= 2}
    exps = {k: slope(x, [r.get(k) for r in rows]) for k in measures}  # sizes that have it
    print(f"\n{'measure':<30}" + "".join(f"{r['interactions']:>14,}" for r in rows)
          + f"{'exponent':>10}")
    for k, label in measures.items():
        e = exps[k]
        print(f"{label:<30}" + "".join(f"{r[k]:>14,.2f}" if k in r else f"{'-':>14}"
                                       for r in rows)
              + (f"{e:>10.2f}" if e is not None else f"{'-':>10}"))
    result = {"sizes": rows, "growth_exponent": exps,
              "bytes_per_interaction": {str(r["interactions"]): r["bytes_per_interaction"]
                                        for r in rows if "bytes_per_interaction" in r},
              "settings": {"memory_limit": a.memory_limit, "k_core": a.k_core,
                           "eval_users": a.eval_users, "cpus": os.cpu_count(),
                           "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}}
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(result, indent=2, default=float))
        if not a.prepare_only:
            plot(rows, a.json.with_suffix(".png"))
        print(f"wrote {a.json} and {a.json.with_suffix('.png')}")


TRAIN_TOML = """name = "scale"
[data]
prepared = "{data}"
[split]
kind = "cold_start_users"
source = ["books", "music"]
target = "movies"
ratio = 0.2
[model]
name = "bpr"
epochs = 1
train_on = "all"
sparse_updates = true
"""


def stage_train(data: Path, work: Path, workers: list[int]) -> dict:
    """``crossrec train --workers W`` (one BPR epoch, then valid + test evaluation by rank 0)
    for each W: wall time of the command and the fit time it records in metrics.json."""
    exe = str(Path(sys.executable).with_name("crossrec"))
    env = {**os.environ, "COLUMNS": "200"}
    usage = subprocess.run([exe, "train", "--help"], capture_output=True, text=True, env=env)
    if "--workers" not in usage.stdout:
        return {"note": "not run: crossrec train has no --workers option in this checkout"}
    work.mkdir(parents=True, exist_ok=True)
    cfg = work / "scale.toml"
    cfg.write_text(TRAIN_TOML.format(data=Path(data).resolve().as_posix()))
    out: dict = {}
    for w in workers:
        run = work / f"train-w{w}"
        shutil.rmtree(run, ignore_errors=True)
        t = time.perf_counter()
        proc = subprocess.run([exe, "train", str(cfg), "--out", str(run), "--workers", str(w)],
                              capture_output=True, text=True, env=env)
        wall = time.perf_counter() - t
        if proc.returncode != 0:
            out[f"workers_{w}"] = {"error": (proc.stdout + proc.stderr)[-2000:]}
            continue
        m = json.loads((run / "metrics.json").read_text())
        ndcg = [r["value"] for r in m["test"]["summary"]
                if r.get("metric") == "ndcg" and r.get("k") == 10]
        out[f"workers_{w}"] = {"wall_s": wall, "fit_s": m["fit_seconds"],
                               "test_ndcg@10": ndcg[0] if ndcg else None}
    return out


if __name__ == "__main__":
    main()
