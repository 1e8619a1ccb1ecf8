"""DatasetBuilder: raw interaction/item frames -> cleaned, deduplicated, k-cored dataset."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Self

import numpy as np
import pandas as pd
from pandas.api.types import union_categoricals

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
        >>> frame = pd.DataFrame({"user_id": ["a"], "item_id": ["x"]})
        >>> _ = b.add_interactions(frame, domain="books")
        >>> b.build().stats()["interactions"]
        1
    """

    def __init__(self, name: str = "dataset") -> None:
        self.name = name
        self._inter: list[pd.DataFrame] = []
        self._items: list[pd.DataFrame] = []
        self._item_where: list[Callable[[int], str]] = []  # per items frame: row -> place
        self._dropped: list[dict] = []  # rows a reader dropped before build (report steps)

    def note_dropped(self, step: str, dropped: int) -> Self:
        """Record rows a reader dropped (a genre rule, bad rows), for the cleaning report."""
        if dropped:
            self._dropped.append({"step": step, "dropped": int(dropped)})
        return self

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
                "domain": _domain_column(frame, domain),
            }
        )
        for col, dtype in (("rating", "float32"), ("timestamp", "int64")):
            if col in frame.columns:
                try:
                    values = pd.to_numeric(frame[col], errors="raise").to_numpy(np.float64)
                except (ValueError, TypeError) as e:
                    raise DataError(f"{source}: column {col!r} is not numeric ({e})") from None
                wild = np.isinf(values)
                if col == "timestamp":
                    wild |= np.abs(np.nan_to_num(values)) >= 2.0**63
                if wild.any():
                    row = int(np.flatnonzero(wild)[0])
                    raise DataError(f"{source}, row {row + 1}: {col} {float(values[row])!r} is "
                                    + ("not a finite number" if col == "rating" else
                                       "out of range (a time must be a finite number that "
                                       "fits in 64 bits)"))
                if col == "timestamp":
                    values = np.nan_to_num(values, nan=0.0)
                out[col] = values.astype(dtype)
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
        self,
        frame: pd.DataFrame,
        *,
        domain: str | None = None,
        source: str = "<frame>",
        where: Callable[[int], str] | None = None,
    ) -> Self:
        """Add item rows with ``item_id[, domain, title, text, categories, brand]``.

        ``where(row)`` names the place of a row in errors (e.g. ``"items.csv, line 3"``).
        """
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
        out["_src"] = len(self._item_where)
        out["_row"] = np.arange(len(out))
        self._item_where.append(where or (lambda row, s=source: f"{s}, row {row + 1}"))
        self._items.append(out)
        return self

    def build(
        self,
        *,
        k_core: int = 0,
        dedupe: bool = True,
        domains: Sequence[str] | None = None,
        keep_items_without_interactions: bool = True,
        drop_bad_rows: bool = False,
    ) -> MultiDomainDataset:
        """Clean and index everything added so far.

        Args:
            k_core: per-domain k-core: repeatedly drop users with fewer than k interactions in a
                domain (their rows in that domain) and items with fewer than k, until stable.
            dedupe: keep each (user, domain, item) once: the earliest by timestamp, else the first.
            domains: domain order (default: order of first appearance).
            keep_items_without_interactions: keep catalogue items nobody interacted with (they
                are ranked like any other item), unless k-core filtering is on.
            drop_bad_rows: drop item rows that put an item in another domain than all of its
                interactions (counted in the report) instead of raising a DataError.
        """
        if not self._inter:
            raise DataError(f"dataset {self.name!r}: no interactions were added")
        report: dict = {"steps": list(self._dropped)}
        # Everything below works on integer codes: string ids are hashed once (factorize), so
        # 10 M rows build in seconds and without a copy of the strings per step.
        raw = _concat(self._inter)
        user_code, user_uniq = _factorize(raw.user_id)
        item_code, item_uniq = _factorize(raw.item_id)
        raw.user_id = raw.item_id = None  # the strings are in the uniques now
        dom_code, dom_uniq = raw.domain.codes, np.asarray(raw.domain.categories, dtype=object)
        # one code per (domain, item_id): the item key
        n_item_ids = max(1, len(item_uniq))
        key_code, key_uniq = _factorize(dom_code.astype(np.int64) * n_item_ids + item_code)
        key_dom, key_item = np.divmod(key_uniq, n_item_ids)
        n = len(user_code)
        report["raw_interactions"] = n
        keep = np.ones(n, dtype=bool)

        empty = pd.Index(user_uniq).isin(_EMPTY)[user_code]
        empty |= pd.Index(item_uniq).isin(_EMPTY)[item_code]
        del item_code
        if empty.any():
            keep &= ~empty
            report["steps"].append({"step": "drop rows with empty user_id or item_id",
                                    "dropped": int(empty.sum())})
        if dedupe:
            before = int(keep.sum())
            rows = np.flatnonzero(keep)
            rows = rows[np.argsort(raw.timestamp[rows], kind="stable")]
            pair = user_code[rows].astype(np.int64) * max(1, len(key_uniq)) + key_code[rows]
            keep[rows[pd.Series(pair).duplicated(keep="first").to_numpy()]] = False
            report["steps"].append({"step": "duplicate (user, item) kept once (earliest)",
                                    "dropped": before - int(keep.sum())})

        seen = [str(dom_uniq[c]) for c in pd.unique(dom_code[keep])]
        if domains is None:
            domains = seen
        else:
            domains = list(domains)
            unknown = [d for d in seen if d not in domains]
            if unknown:
                before = int(keep.sum())
                keep &= pd.Index(dom_uniq).isin(domains)[dom_code]
                report["steps"].append({"step": f"rows of domains not asked for {unknown}",
                                        "dropped": before - int(keep.sum())})
        if k_core > 0:
            keep = _k_core(keep, dom_code, dom_uniq, user_code, key_code, k_core, report)
        rows = np.flatnonzero(keep)
        present = set(dom_uniq[np.unique(dom_code[rows])].tolist())
        for d in domains:
            if d not in present:
                raise DataError(f"dataset {self.name!r}: domain {d!r} has no interactions"
                                + (f" after {k_core}-core filtering" if k_core else ""))

        items = (pd.concat(self._items, ignore_index=True) if self._items
                 else pd.DataFrame(columns=["item_id", "domain", "_src", "_row"]))
        items = self._domain_mismatch(items, dom_uniq[key_dom], item_uniq[key_item], report,
                                      drop_bad_rows)
        items = items[items["domain"].isin(domains)].drop_duplicates(["domain", "item_id"])
        items = items.drop(columns=["_src", "_row"])
        used_keys = pd.unique(key_code[rows])  # in order of first appearance
        used = pd.DataFrame({"domain": dom_uniq[key_dom[used_keys]],
                             "item_id": np.asarray(item_uniq, dtype=object)[key_item[used_keys]]})
        if keep_items_without_interactions and k_core == 0:
            catalogue = pd.concat([used, items[["domain", "item_id"]]]).drop_duplicates()
        else:
            catalogue = used
        n_unknown_text = len(used.merge(items[["domain", "item_id"]], how="left", indicator=True)
                             .query("_merge == 'left_only'")) if len(items) else len(used)
        if len(items) and n_unknown_text:
            report["items_without_metadata"] = n_unknown_text
        # items grouped by domain, in domain order; the used items are the first catalogue rows
        # before sorting, so "_pos" tells where each used item key lands
        catalogue = catalogue.assign(_d=pd.Categorical(catalogue["domain"], categories=domains),
                                     _pos=np.arange(len(catalogue)))
        catalogue = catalogue.sort_values("_d", kind="stable").drop(columns="_d")
        catalogue = catalogue.merge(items, on=["domain", "item_id"], how="left")
        keys = (catalogue["domain"] + SEP + catalogue["item_id"]).to_numpy()
        item_vocab = Vocabulary(keys, name="item")
        new_pos = np.empty(len(catalogue), dtype=np.int32)
        new_pos[catalogue.pop("_pos").to_numpy()] = np.arange(len(catalogue), dtype=np.int32)
        item_of_key = np.full(len(key_uniq), -1, dtype=np.int32)
        item_of_key[used_keys] = new_pos[: len(used_keys)]
        user_order = pd.unique(user_code[rows])  # users in order of first appearance
        user_vocab = Vocabulary(np.asarray(user_uniq, dtype=object)[user_order], name="user_id")
        user_of_code = np.full(len(user_uniq), -1, dtype=np.int32)
        user_of_code[user_order] = np.arange(len(user_order), dtype=np.int32)
        dom_index = pd.Categorical(dom_uniq, categories=domains).codes.astype(np.int8)

        attrs = pd.DataFrame({c: catalogue[c].fillna("").to_numpy()
                              for c in ITEM_ATTRS if c in catalogue.columns},
                             index=pd.RangeIndex(len(catalogue)))  # one row per item, always
        if "title" in attrs.columns:
            text = attrs["title"].where(attrs["title"] != "", attrs.get("text", attrs["title"]))
        elif "text" in attrs.columns:
            text = attrs["text"]
        else:
            text = pd.Series([""] * len(catalogue))
        frame = pd.DataFrame({
            "user": user_of_code[user_code[rows]],
            "item": item_of_key[key_code[rows]],
            "domain": dom_index[dom_code[rows]],
            "rating": raw.rating[rows],
            "timestamp": raw.timestamp[rows],
        })
        if raw.part is not None:
            frame["part"] = pd.Categorical.from_codes(raw.part[rows], categories=PARTS)
        report["interactions"] = len(frame)
        return MultiDomainDataset(
            name=self.name,
            users=user_vocab,
            items=item_vocab,
            item_domain=pd.Categorical(catalogue["domain"], categories=domains)
            .codes.astype(np.int8),
            item_text=text.astype(str).tolist(),
            domains=tuple(domains),
            interactions=frame,
            item_attrs=attrs,
            report=report,
        )

    def _domain_mismatch(self, items: pd.DataFrame, key_domain: np.ndarray, key_item: np.ndarray,
                         report: dict, drop: bool) -> pd.DataFrame:
        """Item rows that put an item in a domain where it has no interactions while its
        interactions are all in domains the items files do not list it in: a mistake that would
        make a phantom item (the movie ``m1`` as a book, with the movie's title)."""
        if not len(items):
            return items
        inter_keys = pd.MultiIndex.from_arrays([np.asarray(key_domain, dtype=object),
                                                np.asarray(key_item, dtype=object)])
        item_keys = pd.MultiIndex.from_arrays([items["domain"].to_numpy(dtype=object),
                                               items["item_id"].to_numpy(dtype=object)])
        listed_ids = set(items["item_id"])
        # interactions whose (domain, item_id) no items row lists, though the id is listed
        unlisted = inter_keys[~inter_keys.isin(item_keys)
                              & inter_keys.get_level_values(1).isin(listed_ids)]
        if not len(unlisted):
            return items
        home = pd.Series(unlisted.get_level_values(0), index=unlisted.get_level_values(1))
        home = home[~home.index.duplicated()]
        suspect = (~item_keys.isin(inter_keys)) & items["item_id"].isin(home.index).to_numpy()
        if not suspect.any():
            return items
        if drop:
            report["steps"].append({"step": "item rows in another domain than the item's "
                                    "interactions (--drop-bad-rows)",
                                    "dropped": int(suspect.sum())})
            return items[~suspect]
        row = items.iloc[int(np.flatnonzero(suspect)[0])]
        where = self._item_where[int(row["_src"])](int(row["_row"]))
        raise DataError(
            f"{where}: item {row['item_id']!r} is listed in domain {row['domain']!r}, but its "
            f"interactions are in domain {home[row['item_id']]!r} ({int(suspect.sum())} such "
            "item rows; fix the domain, or --drop-bad-rows drops them)"
        )


