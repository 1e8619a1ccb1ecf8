"""Speed of item-text encoding: crossrec's path against a direct sentence-transformers call.

Run: ``python benchmarks/encode_speed.py [--items 3000] [--encoder minilm] [--json out.json]``.

Texts: the first ``--items`` distinct Office item titles of the Arts→Office set (found through
``crossrec.paths.data_dir()``). Figures, in items per second, each the best of ``--repeats``
runs; the contenders run interleaved in every repeat, so that a burst of load on the (shared)
CPU hits them alike (direct and ours swap places every other repeat, so that neither always
runs right after the other):

* direct: ``SentenceTransformer.encode(texts, batch_size, normalize_embeddings=True)``;
* ours: ``crossrec.encoders.encode_items`` into a fresh, empty cache each repeat (hashing,
  cache lookup, length-sorted chunks, Parquet shard writes included) — ``ratio_to_direct``;
* cached: the same call again on the filled cache — ``cache_speedup`` = ours time / cached time;
* every backend of ``--backends`` through ``encode_items`` without a cache: items/s over the
  direct fp32 call and cosine of its vectors to the fp32 vectors. The first backend is
  reported as the accelerated option (``accelerated_*`` keys).

torch and ONNX Runtime use the same number of threads (``torch.get_num_threads()``). Beside
the wall-clock ratios, ``cpu_ratio_to_direct`` compares the CPU time of the process (best of
the repeats): on a machine shared with other jobs it moves much less than wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from crossrec.atomic import atomic_file
from crossrec.config import DataConfig
from crossrec.encoders import BACKENDS, encode_items, item_texts, load_encoder
from crossrec.experiment import load_dataset
from crossrec.paths import data_dir


def titles(n: int, domain: str) -> list[str]:
    """The first ``n`` distinct non-empty item texts of ``domain`` (Arts→Office set)."""
    path = data_dir() / "amazon-arts-office"
    if not path.is_dir():
        sys.exit(f"Arts->Office data not found at {path} (set CROSSREC_DATA)")
    ds = load_dataset(DataConfig(format="arts_office", path=str(path)))
    texts = item_texts(ds, "{text}")
    span = ds.domain_items(domain)
    out = list(dict.fromkeys(t for t in texts[span] if t))[:n]
    if len(out) < n:
        sys.exit(f"only {len(out)} distinct texts in {domain!r}, asked for {n}")
    return out


def timed(fn) -> tuple[float, float, np.ndarray]:  # noqa: ANN001
    """``(wall seconds, CPU seconds of this process, result)`` of ``fn()``."""
    t, c = time.perf_counter(), time.process_time()
    v = fn()
    return time.perf_counter() - t, time.process_time() - c, v


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--items", type=int, default=3000)
    ap.add_argument("--domain", default="office")
    ap.add_argument("--encoder", default="minilm")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--backends", default="onnx-int8,onnx,torch-int8",
                    help="comma-separated; the first is the accelerated option")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    backends = [b for b in args.backends.split(",") if b]
    for b in backends:
        if b not in BACKENDS or b == "torch":
            sys.exit(f"--backends: {b!r} is not an accelerated backend ({', '.join(BACKENDS)})")
    console = Console(width=120)
    texts = titles(args.items, args.domain)
    n, bs = len(texts), args.batch_size
    load_start = os.getloadavg()

    ref = load_encoder(args.encoder)  # torch fp32
    model = ref.model  # the SentenceTransformer itself
    others = {}
    load_s = {}
    for b in backends:
        t = time.perf_counter()
        others[b] = load_encoder(args.encoder, backend=b)  # first load exports (one-off)
        load_s[b] = time.perf_counter() - t
    best: dict[str, float] = {}
    best_cpu: dict[str, float] = {}
    vec: dict[str, np.ndarray] = {}

    def record(name: str, seconds: float, cpu: float, v: np.ndarray) -> None:
        best[name] = min(best.get(name, float("inf")), seconds)
        best_cpu[name] = min(best_cpu.get(name, float("inf")), cpu)
        vec[name] = v

    tmp = Path(tempfile.mkdtemp(prefix="encode-speed-"))
    try:
        for r in range(args.repeats):
            root = tmp / f"cache-{r}"

            def direct() -> None:
                record("direct", *timed(lambda: model.encode(
                    texts, batch_size=bs, normalize_embeddings=True, convert_to_numpy=True,
                    show_progress_bar=False)))

            def ours(root: Path = root) -> None:
                record("ours", *timed(lambda: encode_items(
                    texts, ref, cache=root, batch_size=bs, progress=False)))

            for step in ((direct, ours) if r % 2 == 0 else (ours, direct)):
                step()  # alternate who goes first: no order bias in the best-of
            record("cached", *timed(lambda root=root: encode_items(
                texts, ref, cache=root, batch_size=bs, progress=False)))
            for b, enc in others.items():
                record(b, *timed(lambda enc=enc: encode_items(
                    texts, enc, cache=None, batch_size=bs, progress=False)))
            console.print(f"repeat {r + 1}/{args.repeats}: "
                          + ", ".join(f"{k} {n / s:,.1f}/s" for k, s in best.items()))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    def cos(name: str) -> np.ndarray:
        return (vec[name] * vec["direct"]).sum(1)

    rows = {}
    for name in ["direct", "ours", "cached", *backends]:
        c = cos(name)
        rows[name] = {"items_per_s": n / best[name], "seconds": best[name],
                      "ratio_to_direct": best["direct"] / best[name],
                      "cpu_seconds": best_cpu[name],
                      "cpu_ratio_to_direct": best_cpu["direct"] / best_cpu[name],
                      "mean_cosine": float(c.mean()), "min_cosine": float(c.min())}
    acc = backends[0] if backends else None
    result = {
        "items": n, "encoder": ref.key, "batch_size": bs, "repeats": args.repeats,
        "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
        "load_avg_start": load_start, "load_avg_end": os.getloadavg(),
        "direct_items_per_s": rows["direct"]["items_per_s"],
        "ours_items_per_s": rows["ours"]["items_per_s"],
        "ratio_to_direct": rows["ours"]["ratio_to_direct"],
        "ours_mean_cosine": rows["ours"]["mean_cosine"],
        "cache_first_s": best["ours"], "cache_hit_s": best["cached"],
        "cache_speedup": best["ours"] / best["cached"],
        "accelerated_backend": acc,
        "accelerated_items_per_s": rows[acc]["items_per_s"] if acc else None,
        "accelerated_ratio_to_direct": rows[acc]["ratio_to_direct"] if acc else None,
        "accelerated_mean_cosine": rows[acc]["mean_cosine"] if acc else None,
        "accelerated_min_cosine": rows[acc]["min_cosine"] if acc else None,
        "backend_load_s": load_s, "rows": rows,
    }
    t = Table(title=f"{ref.key}: {n:,} item titles, batch {bs}, "
                    f"{result['threads']} threads, best of {args.repeats}")
    for c in ("path", "items/s", "x direct", "x direct (CPU time)", "mean cos", "min cos"):
        t.add_column(c, justify="left" if c == "path" else "right")
    for name, r in rows.items():
        t.add_row(name, f"{r['items_per_s']:,.1f}", f"{r['ratio_to_direct']:.2f}",
                  f"{r['cpu_ratio_to_direct']:.2f}", f"{r['mean_cosine']:.4f}",
                  f"{r['min_cosine']:.4f}")
    console.print(t)
    console.print(f"load average {load_start[0]:.1f} -> {result['load_avg_end'][0]:.1f}")
    if args.json:
        text = json.dumps(result, indent=2)
        atomic_file(args.json, lambda p: p.write_text(text))
        console.print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
