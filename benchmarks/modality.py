"""Another modality in text_transfer on synthetic data where the text is no guide.

Run: ``python benchmarks/modality.py [--seeds 0,1,2] [--text-noise 1.0] [--json PATH]``.

Data: ``crossrec.testing.make_two_domain(text_noise=...)`` — with ``text_noise = 1`` every
item title carries the theme words of another cluster than the one its users come from, so
the text vectors carry no signal; the "other modality" is a vector file with each item's
cluster centre plus noise (what an image encoder would give if images showed the cluster).
Cold-start target users (ratio 0.3), the deterministic hashing test encoder (no model
download). For each seed: text_transfer on text alone, and with the vector file fused by
``concat`` and by ``gated`` (30 adaptation epochs each), Recall@10 and NDCG@10 of the cold test
users (full ranking), and popularity for reference. Prints mean +/- std over seeds.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from crossrec.data.split import cold_start_users
from crossrec.eval.ranking import evaluate
from crossrec.models.base import FitOptions
from crossrec.models.baselines import Pop
from crossrec.models.cross.text_transfer import TextTransfer
from crossrec.testing import make_two_domain
from crossrec.testing.text import hashing_encoder

CONFIG = {"encoder": "hashing", "embedding_size": 16, "n_experts": 2, "max_seq_len": 16,
          "n_layers": 1, "pretrain_epochs": 2, "epochs": 30, "n_negatives": 32,
          "batch_size": 64, "pretrain_batch_size": 64, "learning_rate": 3e-2,
          "pretrain_learning_rate": 1e-2, "dropout": 0.0, "adapter_dropout": 0.0,
          "adapt_negatives": 0}


def cluster_vectors(data, path: Path, seed: int, dim: int = 8, noise: float = 0.3) -> Path:
    rng = np.random.default_rng([seed, 7])
    clusters = np.asarray(data.report["synthetic"]["item_cluster"])
    centres = rng.normal(size=(clusters.max() + 1, dim))
    vectors = centres[clusters] + noise * rng.normal(size=(len(clusters), dim))
    pd.DataFrame({"domain": np.asarray(data.domains, dtype=object)[data.item_domain],
                  "item_id": data.item_ids(np.arange(data.n_items)),
                  "vector": list(vectors.astype(np.float32))}).to_parquet(path)
    return path


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--text-noise", type=float, default=1.0)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    rows: dict[str, list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp, hashing_encoder(64, cache_dir=Path(tmp)):
        for seed in seeds:
            data = make_two_domain(text_noise=args.text_noise, seed=seed)
            split = cold_start_users(data, "source", "target", 0.3, seed=seed)
            options = FitOptions(target="target", sources=("source",), seed=seed,
                                 progress=False)
            path = cluster_vectors(data, Path(tmp) / f"v{seed}.parquet", seed)
            models = {"pop": Pop(), "text_transfer (text only)": TextTransfer(CONFIG)}
            for fusion in ("concat", "gated"):
                models[f"text_transfer + vectors ({fusion})"] = TextTransfer(
                    {**CONFIG, "modality_file": str(path), "modality_fusion": fusion})
            for label, model in models.items():
                model.fit(split.train, options)
                res = evaluate(model, split, ks=(10,))
                rows.setdefault(label, []).append((res.value("recall@10"),
                                                   res.value("ndcg@10")))
    table = Table(title=f"cold-start target users, text_noise={args.text_noise}, "
                        f"{len(seeds)} seeds")
    for col in ("model", "recall@10", "ndcg@10"):
        table.add_column(col, justify="left" if col == "model" else "right")
    summary = {}
    for label, values in rows.items():
        v = np.asarray(values)
        summary[label] = {"recall@10": [float(v[:, 0].mean()), float(v[:, 0].std(ddof=1))],
                          "ndcg@10": [float(v[:, 1].mean()), float(v[:, 1].std(ddof=1))]}
        table.add_row(label, *(f"{v[:, j].mean():.3f} ± {v[:, j].std(ddof=1):.3f}"
                               for j in (0, 1)))
    Console().print(table)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"seeds": seeds, "text_noise": args.text_noise,
                                         "models": summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
