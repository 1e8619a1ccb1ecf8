"""Benchmark reports: a markdown table, the rows as JSON and a bar chart, plus a rich table.

``rows`` everywhere is the seed-aggregated frame with columns ``model, group, metric, k, mean,
std, n_users, seeds`` (optionally ``protocol`` and ``domain``); ``k`` is empty for metrics
without a cut-off. ``domain`` keeps the domain apart from the user group: ``"all"`` marks the
rows pooled over every truth domain, a domain name that domain's rows (next-item evaluation
holds several; ranking one, whose rows are the pooled ones). Rows without ``domain`` are pooled.

A user group whose rows equal those of all users (every test user cold, say) is reported once:
its table and chart panel are not repeated.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
from rich.table import Table

from crossrec.atomic import atomic_file

REQUIRED = ("model", "group", "metric", "k", "mean", "std", "n_users", "seeds")
POOLED = "all"
CHART_PREFERENCE = ("ndcg@10", "recall@10", "hr@10", "mrr@10", "mrr", "auc")


def _label(metric: str, k: Any) -> str:
    return metric if k is None or pd.isna(k) else f"{metric}@{int(k)}"


def _check(rows: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in REQUIRED if c not in rows.columns]
    if missing:
        raise ValueError(f"report rows lack column(s) {missing}; they have {list(rows.columns)}")
    rows = rows.assign(label=[_label(m, k) for m, k in zip(rows["metric"], rows["k"],
                                                           strict=True)])
    if "domain" not in rows.columns:
        rows = rows.assign(domain=POOLED)
    rows["domain"] = rows["domain"].fillna(POOLED).astype(str)
    return rows


def _shown_domains(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows a table shows: pooled plus per domain when there are several domains; with one
    domain its rows alone (they equal the pooled ones), labelled with its name."""
    named = [d for d in dict.fromkeys(rows["domain"]) if d != POOLED]
    if len(named) > 1:
        order = {d: i for i, d in enumerate([POOLED, *named])}
        return rows.sort_values("domain", key=lambda c: c.map(order), kind="stable")
    if len(named) == 1:
        only = rows[rows["domain"] == named[0]]
        return only if len(only) else rows.assign(domain=named[0])
    return rows


def distinct_groups(rows: pd.DataFrame, groups: list[str]) -> tuple[list[str], dict[str, str]]:
    """``groups`` without those whose rows equal the rows of a group listed before them
    (same models, metrics, means and user counts), and ``{dropped: the group it equals}``."""
    rows = _check(rows) if "label" not in rows.columns else rows
    keep: list[str] = []
    same: dict[str, str] = {}
    cols = ["model", "domain", "label", "mean", "n_users"]

    def body(g: str) -> list[tuple]:
        sub = rows[rows["group"] == g][cols]
        return sorted(map(tuple, sub.astype(str).to_numpy().tolist()))

    for g in groups:
        twin = next((k for k in keep if body(k) == body(g)), None)
        if twin is None:
            keep.append(g)
        else:
            same[g] = twin
    return keep, same


def _cell(mean: float, std: float, seeds: int) -> str:
    if mean is None or pd.isna(mean):
        return "–"
    if seeds and int(seeds) > 1 and not pd.isna(std):
        return f"{mean:.4f} ± {std:.4f}"
    return f"{mean:.4f}"


def _wide(rows: pd.DataFrame, index: list[str]) -> tuple[list[str], list[tuple], dict]:
    """Column labels (metric order of appearance, then k), row keys and cell texts."""
    first = {m: i for i, m in enumerate(dict.fromkeys(rows["metric"]))}
    sort_key = {lab: (first[m], math.inf if pd.isna(k) else int(k))
                for lab, m, k in zip(rows["label"], rows["metric"], rows["k"], strict=True)}
    labels = sorted(sort_key, key=sort_key.__getitem__)
    keys = list(dict.fromkeys(map(tuple, rows[index].to_numpy().tolist())))
    cells = {(tuple(r[c] for c in index), r["label"]): _cell(r["mean"], r["std"], r["seeds"])
             for r in rows.to_dict("records")}
    return labels, keys, cells


def _index(rows: pd.DataFrame, *extra: str) -> list[str]:
    """Row keys of a table: the model, the domain when several are shown, then ``extra``."""
    return ["model", *(["domain"] if rows["domain"].nunique() > 1 else []), *extra]


