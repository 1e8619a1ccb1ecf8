"""Ranker ablation: the full ranker, without its text features, without each candidate source.

Run: ``OMP_NUM_THREADS=2 python benchmarks/ranker_ablation.py CONFIG [--ranker LABEL]
[--baseline LABEL] [--seeds 0,1,2] [--set key=value ...] [--out DIR] [--json PATH]``.

CONFIG is a benchmark config with a ``ranker`` model table (``--ranker``: its label; default
the first ranker) and a baseline table (``--baseline``, default ``ease(all)``). For every seed
the config's split is drawn once and every variant is fitted on its training part
(sources shared between variants: each is fitted once per data) and scored once on the test
users (``eval.part``):

- ``full``: the table as written;
- ``text off``: every text feature group off and every text-model source removed;
- ``without source <label>``: one candidate source removed (its features go with it);
- ``--variant NAME=JSON``: the table updated with a JSON object (compare settings with
  ``--part valid``, or read the ``valid`` column of ``--also-valid``: settings are chosen on
  validation users, never on the test users).

Prints, per variant, the headline metric (mean ± std over seeds), its ratio to ``full`` and to
the baseline, the paired Wilcoxon p-values against ``full`` and against the baseline (one pair
per (seed, user)), the
candidate recall on the test truth (share of truth items inside the union: the ranker's
ceiling) and the fit seconds; then the full ranker's LightGBM gain importance per feature
(mean over seeds), also drawn to ``OUT/ranker_importance.png``.
Every variant's per-user metrics go to ``OUT/per_user.parquet`` (column ``variant``), so
any two variants can be paired-tested afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from rich.console import Console
from rich.table import Table

TEXT_MODELS = {"text_zero_shot", "text_transfer", "hybrid", "text2cf", "distill"}


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("config", type=Path)
    p.add_argument("--ranker", default=None)
    p.add_argument("--baseline", default="ease(all)")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--set", action="append", default=[], dest="overrides")
    p.add_argument("--only", default=None, help="comma-separated variant names")
    p.add_argument("--variant", action="append", default=[], metavar="NAME=JSON",
                   help="an extra variant: the ranker table updated with a JSON object")
    p.add_argument("--part", choices=["valid", "test"], default=None,
                   help="score valid users (to compare settings) instead of eval.part")
    p.add_argument("--also-valid", action="store_true",
                   help="also score the validation users (a 'valid' column: choose variants "
                        "by it, read the test columns)")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--json", type=Path, default=None)
    return p.parse_args()


def variants(spec: dict) -> dict[str, dict]:
    """Variant label -> ranker table."""
    from crossrec.models.ranker.candidates import source_label
    from crossrec.models.ranker.features import DEFAULT_GROUPS, TEXT_GROUPS

    groups = spec.get("features", list(DEFAULT_GROUPS))
    out = {"full": spec}
    out["text off"] = {**spec, "features": [g for g in groups if g not in TEXT_GROUPS],
                      "candidates": [c for c in spec["candidates"]
                                     if c["name"] not in TEXT_MODELS]}
    if len(spec["candidates"]) > 1:
        for i, c in enumerate(spec["candidates"]):
            rest = spec["candidates"][:i] + spec["candidates"][i + 1:]
            out[f"without source {source_label(c)}"] = {**spec, "candidates": rest}
    return out


def candidate_recall(model, split, part: str) -> float:  # noqa: ANN001
    """Share of ``part``'s truth rows (target domain) inside the model's candidate union."""
    from crossrec.models.base import Query

    truth = split.truth(part)
    start = split.train.domain_items(split.target).start
    users = np.unique(truth["user"].to_numpy())
    hit = 0
    for a in range(0, len(users), 256):
        batch = users[a:a + 256]
        c = model.union(Query(torch.from_numpy(batch.astype(np.int64))), split.target)
        inside = set(zip(batch[c.rows].tolist(), c.items.tolist(), strict=True))
        t = truth[np.isin(truth["user"].to_numpy(), batch)]
        hit += sum((u, i - start) in inside for u, i in zip(t["user"], t["item"], strict=True))
    return hit / max(len(truth), 1)


def main() -> int:
    from crossrec.config import load_config
    from crossrec.eval.run import run as evaluate
    from crossrec.eval.significance import paired_test
    from crossrec.experiment import fit_options, load_dataset, make_split
    from crossrec.models import build_model, model_label
    from crossrec.models.ranker.candidates import fit_sources, shared_sources

    args = parse()
    console = Console()
    cfg = load_config(args.config, args.overrides)
    specs = {model_label(s): s for s in cfg.model_specs()}
    label = args.ranker or next(k for k, s in specs.items() if s["name"] == "ranker")
    ranker_spec = {k: v for k, v in specs[label].items() if k != "label"}
    todo = variants(ranker_spec)
    if args.only:
        todo = {k: v for k, v in todo.items() if k in args.only.split(",") or k == "full"}
    for item in args.variant:  # always kept
        name, _, text = item.partition("=")
        todo[name] = {**ranker_spec, **json.loads(text)}
    base_spec = specs.get(args.baseline)
    seeds = [int(s) for s in args.seeds.split(",")]
    out = args.out or Path("runs") / f"ranker-ablation-{cfg.name}"
    out.mkdir(parents=True, exist_ok=True)
    metric, group = "ndcg@10", cfg.eval.report_group
    part = args.part or cfg.eval.part
    dataset = load_dataset(cfg.data)
    per_user: dict[str, list[pd.DataFrame]] = {}
    rows: dict[str, dict[str, list[float]]] = {}
    importance: list[dict[str, float]] = []
    for seed in seeds:
        split = make_split(dataset, cfg.split, seed)
        options = fit_options(cfg, split, seed, progress=False)
        with shared_sources():
            names = ([args.baseline] if base_spec else []) + list(todo)
            if seed % 2:  # alternate the order of the contenders between seeds
                names = names[::-1]
            for name in names:
                start = time.perf_counter()
                if name == args.baseline:
                    model = fit_sources([base_spec], split.train, options)[0]
                else:
                    model = build_model({"name": "ranker", **todo[name]})
                    model.fit(split.train, options)
                seconds = time.perf_counter() - start
                res = evaluate(model, split, cfg.eval, part=part, seed=seed)
                value = res.value(metric, group=group)
                pu = res.per_user
                pu = pu[pu["group"] == group] if group != "all" else pu
                per_user.setdefault(name, []).append(pu.assign(user=pu["user"] + seed * 10**8))
                r = rows.setdefault(name, {"value": [], "recall": [], "fit_s": [], "valid": []})
                r["value"].append(value)
                if args.also_valid and part != "valid":
                    r["valid"].append(evaluate(model, split, cfg.eval, part="valid",
                                               seed=seed).value(metric, group=group))
                r["fit_s"].append(seconds)
                if name != args.baseline:
                    r["recall"].append(candidate_recall(model, split, part))
                    if name == "full":
                        importance.append(model.importance())
                console.print(f"seed {seed}  {name:<28} {metric}={value:.4f}  "
                              f"fit {seconds:.0f}s  load {os.getloadavg()[0]:.1f}",
                              highlight=False)
    pd.concat([df.assign(variant=name) for name, dfs in per_user.items() for df in dfs]
              ).to_parquet(out / "per_user.parquet")  # for paired tests between any two variants
    full_pu = pd.concat(per_user["full"])
    full = float(np.mean(rows["full"]["value"]))
    base = float(np.mean(rows[args.baseline]["value"])) if base_spec else float("nan")
    table = Table(title=f"{cfg.name}: ranker ablation, {metric} ({group} {part} users), "
                        f"seeds {args.seeds}")
    base_pu = pd.concat(per_user[args.baseline]) if base_spec else None
    for col in ("variant", metric, "vs full", "vs " + args.baseline, "p vs full",
                "p vs " + args.baseline, "cand. recall", "fit s", "valid " + metric):
        table.add_column(col, justify="left" if col == "variant" else "right")
    summary = {}
    for name, r in rows.items():
        mean, std = float(np.mean(r["value"])), float(np.std(r["value"], ddof=1)
                                                      if len(r["value"]) > 1 else 0.0)
        p = (paired_test(full_pu, pd.concat(per_user[name]), metric)["p_wilcoxon"]
             if name != "full" else float("nan"))
        pb = (paired_test(pd.concat(per_user[name]), base_pu, metric)["p_wilcoxon"]
              if base_pu is not None and name != args.baseline else float("nan"))
        rec = float(np.mean(r["recall"])) if r["recall"] else float("nan")
        summary[name] = {"mean": mean, "std": std, "values": r["value"], "p_vs_full": p,
                         "p_vs_baseline": pb, "candidate_recall": rec,
                         "fit_s": float(np.mean(r["fit_s"])),
                         "valid_mean": float(np.mean(r["valid"])) if r["valid"] else None,
                         "valid_values": r["valid"]}
        table.add_row(name, f"{mean:.4f} ± {std:.4f}", f"{mean / full:.3f}",
                      f"{mean / base:.3f}", "" if name == "full" else f"{p:.2g}",
                      "" if np.isnan(pb) else f"{pb:.2g}",
                      "" if np.isnan(rec) else f"{rec:.3f}", f"{np.mean(r['fit_s']):.0f}",
                      f"{np.mean(r['valid']):.4f}" if r["valid"] else "")
    console.print(table)
    gain = pd.DataFrame(importance).mean().sort_values(ascending=False)
    imp = Table(title="full ranker: LightGBM gain importance (share, mean over seeds)")
    imp.add_column("feature")
    imp.add_column("gain", justify="right")
    for f, g in gain.head(20).items():
        imp.add_row(f, f"{g:.3f}")
    console.print(imp)
    plot(out / "ranker_importance.png", gain.head(25), f"{cfg.name}: ranker feature gain")
    console.print(f"plot: {out / 'ranker_importance.png'}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "config": str(args.config), "metric": metric, "group": group, "part": part,
            "seeds": seeds,
            "baseline": args.baseline, "variants": summary,
            "importance": {k: float(v) for k, v in gain.items()}}, indent=2))
    return 0


def plot(path: Path, gain: pd.Series, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 0.28 * len(gain) + 1.2))
    ax.barh(list(gain.index)[::-1], list(gain.to_numpy())[::-1], color="#3b6ea5")
    ax.set_xlabel("share of total gain")
    ax.set_title(title, fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)


if __name__ == "__main__":
    sys.exit(main())
