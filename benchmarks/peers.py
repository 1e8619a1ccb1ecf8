"""crossrec's ItemKNN, EASE, BPR and ALS beside implicit, LensKit, Cornac and RecBole: one training
matrix, one masked full ranking, one metric code — and an external one to check it.

Run: ``python benchmarks/peers.py [--datasets movielens,arts_office] [--only ease,implicit-bpr]
[--repeats 3] [--threads 1] [--json out.json]`` (``make bench-peers``).

Per dataset (a crossrec config, seed 0, ``train_on = "all"``: the merged all-domain matrix), the
parent builds the split once with crossrec's loaders and writes a temp ``.npz``: the binary
training matrix ``[users, items]`` of every domain, the target's item range, the test (cold)
users and the target items each of them has masked (crossrec's evaluator's mask). Each contender
runs as a subprocess of its own virtual environment (``.peers/<env>/``, created here with
``python -m venv`` and the pinned installs of ``ENVS``), reads that file, fits, ranks the target
items for the test users and writes its top-k lists back. The parent computes NDCG@10 and
Recall@10 on those lists with crossrec's metric functions and with ``ranx`` (the ``peers``
extra) and reports the largest difference; for crossrec's own rows it also compares with
crossrec's evaluator (``crossrec.eval.run``), which ranks by itself.

Per row: fit and eval (top-k) wall seconds (median over repeats, measured in the child), the
child's peak RSS (``os.wait4``), the metrics, and ``ratio`` = (fit + eval) / the fastest
contender of the same algorithm. Contenders of one algorithm run in rotating order across
repeats. Every child gets the same thread count through ``OMP_NUM_THREADS``,
``MKL_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``, ``CROSSREC_THREADS`` and the library's own
``num_threads``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
PEERS_DIR = ROOT / ".peers"
CHILD = Path(__file__).resolve().parent / "peers_child.py"
DATASETS = {"movielens": "configs/movielens_genre_cold.toml",
            "arts_office": "configs/arts_office_cold.toml"}
TORCH = "torch==2.13.0"
# pinned installs of each peer environment ("main" = the interpreter running this script)
ENVS: dict[str, list[str]] = {
    "implicit": ["implicit==0.7.3", "numpy==2.3.5", "scipy==1.16.3"],
    "lenskit": ["lenskit==2025.8.1", TORCH],
    "cornac": ["cornac==3.0.1"],
    "recbole": ["recbole==1.2.1", TORCH, "numpy==1.26.4", "pandas==2.2.3", "scipy==1.13.1"],
    # its 0.1.0 wheel pins scipy==1.6.0 (no Python 3.11 wheel): binary-only, so pip fails fast
    "recbole_cdr": ["--only-binary=:all:", "recbole-cdr==0.1.0", "recbole==1.2.1", TORCH,
                    "numpy==1.26.4", "pandas==2.2.3"],
}
K = 10
FACTORS, BPR_EPOCHS, ALS_EPOCHS, NEIGHBORS, EASE_L2 = 64, 30, 15, 200, 500.0


@dataclass
class Contender:
    """One row: a library's implementation of an algorithm, with its settings."""

    name: str
    library: str
    algorithm: str
    params: dict
    settings: str  # the hyper-parameters as printed in the table
    env: str = "main"
    model: dict = field(default_factory=dict)  # crossrec's model table


