"""DatasetBuilder: raw interaction/item frames -> cleaned, deduplicated, k-cored MultiDomainDataset."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Self

import numpy as np
import pandas as pd

from crossrec.data.dataset import SEP, MultiDomainDataset
from crossrec.data.vocab import Vocabulary
from crossrec.errors import DataError

ITEM_ATTRS = ("title", "text", "categories", "brand")
PARTS = ("train", "valid", "test")


def require_columns(frame: pd.DataFrame, columns: Sequence[str], source: str) -> None:
    """Raise a DataError naming the first missing column and the file it was expected in."""
    for col in columns:
        if col not in frame.columns:
            raise DataError(
                f"{source}: missing column {col!r} (found: {', '.join(map(str, frame.columns))})"
            )


class DatasetBuilder:
    """Collects raw frames from one or more sources, then cleans and indexes them in ``build``.

    Example:
        >>> b = DatasetBuilder("toy")
        >>> _ = b.add_interactions(pd.DataFrame({"user_id": ["a"], "item_id": ["x"]}), domain="books")
        >>> b.build().stats()["interactions"]
        1
    """

    def __init__(self, name: str = "dataset") -> None:
        self.name = name
        self._inter: list[pd.DataFrame] = []
        self._items: list[pd.DataFrame] = []

    def add_interactions(
        self, frame: pd.DataFrame, *, domain: str | None = None, source: str = "<frame>"
    ) -> Self:
        """Add rows with ``user_id, item_id[, domain, rating, timestamp, part]``."""
        need = ["user_id", "item_id"] + ([] if domain is not None else ["domain"])
        require_columns(frame, need, source)
        out = pd.DataFrame(
            {
                "user_id": frame["user_id"].astype(str).to_numpy(),
                "item_id": frame["item_id"].astype(str).to_numpy(),
                "domain": (frame["domain"].astype(str).to_numpy() if domain is None else domain),
            }
        )
        for col, dtype in (("rating", "float32"), ("timestamp", "int64")):
            if col in frame.columns:
                try:
                    out[col] = pd.to_numeric(frame[col], errors="raise").astype(dtype).to_numpy()
                except (ValueError, TypeError) as e:
                    raise DataError(f"{source}: column {col!r} is not numeric ({e})") from None
        if "part" in frame.columns:
            parts = frame["part"].astype(str).str.lower()
            bad = ~parts.isin(PARTS)
            if bad.any():
                raise DataError(
                    f"{source}: column 'part' has value {parts[bad].iloc[0]!r}; "
                    f"expected one of {', '.join(PARTS)}"
                )
            out["part"] = parts.to_numpy()
        self._inter.append(out)
        return self

    def add_items(
        self, frame: pd.DataFrame, *, domain: str | None = None, source: str = "<frame>"
    ) -> Self:
        """Add item rows with ``item_id[, domain, title, text, categories, brand]``."""
        need = ["item_id"] + ([] if domain is not None else ["domain"])
        require_columns(frame, need, source)
        out = pd.DataFrame(
            {
                "item_id": frame["item_id"].astype(str).to_numpy(),
                "domain": (frame["domain"].astype(str).to_numpy() if domain is None else domain),
            }
        )
        for col in ITEM_ATTRS:
            if col in frame.columns:
                out[col] = frame[col].fillna("").astype(str).to_numpy()
        self._items.append(out)
        return self

    def build(
        self,
        *,
        k_core: int = 0,
        dedupe: bool = True,
        domains: Sequence[str] | None = None,
        keep_items_without_interactions: bool = True,
    ) -> MultiDomainDataset:
        """Clean and index everything added so far.

        Args:
            k_core: per-domain k-core: repeatedly drop users with fewer than k interactions in a
                domain (their rows in that domain) and items with fewer than k, until stable.
            dedupe: keep each (user, domain, item) once: the earliest by timestamp, else the first.
            domains: domain order (default: order of first appearance).
            keep_items_without_interactions: keep catalogue items nobody interacted with (they
                are ranked like any other item), unless k-core filtering is on.
        """
        if not self._inter:
            raise DataError(f"dataset {self.name!r}: no interactions were added")
        report: dict = {"steps": []}
        inter = pd.concat(self._inter, ignore_index=True)
        if "timestamp" not in inter.columns:
            inter["timestamp"] = np.zeros(len(inter), dtype=np.int64)
        inter["timestamp"] = inter["timestamp"].fillna(0).astype(np.int64)
        if "rating" not in inter.columns:
            inter["rating"] = np.float32("nan")
        report["raw_interactions"] = len(inter)

        missing = inter["user_id"].isin(["", "nan", "None"]) | inter["item_id"].isin(["", "nan", "None"])
        if missing.any():
            inter = inter[~missing]
            report["steps"].append({"step": "drop rows with empty user_id or item_id",
                                    "dropped": int(missing.sum())})
        if dedupe:
            before = len(inter)
            inter = inter.sort_values("timestamp", kind="stable")
            inter = inter.drop_duplicates(["user_id", "domain", "item_id"], keep="first")
            inter = inter.sort_index()
            report["steps"].append({"step": "duplicate (user, item) kept once (earliest)",
                                    "dropped": before - len(inter)})

        seen = list(dict.fromkeys(inter["domain"].tolist()))
        if domains is None:
            domains = seen
        else:
            domains = list(domains)
            unknown = [d for d in seen if d not in domains]
            if unknown:
                before = len(inter)
                inter = inter[inter["domain"].isin(domains)]
                report["steps"].append({"step": f"rows of domains not asked for {unknown}",
                                        "dropped": before - len(inter)})
        if k_core > 0:
            inter = _k_core(inter, k_core, report)
        for d in domains:
            if not (inter["domain"] == d).any():
                raise DataError(f"dataset {self.name!r}: domain {d!r} has no interactions"
                                + (f" after {k_core}-core filtering" if k_core else ""))

        items = (pd.concat(self._items, ignore_index=True) if self._items
                 else pd.DataFrame(columns=["item_id", "domain"]))
        items = items[items["domain"].isin(domains)].drop_duplicates(["domain", "item_id"])
        used = inter[["domain", "item_id"]].drop_duplicates()
        if keep_items_without_interactions and k_core == 0:
            catalogue = pd.concat([used, items[["domain", "item_id"]]]).drop_duplicates()
        else:
            catalogue = used
        n_unknown_text = len(used.merge(items[["domain", "item_id"]], how="left", indicator=True)
                             .query("_merge == 'left_only'")) if len(items) else len(used)
        if len(items) and n_unknown_text:
            report["items_without_metadata"] = n_unknown_text
        # items grouped by domain, in domain order
        catalogue = catalogue.assign(_d=pd.Categorical(catalogue["domain"], categories=domains))
        catalogue = catalogue.sort_values("_d", kind="stable").drop(columns="_d")
        catalogue = catalogue.merge(items, on=["domain", "item_id"], how="left")
        keys = (catalogue["domain"] + SEP + catalogue["item_id"]).to_numpy()
        item_vocab = Vocabulary(keys, name="item")
        user_vocab = Vocabulary(pd.unique(inter["user_id"]), name="user_id")

        attrs = pd.DataFrame({c: catalogue[c].fillna("").to_numpy()
                              for c in ITEM_ATTRS if c in catalogue.columns})
        if "title" in attrs.columns:
            text = attrs["title"].where(attrs["title"] != "", attrs.get("text", attrs["title"]))
        elif "text" in attrs.columns:
            text = attrs["text"]
        else:
            text = pd.Series([""] * len(catalogue))
        frame = pd.DataFrame({
            "user": user_vocab.index(inter["user_id"].to_numpy()),
            "item": item_vocab.index((inter["domain"] + SEP + inter["item_id"]).to_numpy()),
            "domain": pd.Categorical(inter["domain"], categories=domains).codes.astype(np.int8),
            "rating": inter["rating"].astype(np.float32).to_numpy(),
            "timestamp": inter["timestamp"].to_numpy(dtype=np.int64),
        })
        if "part" in inter.columns:
            frame["part"] = pd.Categorical(inter["part"].fillna("train"), categories=PARTS)
        report["interactions"] = len(frame)
        return MultiDomainDataset(
            name=self.name,
            users=user_vocab,
            items=item_vocab,
            item_domain=pd.Categorical(catalogue["domain"], categories=domains).codes.astype(np.int8),
            item_text=text.astype(str).tolist(),
            domains=tuple(domains),
            interactions=frame,
            item_attrs=attrs,
            report=report,
        )


def _k_core(inter: pd.DataFrame, k: int, report: dict) -> pd.DataFrame:
    """Per-domain k-core on users and items; records how many rows each domain lost."""
    kept = []
    for d, rows in inter.groupby("domain", sort=False):
        u = pd.factorize(rows["user_id"])[0]
        i = pd.factorize(rows["item_id"])[0]
        alive = np.ones(len(rows), dtype=bool)
        while True:
            uc = np.bincount(u[alive], minlength=u.max() + 1)
            ic = np.bincount(i[alive], minlength=i.max() + 1)
            ok = alive & (uc[u] >= k) & (ic[i] >= k)
            if ok.sum() == alive.sum():
                break
            alive = ok
        report["steps"].append({"step": f"{k}-core filter in domain {d!r}",
                                "dropped": int((~alive).sum())})
        kept.append(rows[alive])
    return pd.concat(kept).sort_index()
