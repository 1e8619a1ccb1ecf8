"""Merge the JSON rows of benchmark runs made separately (e.g. one seed per process) into one
markdown table of mean ± std over seeds.

    python benchmarks/merge_seeds.py runs/a.json runs/s0.json runs/s1.json runs/s2.json \\
        --columns hr@1,hr@5,hr@10,hr@20,mrr,ndcg@5,ndcg@10,ndcg@20

Rows of a model found in one file keep that file's mean and std; a model found in several
files (one seed each) gets the mean and the sample standard deviation of its per-file values.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from collections import defaultdict
from pathlib import Path


def _label(metric: str, k: object) -> str:
    return metric if k is None or (isinstance(k, float) and math.isnan(k)) else f"{metric}@{k}"


def merge(paths: list[Path], group: str = "all") -> dict[str, dict[str, tuple[float, float, int]]]:
    """``{model: {metric@k: (mean, std, seeds)}}`` over the files ``paths``."""
    found: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for path in paths:
        for row in json.loads(path.read_text())["rows"]:
            if row["group"] == group:
                found[(row["model"], _label(row["metric"], row["k"]))].append(row)
    out: dict[str, dict[str, tuple[float, float, int]]] = defaultdict(dict)
    for (model, label), rows in found.items():
        if len(rows) == 1:
            r = rows[0]
            out[model][label] = (r["mean"], r["std"] or 0.0, int(r["seeds"]))
        else:
            values = [r["mean"] for r in rows]
            out[model][label] = (statistics.fmean(values), statistics.stdev(values),
                                 sum(int(r["seeds"]) for r in rows))
    return out


def markdown(table: dict[str, dict[str, tuple[float, float, int]]], columns: list[str]) -> str:
    """One row per model, one column per ``metric@k``; ``mean ± std`` when seeds > 1."""
    lines = ["| model | " + " | ".join(columns) + " | seeds |",
             "|---|" + "---:|" * (len(columns) + 1)]
    for model, cells in table.items():
        seeds = max((c[2] for c in cells.values()), default=0)
        text = []
        for col in columns:
            if col not in cells:
                text.append("–")
                continue
            mean, std, n = cells[col]
            text.append(f"{mean:.4f} ± {std:.4f}" if n > 1 else f"{mean:.4f}")
        lines.append(f"| {model} | " + " | ".join(text) + f" | {seeds} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=Path, help="JSON written by benchmark --json")
    parser.add_argument("--columns", required=True, help="comma-separated metric@k labels")
    parser.add_argument("--group", default="all", help="user group (all / cold / warm)")
    args = parser.parse_args()
    for path in args.files:
        if not path.exists():
            parser.error(f"{path} does not exist")
    print(markdown(merge(args.files, args.group), args.columns.split(",")))


if __name__ == "__main__":
    main()