def format_table(rows: pd.DataFrame, *, title: str | None = None,
                 group: str | None = None) -> Table:
    """A rich table: one row per model (per model and domain when several domains are given,
    per group too when several groups are), one column per ``metric@k``; cells are
    ``mean ± std`` over seeds (the mean for one seed).
    """
    rows = _shown_domains(_check(rows))
    if group is not None:
        rows = rows[rows["group"] == group]
    index = _index(rows, *(["group"] if rows["group"].nunique() > 1 else []))
    labels, keys, cells = _wide(rows, index)
    table = Table(title=title)
    for c in index:
        table.add_column(c)
    for lab in labels:
        table.add_column(lab, justify="right")
    table.add_column("users", justify="right")
    users = rows.groupby(index, sort=False)["n_users"].max()
    for key in keys:
        n = users.loc[key if len(key) > 1 else key[0]]
        table.add_row(*map(str, key), *(cells.get((key, lab), "–") for lab in labels),
                      str(int(n)) if not pd.isna(n) else "–")
    return table


def format_long(rows: pd.DataFrame, *, title: str | None = None) -> Table:
    """One model's rows as a narrow rich table: one row per ``metric@k``, one column per
    (domain,) group — readable at 80 columns however many metrics and cut-offs there are."""
    rows = _shown_domains(_check(rows))
    groups, _ = distinct_groups(rows, list(dict.fromkeys(rows["group"])))
    rows = rows[rows["group"].isin(groups)]
    several = rows["domain"].nunique() > 1
    heads = list(dict.fromkeys(zip(rows["domain"], rows["group"], strict=True)))
    labels, _, cells = _wide(rows, ["domain", "group"])
    table = Table(title=title)
    table.add_column("metric")
    for d, g in heads:
        table.add_column(f"{d} {g}" if several else g, justify="right")
    users = rows.groupby(["domain", "group"], sort=False)["n_users"].max()
    for lab in labels:
        table.add_row(lab, *(cells.get(((d, g), lab), "–") for d, g in heads))
    table.add_row("users", *(str(int(users[(d, g)])) for d, g in heads))
    return table


def _markdown(rows: pd.DataFrame, group: str) -> str:
    sub = _shown_domains(rows[rows["group"] == group])
    index = _index(sub)
    labels, keys, cells = _wide(sub, index)
    users = sub.groupby(index, sort=False)["n_users"].max()
    seeds = sub.groupby(index, sort=False)["seeds"].max()
    lines = ["| " + " | ".join(index) + " | " + " | ".join(labels) + " | users | seeds |",
             "|" + "---|" * len(index) + "---:|" * (len(labels) + 2)]
    for key in keys:
        at = key if len(key) > 1 else key[0]
        lines.append("| " + " | ".join(map(str, key)) + " | "
                     + " | ".join(cells.get((key, lab), "–") for lab in labels)
                     + f" | {int(users[at])} | {int(seeds[at])} |")
    return "\n".join(lines)


def _protocol(rows: pd.DataFrame, config: dict, protocol: str | None) -> str:
    if protocol:
        return protocol
    if "protocol" in rows.columns and rows["protocol"].notna().any():
        return ", ".join(map(str, rows["protocol"].dropna().unique()))
    return str(config.get("protocol") or config.get("eval", {}).get("protocol") or "unspecified")


def _explain(protocol: str) -> str:
    if protocol == "full":
        return " (every item of the domain ranked; items known from training masked)"
    if protocol.startswith("sampled-"):
        n = protocol.split("-", 1)[1]
        return (f" (each held-out item ranked against {n} sampled negatives; not comparable "
                "with full-ranking figures)")
    return ""



def _tests_markdown(tests: pd.DataFrame) -> str:
    """Paired tests as a markdown table; ``mean_diff`` is ``best - other`` on the same users."""
    lines = ["| best | other | mean diff (best − other) | p (Wilcoxon) | p (t-test) | users |",
             "|---|---|---:|---:|---:|---:|"]
    for r in tests.to_dict("records"):
        lines.append(f"| {r['best']} | {r['other']} | {r['mean_diff']:+.4f} | "
                     f"{r['p_wilcoxon']:.2g} | {r['p_ttest']:.2g} | {int(r['n'])} |")
    return "\n".join(lines)