_EMPTY = ["", "nan", "None"]


def _domain_column(frame: pd.DataFrame, domain: str | None) -> pd.Categorical:
    """The domain of every row as a categorical (one byte per row instead of a pointer)."""
    if domain is None:
        return pd.Categorical(frame["domain"].astype(str).to_numpy())
    return pd.Categorical.from_codes(np.zeros(len(frame), dtype=np.int8), categories=[domain])


@dataclass
class _Columns:
    """The added interaction frames, concatenated column by column."""

    user_id: np.ndarray | None  # object[n]
    item_id: np.ndarray | None  # object[n]
    domain: pd.Categorical
    rating: np.ndarray  # float32[n], NaN where a source has none
    timestamp: np.ndarray  # int64[n], 0 where a source has none
    part: np.ndarray | None  # int8[n] codes into PARTS ("train" where a source has none)


def _concat(frames: list[pd.DataFrame]) -> _Columns:
    def column(col: str, dtype: str, fill) -> np.ndarray:
        return np.concatenate([
            f[col].to_numpy(dtype=dtype) if col in f.columns else np.full(len(f), fill, dtype=dtype)
            for f in frames
        ])

    has_part = any("part" in f.columns for f in frames)
    part = None
    if has_part:
        part = np.concatenate([
            pd.Categorical(f["part"], categories=PARTS).codes.astype(np.int8)
            if "part" in f.columns else np.zeros(len(f), dtype=np.int8)
            for f in frames
        ])
        part[part < 0] = 0  # missing part -> train
    return _Columns(
        user_id=np.concatenate([f["user_id"].to_numpy(dtype=object) for f in frames]),
        item_id=np.concatenate([f["item_id"].to_numpy(dtype=object) for f in frames]),
        domain=union_categoricals([pd.Categorical(f["domain"]) for f in frames]),
        rating=column("rating", "float32", np.nan),
        timestamp=column("timestamp", "int64", 0),
        part=part,
    )