def contenders(threads: int) -> list[Contender]:
    """Every contender, equal settings where the algorithm is the same (see ``settings``)."""
    t = threads
    knn = f"k={NEIGHBORS} cosine"
    bpr = f"d={FACTORS} {BPR_EPOCHS} ep 1 neg"
    als = f"d={FACTORS} {ALS_EPOCHS} it reg=0.1"
    return [
        Contender("crossrec", "crossrec", "itemknn", {}, knn + " shrink=0",
                  model={"name": "itemknn", "train_on": "all", "neighbors": NEIGHBORS,
                         "shrink": 0.0}),
        Contender("crossrec(shrink=10)", "crossrec", "itemknn", {}, knn + " shrink=10 (default)",
                  model={"name": "itemknn", "train_on": "all", "neighbors": NEIGHBORS}),
        Contender("implicit", "implicit", "itemknn", {"K": NEIGHBORS, "num_threads": t}, knn,
                  env="implicit"),
        Contender("lenskit", "lenskit", "itemknn",
                  {"max_nbrs": NEIGHBORS, "feedback": "implicit"}, knn + " (per target item)",
                  env="lenskit"),
        Contender("cornac", "cornac", "itemknn",
                  {"k": NEIGHBORS, "similarity": "cosine", "num_threads": t, "verbose": False},
                  knn + " weighted mean", env="cornac"),
        Contender("crossrec", "crossrec", "ease", {}, f"λ={EASE_L2:g}",
                  model={"name": "ease", "train_on": "all", "l2": EASE_L2}),
        Contender("lenskit", "lenskit", "ease", {"regularization": EASE_L2},
                  f"λ={EASE_L2:g}", env="lenskit"),
        Contender("cornac", "cornac", "ease", {"lamb": EASE_L2, "posB": False, "verbose": False},
                  f"λ={EASE_L2:g} posB=False", env="cornac"),
        Contender("crossrec", "crossrec", "bpr", {},
                  bpr + " Adam lr=5e-3 L2=1e-3, same-domain negatives, init 0.1 (default)",
                  model={"name": "bpr", "train_on": "all", "embedding_size": FACTORS,
                         "epochs": BPR_EPOCHS}),
        # Cornac's model and update: item bias, negatives uniform over every item, start
        # uniform(-0.5, 0.5) / d (std 0.0045), per-pair SGD; Cornac's λ = 2 * weight_decay
        Contender("crossrec(sgd)", "crossrec", "bpr", {},
                  bpr + " SGD lr=0.01 L2=1e-3 +bias, all-item negatives, init 0.0045",
                  model={"name": "bpr", "train_on": "all", "embedding_size": FACTORS,
                         "epochs": BPR_EPOCHS, "optimizer": "sgd", "learning_rate": 0.01,
                         "weight_decay": 5e-4, "init_std": 0.0045, "item_bias": True,
                         "negatives": "catalogue"}),
        # RecBole's: Adam, no L2, a small start (its xavier_normal: std 0.007 / 0.014)
        Contender("crossrec(adam,recbole)", "crossrec", "bpr", {},
                  bpr + " Adam lr=5e-3 L2=0, all-item negatives, init 0.01",
                  model={"name": "bpr", "train_on": "all", "embedding_size": FACTORS,
                         "epochs": BPR_EPOCHS, "weight_decay": 0.0, "init_std": 0.01,
                         "negatives": "catalogue"}),
        Contender("implicit", "implicit", "bpr",
                  {"factors": FACTORS, "iterations": BPR_EPOCHS, "learning_rate": 0.01,
                   "regularization": 1e-3, "num_threads": t, "random_state": 0},
                  bpr + " SGD lr=0.01 L2=1e-3", env="implicit"),
        Contender("cornac", "cornac", "bpr",
                  {"k": FACTORS, "max_iter": BPR_EPOCHS, "learning_rate": 0.01,
                   "lambda_reg": 1e-3, "num_threads": t, "seed": 0},
                  bpr + " SGD lr=0.01 L2=1e-3 +bias", env="cornac"),
        Contender("recbole", "recbole", "bpr",
                  {"embedding_size": FACTORS, "epochs": BPR_EPOCHS, "learning_rate": 5e-3,
                   "train_batch_size": 4096, "weight_decay": 0.0},
                  bpr + " Adam lr=5e-3 L2=0", env="recbole"),
        # confidence of an interaction: implicit alpha·r = 40, crossrec 1 + alpha·r = 40,
        # LensKit 1 + weight·r = 41 (both crossrec and implicit start from the same draw)
        Contender("crossrec", "crossrec", "als", {}, als + " conf=40 CG 3 steps",
                  model={"name": "als", "train_on": "all", "embedding_size": FACTORS,
                         "iterations": ALS_EPOCHS, "l2": 0.1, "alpha": 39.0}),
        Contender("crossrec(defaults)", "crossrec", "als", {},
                  f"d={FACTORS} {ALS_EPOCHS} it reg=100 conf=11 CG (default)",
                  model={"name": "als", "train_on": "all"}),
        Contender("implicit", "implicit", "als",
                  {"factors": FACTORS, "iterations": ALS_EPOCHS, "regularization": 0.1,
                   "alpha": 40.0, "num_threads": t, "random_state": 0},
                  als + " conf=40 CG 3 steps", env="implicit"),
        Contender("lenskit", "lenskit", "als",
                  {"embedding_size": FACTORS, "epochs": ALS_EPOCHS, "regularization": 0.1,
                   "weight": 40.0}, als + " conf=41 Cholesky", env="lenskit"),
        Contender("recbole_cdr", "recbole_cdr", "emcdr", {}, "package check only",
                  env="recbole_cdr"),
    ]


