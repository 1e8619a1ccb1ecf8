"""The last step of `make demo`: one cold user's source history, and the demo's chart.

    python examples/demo.py runs/demo --user 27 --bundle runs/demo/ranker/bundle

Reads ``runs/demo/results.json`` (from ``crossrec benchmark``) and the ``metrics.json`` of every
``crossrec train`` run under ``runs/demo`` (the ranker), draws ``runs/demo/demo.png`` (one
panel per distinct user group: when every test user is cold, the "all" and "cold" groups are
the same users and get one panel), and prints the user's history from the bundle's training
data (everything the model knows about them) beside their top 5 in the target domain, each
with why: the ranker's signals and the history items that co-occur with it ("because you
had ...", ``crossrec.evidence``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from crossrec.bundle import Bundle

METRICS = (("ndcg", 10), ("recall", 10), ("ndcg", 20), ("recall", 20))


def _rows(out: Path) -> pd.DataFrame:
    """Seed-0 rows of the benchmark plus those of each trained run (test part)."""
    rows = pd.DataFrame(json.loads((out / "results.json").read_text())["rows"])
    frames = [rows[["model", "group", "metric", "k", "mean"]]]
    for path in sorted(out.glob("*/metrics.json")):
        test = json.loads(path.read_text())["test"]
        summary = pd.DataFrame(test["summary"])
        label = test.get("label") or path.parent.name
        frames.append(summary.rename(columns={"value": "mean"})
                      .assign(model=label)[["model", "group", "metric", "k", "mean"]])
    return pd.concat(frames, ignore_index=True)


def chart(out: Path) -> Path:
    """One panel per distinct user group; bars per model for the metrics in ``METRICS``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = _rows(out)
    rows = rows[[(m, k) in METRICS for m, k in zip(rows["metric"], rows["k"], strict=True)]]
    groups, seen = [], []
    for g in ("cold", "warm", "all"):
        sub = rows[rows["group"] == g].set_index(["model", "metric", "k"])["mean"].sort_index()
        if len(sub) and not any(sub.equals(s) for s in seen):
            groups.append(g)
            seen.append(sub)
    models = list(dict.fromkeys(rows["model"]))
    fig, axes = plt.subplots(1, len(groups), figsize=(1.5 + 5.5 * len(groups), 4), squeeze=False)
    width = 0.8 / len(models)
    for ax, g, sub in zip(axes[0], groups, seen, strict=True):
        for i, model in enumerate(models):
            xs = [j + (i - (len(models) - 1) / 2) * width for j in range(len(METRICS))]
            ax.bar(xs, [sub.get((model, m, k), float("nan")) for m, k in METRICS], width,
                   label=model)
        ax.set_xticks(range(len(METRICS)), [f"{m}@{k}" for m, k in METRICS])
        n = "all test users are cold" if g != "warm" and len(groups) == 1 else f"{g} users"
        ax.set_title(f"MovieLens-100k Comedy → Drama, {n}", fontsize="medium")
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("test, seed 0, full ranking")
    axes[0][-1].legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    path = out / "demo.png"
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)
    return path


def history(b: Bundle, user: str, limit: int = 12) -> list[str]:
    """The user's training history per domain, newest first: everything the model knows."""
    train = b.train
    u = int(train.users.index([user])[0])
    rows = train.interactions[train.interactions["user"] == u]
    lines = []
    for d, domain in enumerate(train.domains):
        mine = rows[rows["domain"] == d].sort_values("timestamp", ascending=False)
        cold = " (a cold user here)" if not len(mine) else ""
        lines.append(f"{domain}: {len(mine)} films{cold}")
        for item, rating in zip(mine["item"][:limit], mine["rating"][:limit], strict=True):
            stars = "" if pd.isna(rating) else f"  ({rating:.0f}/5)"
            lines.append(f"  - {_short(train.item_text[int(item)])}{stars}")
        if len(mine) > limit:
            lines.append(f"  ... and {len(mine) - limit} more")
    return lines


def recommendations(b: Bundle, user: str, k: int = 5, explain: int = 2) -> list[str]:
    """The user's top ``k`` in the bundle's target domain, each with why: the ranker's own
    signals (its largest positive contributions) and the history items that co-occur with it
    in training ("because you had ...")."""
    (r,) = b.recommend([user], b.target, k, explain=2 * explain)
    basis = {"source_only": "other domains only"}.get(r.basis, r.basis.replace("_", " "))
    lines = [f"{r.domain}: top {k} ({r.strategy}; known from {basis})"]
    titles = b.train.item_text
    for i, (item, score) in enumerate(zip(r.items, r.scores, strict=True), 1):
        lines.append(f"{i}. {_short(titles[int(item)])}  [{score:.3f}]")
        # a source's score and its z-score can give the same sentence: each reason once
        reasons = dict.fromkeys(sig.reason for sig in (r.signals or [[]] * k)[i - 1])
        lines.extend(f"     why: {reason}" for reason in list(reasons)[:explain])
        evidence = (r.because or [[]] * k)[i - 1][:explain]
        if evidence:
            idx = [int(b.train.item_index(e.domain, [e.item_id])[0]) for e in evidence]
            had = ", ".join(f"{_short(titles[j], 30)} ({e.domain}, {e.weight:.2f})"
                            for j, e in zip(idx, evidence, strict=True))
            lines.append(f"     because you had: {had}")
    return lines


def _short(text: str, n: int = 45) -> str:
    return text if len(text) <= n else text[:n - 3] + "..."


def side_by_side(b: Bundle, user: str) -> None:
    """The cold user's history beside their target recommendations, with the evidence."""
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"user {user}: what the model knows, and what it recommends in {b.target}")
    t.add_column("training history (newest first)", vertical="top")
    t.add_column(f"{b.target} recommendations, and why", vertical="top")
    t.add_row("\n".join(history(b, user)), "\n".join(recommendations(b, user)))
    Console(width=160, highlight=False).print(t, markup=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="the demo's report directory (runs/demo)")
    ap.add_argument("--user", required=True, help="raw user id of a cold test user")
    ap.add_argument("--bundle", type=Path, required=True, help="a bundle trained on the split")
    args = ap.parse_args()
    from crossrec.bundle import Bundle
    from crossrec.threads import configure

    configure()  # as the crossrec command does: threads from the idle CPUs (or the env)
    side_by_side(Bundle.load(args.bundle), args.user)
    print(f"\nthe same top 5 from the command line: crossrec recommend {args.bundle} "
          f"--user {args.user} -k 5")
    print(f"chart: {chart(args.out)}   report: {args.out / 'report.md'}")


if __name__ == "__main__":
    main()