def _factorize(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``pd.factorize`` with ``int32`` codes (half the memory of the default ``int64``)."""
    codes, uniques = pd.factorize(values)
    return codes.astype(np.int32, copy=False), np.asarray(uniques)


def _k_core(
    keep: np.ndarray,
    dom_code: np.ndarray,
    dom_uniq: np.ndarray,
    user_code: np.ndarray,
    key_code: np.ndarray,
    k: int,
    report: dict,
) -> np.ndarray:
    """Per-domain k-core on users and items; records how many rows each domain lost."""
    keep = keep.copy()
    for d in pd.unique(dom_code[keep]):  # domains in order of first appearance
        rows = np.flatnonzero(keep & (dom_code == d))
        u = pd.factorize(user_code[rows])[0]
        i = pd.factorize(key_code[rows])[0]
        alive = np.ones(len(rows), dtype=bool)
        while True:
            uc = np.bincount(u[alive], minlength=u.max() + 1)
            ic = np.bincount(i[alive], minlength=i.max() + 1)
            ok = alive & (uc[u] >= k) & (ic[i] >= k)
            if ok.sum() == alive.sum():
                break
            alive = ok
        report["steps"].append({"step": f"{k}-core filter in domain {dom_uniq[d]!r}",
                                "dropped": int((~alive).sum())})
        keep[rows[~alive]] = False
    return keep