# ---------------------------------------------------------------------------- environments
def env_python(env: str, log: Path) -> tuple[str | None, str]:
    """The interpreter of ``env``, creating ``.peers/<env>`` with its pins on first use;
    ``(None, last error line)`` when the installs fail."""
    if env == "main":
        return sys.executable, ""
    where = PEERS_DIR / env
    python = where / "bin" / "python"
    stamp = where / ".pins"
    pins = "\n".join(ENVS[env])
    if stamp.exists() and stamp.read_text() == pins:
        return str(python), ""
    base = getattr(sys, "_base_executable", sys.executable)
    steps = [[base, "-m", "venv", "--clear", str(where)],
             [str(python), "-m", "pip", "install", "--quiet", *ENVS[env]]]
    for cmd in steps:
        with log.open("a") as out:
            done = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT)
        if done.returncode:
            lines = [x for x in log.read_text().splitlines() if "ERROR" in x or "error" in x]
            return None, (lines[-1] if lines else f"{cmd[2]} exited {done.returncode}")[:300]
    stamp.write_text(pins)
    return str(python), ""


def recbole_cdr_check(python: str | None, install_error: str) -> str:
    """Why RecBole-CDR's EMCDR/CMF cannot run: the install error (if any) and which models
    its wheel ships (read from the wheel itself)."""
    import zipfile

    if python:
        code = "from recbole_cdr.utils import get_model; get_model('EMCDR')"
        done = subprocess.run([python, "-c", code], capture_output=True, text=True)
        if done.returncode == 0:
            return "EMCDR imports (not benchmarked here)"
        install_error = done.stderr.strip().splitlines()[-1]
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "-d", tmp,
                        ENVS["recbole_cdr"][1]], capture_output=True)
        wheels = list(Path(tmp).glob("*.whl"))
        models = sorted({n.split("/")[2] for n in zipfile.ZipFile(wheels[0]).namelist()
                         if n.startswith("recbole_cdr/model/")}) if wheels else []
    return (f"{install_error}; its wheel's recbole_cdr/model/ holds only {', '.join(models)}"
            if wheels else install_error)


# ---------------------------------------------------------------------------- data
def digest(indptr: np.ndarray, indices: np.ndarray) -> str:
    """Hash of a CSR structure (the child checks that it sees the same matrix)."""
    return hashlib.sha256(indptr.tobytes() + indices.astype(np.int64).tobytes()).hexdigest()


def prepare(config: str, seed: int, path: Path) -> dict:
    """Build the split once and write the exchange file; returns the truth for the metrics."""
    from crossrec.config import load_config
    from crossrec.data.load import load_dataset, make_split
    from crossrec.eval.ranking import _known, _truth_csr

    cfg = load_config(ROOT / config)
    split = make_split(load_dataset(cfg.data), cfg.split, seed=seed)
    train, target = split.train, split.target
    x = train.user_items(None).tocsr()
    x.data[:] = 1.0
    x.sum_duplicates()
    x.sort_indices()
    items = train.domain_items(target)
    n_dom = items.stop - items.start
    truth = _truth_csr(split, target, "test", (train.n_users, n_dom))
    users = np.flatnonzero(np.diff(truth.indptr)).astype(np.int64)
    seen = _known(split, target, "test", truth)[users].tocsr()
    write_input(path, x.indptr, x.indices, x.shape, items.start, items.stop, users,
                seen.indptr, seen.indices, digest(x.indptr, x.indices))
    t = truth[users].tocsr()
    return {"config": config, "target": target, "users": users, "truth": t,
            "n_users": x.shape[0], "n_items": x.shape[1], "n_target": n_dom, "nnz": x.nnz}