def _clean(x: Any) -> Any:
    """JSON-safe: NaN / NA -> None, numpy scalars -> Python."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    if hasattr(x, "item") and not isinstance(x, str | bytes):
        try:
            x = x.item()
        except (ValueError, TypeError):
            return str(x)
    if x is pd.NA or (isinstance(x, float) and math.isnan(x)):
        return None
    return x


def write_report(
    rows: pd.DataFrame, out_dir: Path, *, title: str, command: str, config: dict,
    group: str | None = None, protocol: str | None = None,
    tests: dict[str, pd.DataFrame] | None = None,
) -> Path:
    """Write ``report.md``, ``results.json`` and ``metrics.png`` into ``out_dir`` (atomically).

    Args:
        rows: seed-aggregated rows (see the module docstring).
        out_dir: created if missing.
        title: heading of the report.
        command: the command that produced it (shown verbatim).
        config: resolved configuration, stored in ``results.json``.
        group: the user group of the main table (default ``config["eval"]["report_group"]``,
            else "all"); the other groups get their own tables below it.
        protocol: evaluation protocol label (default: ``rows["protocol"]``, else
            ``config["protocol"]``).
        tests: paired significance tests to list, by heading (frames with columns ``best,
            other, mean_diff, p_wilcoxon, p_ttest, n``, as from ``paired_test``).

    Returns:
        The path of ``report.md``.
    """
    rows = _check(rows)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    group = group or config.get("eval", {}).get("report_group") or "all"
    present = [g for g in dict.fromkeys([group, "all", "cold", "warm"])
               if (rows["group"] == g).any()]
    groups, same = distinct_groups(rows, present)
    label = _protocol(rows, config, protocol)
    md = [f"# {title}", "", f"Protocol: **{label}**{_explain(label)}", "", "Command:", "",
          "```", command, "```", ""]
    for g in groups:
        twins = [k for k, v in same.items() if v == g]
        md += [f"## {g} users" + (" (main)" if g == group else ""), ""]
        if twins:
            md += [f"(The same users as {' and '.join(twins)} users: every figure is equal.)",
                   ""]
        md += [_markdown(rows, g), ""]
    for heading, frame in (tests or {}).items():
        if len(frame):
            md += [f"## Paired tests: {heading}", "", _tests_markdown(frame), ""]
    md += ["Cells are mean ± std over seeds; `all` in the domain column pools every domain. "
           "Rows: `results.json` (`rows` pooled, `domain_rows` per domain). Chart: "
           "`metrics.png`.", ""]
    pooled = rows["domain"] == POOLED
    payload = {"title": title, "protocol": label, "command": command,
               "rows": _clean(rows[pooled].drop(columns="label").to_dict("records")),
               "domain_rows": _clean(rows[~pooled].drop(columns="label").to_dict("records")),
               "config": _clean(config)}
    atomic_file(out_dir / "results.json",
            lambda p: p.write_text(json.dumps(payload, indent=2, default=str)))
    atomic_file(out_dir / "metrics.png", lambda p: _chart(rows, groups, same, title, label, p))
    path = out_dir / "report.md"
    atomic_file(path, lambda p: p.write_text("\n".join(md)))
    return path


def _chart(rows: pd.DataFrame, groups: list[str], same: dict[str, str], title: str,
           protocol: str, path: Path) -> None:
    """Bars per model, one panel per distinct user group, std as error bars: up to two
    headline metrics, or with several domains the first one pooled and per domain."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = _shown_domains(rows)
    present = list(dict.fromkeys(rows["label"]))
    chosen = [m for m in CHART_PREFERENCE if m in present][:2] or present[:2]
    domains = list(dict.fromkeys(rows["domain"]))
    ticks = ([(chosen[0], d) for d in domains] if len(domains) > 1
             else [(m, domains[0]) for m in chosen])
    names = [f"{m}\n{d}" if len(domains) > 1 else m for m, d in ticks]
    models = list(dict.fromkeys(rows["model"]))
    order = [g for g in ("cold", "warm", "all") if g in groups] or groups
    fig, axes = plt.subplots(1, max(1, len(order)),
                             figsize=(max(4.5, 1.5 * len(ticks)) * max(1, len(order)), 4),
                             squeeze=False)
    width = 0.8 / max(1, len(models))
    for ax, g in zip(axes[0], order, strict=False):
        sub = rows[rows["group"] == g].set_index(["model", "label", "domain"])
        for i, model in enumerate(models):
            means = [sub["mean"].get((model, m, d), float("nan")) for m, d in ticks]
            stds = [sub["std"].get((model, m, d), 0.0) for m, d in ticks]
            xs = [j + (i - (len(models) - 1) / 2) * width for j in range(len(ticks))]
            ax.bar(xs, means, width, yerr=[0.0 if pd.isna(s) else s for s in stds],
                   capsize=3, label=model)
        ax.set_xticks(range(len(ticks)), names)
        twins = [k for k, v in same.items() if v == g]
        ax.set_title(f"{g} users" + (f" (= {', '.join(twins)})" if twins else ""))
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel(f"mean over seeds ({protocol})")
    axes[0][-1].legend(fontsize="small")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=110)
    plt.close(fig)
