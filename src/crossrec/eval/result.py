"""EvalResult: per-user (or per-case) metric rows plus their summary by user group."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

GROUPS = ("all", "cold", "warm")
ID_COLUMNS = ("user", "item", "domain", "group", "n_truth", "rating", "pred")
SUMMARY_COLUMNS = ["group", "metric", "k", "value", "n_users", "n_cases"]
POOLED = "all"
"""The ``domain`` of the rows pooled over every domain (``EvalResult.by_domain``)."""


def parse_metric(column: str) -> tuple[str, int | None]:
    """``"ndcg@10"`` -> ``("ndcg", 10)``; ``"auc"`` -> ``("auc", None)``."""
    name, sep, k = column.partition("@")
    return (name, int(k)) if sep else (name, None)


def metric_columns(frame: pd.DataFrame) -> list[str]:
    """The metric columns of a per-user frame (everything but ids, group and counts)."""
    return [c for c in frame.columns if c not in ID_COLUMNS]


def summarize(per_user: pd.DataFrame) -> pd.DataFrame:
    """Mean of each metric column over the users of each group ("all", "cold", "warm").

    Rows where a metric is NaN (undefined, e.g. AUC of a user without negatives) are left out
    of that metric's mean and counts; a group without users is omitted. A ``mse`` column is
    summarised as ``rmse`` (square root of the mean), the figure rating papers report.

    Returns:
        Columns ``group, metric, k, value, n_users, n_cases``; ``k`` is a nullable integer
        (``<NA>`` for metrics without a cut-off such as ``auc``, ``mrr`` (sampled), ``mae``);
        ``n_cases`` equals ``n_users`` except in sampled / rating mode, where rows are cases.
    """
    rows: list[dict[str, Any]] = []
    groups = per_user["group"].to_numpy() if "group" in per_user else None
    for group in GROUPS:
        sel = np.ones(len(per_user), bool) if group == "all" else groups == group
        if groups is None and group != "all":
            continue
        if not sel.any():
            continue
        part = per_user[sel]
        for col in metric_columns(part):
            values = part[col].to_numpy(dtype=np.float64)
            ok = ~np.isnan(values)
            if not ok.any():
                continue
            name, k = parse_metric(col)
            value = float(values[ok].mean())
            if name == "mse":
                name, value = "rmse", math.sqrt(value)
            rows.append({
                "group": group, "metric": name, "k": k, "value": value,
                "n_users": int(np.unique(part["user"].to_numpy()[ok]).size),
                "n_cases": int(ok.sum()),
            })
    out = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    out["k"] = out["k"].astype("Int64")
    return out


def summarize_by_domain(per_user: pd.DataFrame, domain: str | None = None) -> pd.DataFrame:
    """``summarize`` pooled (``domain = "all"``) and per truth domain, in one frame.

    ``per_user`` rows carry their domain in a ``domain`` column (next-item cases); a frame
    without one is all of ``domain`` (ranking: the one domain ranked). With a single domain
    its rows equal the pooled ones and are the only rows (``domain`` = its name).

    Returns:
        ``SUMMARY_COLUMNS`` with ``domain`` first; pooled rows first, then per domain in order
        of appearance.
    """
    if "domain" not in per_user.columns:
        return summarize(per_user).assign(domain=domain or POOLED)[["domain",
                                                                    *SUMMARY_COLUMNS]]
    names = list(dict.fromkeys(per_user["domain"].to_numpy().tolist()))
    if len(names) == 1:
        return summarize(per_user).assign(domain=names[0])[["domain", *SUMMARY_COLUMNS]]
    parts = [summarize(per_user).assign(domain=POOLED)]
    codes = per_user["domain"].to_numpy()
    parts += [summarize(per_user[codes == d]).assign(domain=d) for d in names]
    out = pd.concat(parts, ignore_index=True)[["domain", *SUMMARY_COLUMNS]]
    out["k"] = out["k"].astype("Int64")
    return out


@dataclass
class EvalResult:
    """The outcome of ``evaluate`` / ``evaluate_ratings``.

    Attributes:
        protocol: ``"full"`` (all items of the domain ranked), ``"sampled-N"`` (the positive
            among N sampled negatives) or ``"ratings"`` (MAE / RMSE).
        domain: the domain that was ranked.
        part: ``"valid"`` or ``"test"``.
        per_user: one row per user (full ranking) or per case (sampled, ratings) with columns
            ``user`` (``item`` for cases), ``group`` ("cold"/"warm"), ``n_truth`` and one column
            per metric (``ndcg@10``, ``auc``, ...).
        summary: ``group, metric, k, value, n_users, n_cases`` for groups "all", "cold",
            "warm" (see ``summarize``).
        params: what was asked for (ks, metrics, batch size, seed, ...).
    """

    protocol: str
    domain: str
    part: str
    per_user: pd.DataFrame
    summary: pd.DataFrame
    params: dict[str, Any] = field(default_factory=dict)

    def value(self, metric: str, k: int | None = None, group: str = "all") -> float:
        """One summary figure: ``value("ndcg", 10)`` or ``value("ndcg@10")``; ``value("auc")``.

        Raises:
            KeyError: the metric, cut-off or group is not in the summary (the message lists
                what is).
        """
        name, at = parse_metric(metric)
        k = at if k is None else k
        s = self.summary
        sel = (s["metric"] == name) & (s["group"] == group)
        sel &= s["k"].isna() if k is None else (s["k"] == k).fillna(False)
        if not sel.any():
            have = sorted({f"{m}@{kk}" if pd.notna(kk) else m
                           for m, kk in zip(s["metric"], s["k"], strict=True)})
            raise KeyError(
                f"no {name}{'' if k is None else f'@{k}'} for group {group!r} in this "
                f"{self.protocol} result; available: {', '.join(have) or 'nothing'} "
                f"(groups: {', '.join(s['group'].unique())})"
            )
        return float(s.loc[sel, "value"].iloc[0])

    @property
    def by_domain(self) -> pd.DataFrame:
        """The summary per truth domain plus the pooled rows (``summarize_by_domain``)."""
        name = self.domain if self.domain not in ("all", "per-case") else None
        return summarize_by_domain(self.per_user, name)

    def to_dict(self, *, per_user: bool = False) -> dict[str, Any]:
        """JSON-ready: protocol, domain, part, params, summary records (and per-user rows)."""
        summary = self.summary.astype({"k": object}).where(self.summary.notna(), None)
        out: dict[str, Any] = {
            "protocol": self.protocol,
            "domain": self.domain,
            "part": self.part,
            "params": self.params,
            "summary": summary.to_dict("records"),
        }
        if per_user:
            out["per_user"] = self.per_user.to_dict("records")
        return out

    def __repr__(self) -> str:
        n = self.summary.query("group == 'all'")["n_users"].max() if len(self.summary) else 0
        return (f"EvalResult(protocol={self.protocol!r}, domain={self.domain!r}, "
                f"part={self.part!r}, users={n}, metrics={metric_columns(self.per_user)})")