def write_input(path: Path, indptr, indices, shape, start, stop, users, seen_indptr,
                seen_indices, x_digest: str) -> None:
    """The parent -> child exchange file (temp file, then rename)."""
    tmp = path.with_suffix(".part.npz")
    np.savez(tmp, x_indptr=np.asarray(indptr, np.int64), x_indices=np.asarray(indices, np.int32),
             x_shape=np.asarray(shape, np.int64), t_start=start, t_stop=stop,
             test_users=np.asarray(users, np.int64), seen_indptr=np.asarray(seen_indptr, np.int64),
             seen_indices=np.asarray(seen_indices, np.int32), k=K, x_digest=x_digest)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------- metrics
def crossrec_metrics(top: np.ndarray, truth) -> dict[str, float]:
    """NDCG@10 and Recall@10 of the lists with crossrec's metric functions (user mean)."""
    from crossrec.eval import metrics as M

    rows = np.repeat(np.arange(top.shape[0]), top.shape[1])
    hits = np.asarray(truth[rows, top.ravel()]).reshape(top.shape) > 0
    n_truth = np.diff(truth.indptr)
    cols = M.rank_metrics(hits, n_truth, [K], ["ndcg", "recall"])
    return {m: float(np.nanmean(v)) for m, v in cols.items()}


def ranx_metrics(top: np.ndarray, truth, users: np.ndarray) -> dict[str, float] | None:
    """The same with ranx (scores = k - rank, so ranx sees the lists' order); None if absent."""
    try:
        from ranx import Qrels, Run, evaluate
    except ImportError:
        return None
    qrels = {str(u): {str(i): 1 for i in truth[r].indices} for r, u in enumerate(users)}
    run = {str(u): {str(i): float(top.shape[1] - j) for j, i in enumerate(top[r])}
           for r, u in enumerate(users)}
    out = evaluate(Qrels(qrels), Run(run), [f"ndcg@{K}", f"recall@{K}"], make_comparable=True)
    return {k: float(v) for k, v in out.items()}


# ---------------------------------------------------------------------------- children
def thread_env(threads: int) -> dict[str, str]:
    """The environment of every child: one thread count for every runtime."""
    n = str(threads)
    return {**os.environ, "OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n,
            "OPENBLAS_NUM_THREADS": n, "CROSSREC_THREADS": n, "NUMBA_NUM_THREADS": n,
            "PYTHONPATH": str(CHILD.parent)}


def run_child(python: str, c: Contender, src: Path, config: str, seed: int, threads: int,
              timeout: float) -> dict:
    """Run one contender; its top-k, fit/eval seconds, info and peak RSS (MiB)."""
    params = {"library": c.library, "algorithm": c.algorithm, "params": c.params,
              "model": c.model, "config": str(ROOT / config), "seed": seed, "threads": threads}
    with tempfile.TemporaryDirectory(prefix="peers-") as tmp:
        dst = Path(tmp) / "out.npz"
        log = Path(tmp) / "log.txt"
        with log.open("w") as out:
            proc = subprocess.Popen([python, str(CHILD), c.name, str(src), str(dst),
                                     json.dumps(params)], stdout=out, stderr=subprocess.STDOUT,
                                    env=thread_env(threads),
                                    cwd=ROOT if c.library == "crossrec" else tmp)  # RecBole: ./log*
            deadline = time.monotonic() + timeout
            while True:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                if time.monotonic() > deadline:
                    proc.kill()
                    os.wait4(proc.pid, 0)
                    return {"error": f"timed out after {timeout:.0f} s"}
                time.sleep(0.05)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode or not dst.exists():
            tail = [x for x in log.read_text().splitlines() if x.strip()][-1:] or ["no output"]
            return {"error": f"exit {proc.returncode}: {tail[0][:300]}"}
        z = np.load(dst)
        return {"top": z["top"], "fit_s": float(z["fit_s"]), "eval_s": float(z["eval_s"]),
                "info": json.loads(str(z["info"])), "rss_mib": float(z["peak_mib"]),
                "ru_maxrss_mib": usage.ru_maxrss / 1024}


def dense_gib(c: Contender, n_items: int) -> float:
    """Memory of a peer's dense EASE over every item (the gram matrix and its inverse;
    Cornac in float64, LensKit in float32); crossrec caps its catalogue (``max_items``)."""
    if c.algorithm != "ease" or c.library == "crossrec":
        return 0.0
    return 2 * n_items**2 * (8 if c.library == "cornac" else 4) / 2**30


def available_gib() -> float:
    """``MemAvailable`` of this machine, GiB."""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 2**20
    return float("inf")


def rotations(items: list, repeats: int) -> list[list]:
    """``repeats`` orders of ``items``, each rotated by one more: over ``len(items)`` repeats
    every contender runs first (and last) once."""
    return [items[r % len(items):] + items[: r % len(items)] for r in range(repeats)]


def bench_dataset(key: str, chosen: list[Contender], args, log: Path) -> list[dict]:
    """Every chosen contender on one dataset; one row each."""
    config = DATASETS[key]
    repeats = 1 if key == "arts_office" else args.repeats
    with tempfile.TemporaryDirectory(prefix="peers-") as tmp:
        src = Path(tmp) / "input.npz"
        data = prepare(config, args.seed, src)
        print(f"[{key}] {data['n_users']} users x {data['n_items']} items ({data['nnz']} "
              f"interactions), target {data['target']}: {data['n_target']} items, "
              f"{len(data['users'])} test users", file=sys.stderr)
        rows: dict[int, dict] = {}
        for algo in dict.fromkeys(c.algorithm for c in chosen):
            group = [i for i, c in enumerate(chosen) if c.algorithm == algo]
            for order in rotations(group, repeats):
                for i in order:
                    rows.setdefault(i, {"runs": []})
                    c = chosen[i]
                    python, err = env_python(c.env, log)
                    if c.library == "recbole_cdr":
                        err = recbole_cdr_check(python, err)
                    if err:
                        rows[i]["error"] = err
                        continue
                    need = dense_gib(c, data["n_items"])
                    if need > 0.5 * available_gib():
                        rows[i]["error"] = (f"not run: a dense {data['n_items']:,}² gram and "
                                            f"inverse need ~{need:.0f} GiB")
                        continue
                    print(f"[{key}] {algo} {c.name} ...", file=sys.stderr, flush=True)
                    res = run_child(python, c, src, config, args.seed, args.threads,
                                    args.timeout)
                    if "error" in res:
                        rows[i]["error"] = res["error"]
                    else:
                        rows[i]["runs"].append(res)
        return [summarize(key, chosen[i], rows[i], data, repeats) for i in sorted(rows)]


def summarize(key: str, c: Contender, row: dict, data: dict, repeats: int) -> dict:
    """One table row: medians of the timings, metrics of the first run's lists."""
    out = {"dataset": key, "algorithm": c.algorithm, "contender": c.name, "library": c.library,
           "settings": c.settings, "repeats": len(row["runs"]), "error": row.get("error")}
    runs = row["runs"]
    if not runs:
        return out
    top = runs[0]["top"]
    ours = crossrec_metrics(top, data["truth"])
    ext = ranx_metrics(top, data["truth"], data["users"])
    out.update({
        "fit_s": float(np.median([r["fit_s"] for r in runs])),
        "eval_s": float(np.median([r["eval_s"] for r in runs])),
        "rss_mib": float(max(r["rss_mib"] for r in runs)),
        "ndcg@10": ours[f"ndcg@{K}"], "recall@10": ours[f"recall@{K}"],
        "ranx_ndcg@10": ext and ext[f"ndcg@{K}"], "ranx_recall@10": ext and ext[f"recall@{K}"],
        "max_abs_diff": ext and max(abs(ours[m] - ext[m]) for m in ours),
    })
    evaluator = runs[0]["info"].get("evaluator")
    if evaluator:  # crossrec's own evaluator ranked by itself: must give the same figures
        out["evaluator_diff"] = max(abs(evaluator[m] - ours[m]) for m in evaluator)
    return out


def add_ratios(rows: list[dict]) -> None:
    """``ratio``: (fit + eval) over the fastest row of the same dataset and algorithm."""
    for r in rows:
        same = [x["fit_s"] + x["eval_s"] for x in rows if "fit_s" in x
                and (x["dataset"], x["algorithm"]) == (r["dataset"], r["algorithm"])]
        if "fit_s" in r:
            r["ratio"] = (r["fit_s"] + r["eval_s"]) / min(same)


def print_table(rows: list[dict], threads: int) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"peers, {threads} thread(s) each, NDCG/Recall@{K}; ext = ranx")
    for col in ("dataset", "algo", "contender", "settings", "fit s", "eval s", "RSS MiB",
                "NDCG", "Recall", "ext diff", "ratio"):
        table.add_column(col, justify="left" if col in ("dataset", "algo", "contender",
                                                         "settings") else "right")
    for r in rows:
        if "fit_s" not in r:
            table.add_row(r["dataset"], r["algorithm"], r["contender"], r["settings"],
                          f"[red]{r['error']}[/]", *[""] * 6)
            continue
        diff = "n/a" if r["max_abs_diff"] is None else f"{r['max_abs_diff']:.1e}"
        table.add_row(r["dataset"], r["algorithm"], r["contender"], r["settings"],
                      f"{r['fit_s']:.2f}", f"{r['eval_s']:.2f}", f"{r['rss_mib']:.0f}",
                      f"{r['ndcg@10']:.4f}", f"{r['recall@10']:.4f}", diff, f"{r['ratio']:.2f}")
    Console(width=200).print(table)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", default="movielens,arts_office",
                    help=f"comma-separated among {', '.join(DATASETS)}")
    ap.add_argument("--only", default="", help="comma-separated algorithms, libraries or "
                    "library-algorithm pairs, e.g. 'ease,implicit-bpr'")
    ap.add_argument("--repeats", type=int, default=3, help="runs per contender (arts_office: 1)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds per child")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    keys = [k for k in args.datasets.split(",") if k]
    bad = [k for k in keys if k not in DATASETS]
    wanted = {w for w in args.only.split(",") if w}
    chosen = [c for c in contenders(args.threads) if not wanted or wanted & {
        c.algorithm, c.library, c.name, f"{c.library}-{c.algorithm}", f"{c.name}-{c.algorithm}"}]
    if bad or args.repeats < 1 or args.threads < 1 or not chosen:
        what = (f"unknown dataset {bad[0]!r} (known: {', '.join(DATASETS)})" if bad else
                "--repeats and --threads must be >= 1" if args.repeats < 1 or args.threads < 1
                else f"--only {args.only!r} matches no contender")
        print(f"peers.py: {what}", file=sys.stderr)
        return 2
    PEERS_DIR.mkdir(exist_ok=True)
    log = PEERS_DIR / "install.log"
    rows = [r for k in keys for r in bench_dataset(k, chosen, args, log)]
    add_ratios(rows)
    print_table(rows, args.threads)
    if args.json:
        meta = {"date": time.strftime("%Y-%m-%d"), "threads": args.threads, "seed": args.seed,
                "repeats": args.repeats, "cpus": os.cpu_count(), "load_avg": os.getloadavg(),
                "envs": ENVS}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.json.with_suffix(".part")
        tmp.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1, default=float))
        os.replace(tmp, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
