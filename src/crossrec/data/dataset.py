"""MultiDomainDataset: the frozen, columnar container every model, split and metric reads."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from crossrec.atomic import atomic_directory
from crossrec.data.vocab import Vocabulary
from crossrec.errors import DataError

FORMAT_VERSION = 1
SEP = "\x1f"  # joins (domain, item_id) into one item vocabulary key

INTERACTION_DTYPES = {
    "user": "int32",
    "item": "int32",
    "domain": "int8",
    "rating": "float32",
    "timestamp": "int64",
}


@dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about the id spaces (no interactions).

    ``item_offsets[d]`` is the first global item index of domain ``domains[d]``; items of a
    domain are contiguous, so local index = global index - offset.
    """

    name: str
    domains: tuple[str, ...]
    n_users: int
    item_offsets: tuple[int, ...]  # len(domains) + 1

    @property
    def n_items(self) -> int:
        return self.item_offsets[-1]

    def domain_index(self, domain: str) -> int:
        try:
            return self.domains.index(domain)
        except ValueError:
            known = ", ".join(self.domains)
            raise DataError(f"unknown domain {domain!r}; known: {known}") from None

    def domain_items(self, domain: str) -> slice:
        d = self.domain_index(domain)
        return slice(self.item_offsets[d], self.item_offsets[d + 1])

    def n_domain_items(self, domain: str) -> int:
        s = self.domain_items(domain)
        return s.stop - s.start

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "domains": list(self.domains),
            "n_users": self.n_users,
            "item_offsets": list(self.item_offsets),
        }

    @classmethod
    def from_dict(cls, d: dict) -> DatasetInfo:
        return cls(d["name"], tuple(d["domains"]), int(d["n_users"]), tuple(d["item_offsets"]))


@dataclass(frozen=True, eq=False)
class MultiDomainDataset:
    """Users shared by all domains, items grouped by domain, interactions as columns.

    ``interactions`` columns: ``user`` int32, ``item`` int32 (global index), ``domain`` int8
    (index into ``domains``), ``rating`` float32 (NaN if implicit), ``timestamp`` int64 (order
    within a user; 0 when unknown) and, when the source defines its own split, ``part``
    (category: train / valid / test).
    """

    name: str
    users: Vocabulary
    items: Vocabulary  # keys "domain\x1fitem_id"; use item_ids / item_index instead
    item_domain: np.ndarray  # int8[n_items]
    item_text: list[str]
    domains: tuple[str, ...]
    interactions: pd.DataFrame
    item_attrs: pd.DataFrame = field(default_factory=pd.DataFrame)  # title/categories/brand ...
    report: dict = field(default_factory=dict)  # what cleaning dropped, and why
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    # ----------------------------------------------------------------- id spaces
    @property
    def info(self) -> DatasetInfo:
        if "info" not in self._cache:
            counts = np.bincount(self.item_domain, minlength=len(self.domains))
            offsets = tuple(int(o) for o in (0, *np.cumsum(counts).tolist()))
            self._cache["info"] = DatasetInfo(self.name, self.domains, len(self.users), offsets)
        return self._cache["info"]

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    def domain_items(self, domain: str) -> slice:
        """Global item indices of ``domain`` as a slice (items are stored grouped by domain)."""
        return self.info.domain_items(domain)

    def item_ids(self, items: np.ndarray | list[int]) -> np.ndarray:
        """Global item indices -> raw item ids (``object[n]``, without the domain)."""
        keys = self.items.raw(items)
        return np.array([k.split(SEP, 1)[1] for k in keys], dtype=object)

    def item_index(self, domain: str, item_ids, *, missing: str = "raise") -> np.ndarray:
        """Raw item ids of one domain -> global ``int32`` indices."""
        self.info.domain_index(domain)
        keys = np.array([f"{domain}{SEP}{i}" for i in np.asarray(item_ids, dtype=object)])
        return self.items.index(keys, missing=missing)

    # ----------------------------------------------------------------- views
    def domain_interactions(self, domain: str) -> pd.DataFrame:
        d = self.info.domain_index(domain)
        return self.interactions[self.interactions["domain"].to_numpy() == d]

    def user_items(self, domain: str | None = None, *, values: str | None = None) -> sp.csr_matrix:
        """Sparse user x item matrix ``[n_users, n_items(domain)]`` (all items if domain is None).

        Columns are local item indices of the domain. Entries are 1 (or the ``values`` column).
        """
        key = ("user_items", domain, values)
        if key not in self._cache:
            frame = self.interactions if domain is None else self.domain_interactions(domain)
            if domain is None:
                offset, n_cols = 0, self.n_items
            else:
                s = self.domain_items(domain)
                offset, n_cols = s.start, s.stop - s.start
            data = (
                np.ones(len(frame), dtype=np.float32)
                if values is None
                else frame[values].to_numpy(dtype=np.float32)
            )
            mat = sp.csr_matrix(
                (data, (frame["user"].to_numpy(), frame["item"].to_numpy() - offset)),
                shape=(self.n_users, n_cols),
            )
            mat.sum_duplicates()
            self._cache[key] = mat
        return self._cache[key]

    def domain_users(self, domain: str) -> np.ndarray:
        """Users with at least one interaction in ``domain`` (sorted ``int32``)."""
        key = ("domain_users", domain)
        if key not in self._cache:
            users = self.domain_interactions(domain)["user"].to_numpy()
            present = np.bincount(users, minlength=self.n_users) > 0  # no sort of N rows
            self._cache[key] = np.flatnonzero(present).astype(np.int32)
        return self._cache[key]

    def overlap_users(self, a: str, b: str) -> np.ndarray:
        """Users with interactions in both ``a`` and ``b`` (sorted ``int32``)."""
        return np.intersect1d(self.domain_users(a), self.domain_users(b)).astype(np.int32)

    def item_popularity(self, domain: str | None = None) -> np.ndarray:
        """Interaction count per item, ``float32[n_items(domain)]``."""
        return np.asarray(self.user_items(domain).sum(axis=0)).ravel().astype(np.float32)

    def with_interactions(self, interactions: pd.DataFrame, **report) -> MultiDomainDataset:
        """Same id spaces and items, other interactions (e.g. the training part of a split)."""
        inter = interactions.reset_index(drop=True)
        return replace(self, interactions=inter, report={**self.report, **report}, _cache={})

    def stats(self) -> dict:
        """Users, items, interactions and density per domain; user overlap per domain pair."""
        out: dict = {"domains": {}, "overlap": {}}
        for d in self.domains:
            inter = self.domain_interactions(d)
            n_u = int(inter["user"].nunique())
            n_i = self.info.n_domain_items(d)
            n_active = int(inter["item"].nunique())
            out["domains"][d] = {
                "users": n_u,
                "items": n_i,
                "items_with_interactions": n_active,
                "interactions": len(inter),
                "density": len(inter) / max(1, n_u * n_i),
            }
        for i, a in enumerate(self.domains):
            for b in self.domains[i + 1 :]:
                out["overlap"][f"{a}|{b}"] = len(self.overlap_users(a, b))
        out["users"], out["items"], out["interactions"] = (
            self.n_users,
            self.n_items,
            len(self.interactions),
        )
        return out

    # ----------------------------------------------------------------- persistence
    def save(self, path: str | Path) -> Path:
        """Write ``interactions/users/items.parquet`` + ``meta.json`` atomically.

        Everything is written to a temporary sibling directory first, then renamed into place;
        if anything fails, the previous content of ``path`` (if any) is left as it was.
        """
        path = Path(path)
        with atomic_directory(path) as tmp:
            self.interactions.to_parquet(tmp / "interactions.parquet", index=False)
            self.users.save(tmp / "users.parquet")
            items = pd.DataFrame(
                {
                    "domain": np.asarray(self.domains, dtype=object)[self.item_domain],
                    "item_id": self.item_ids(np.arange(self.n_items)),
                    "text": self.item_text,
                }
            )
            for col in self.item_attrs.columns:
                items[f"attr_{col}"] = self.item_attrs[col].to_numpy()
            items.to_parquet(tmp / "items.parquet", index=False)
            meta = {
                "format_version": FORMAT_VERSION,
                "name": self.name,
                "domains": list(self.domains),
                "report": self.report,
                "stats": self.stats(),
            }
            (tmp / "meta.json").write_text(json.dumps(meta, indent=2, default=_json_default))
        return path

    @classmethod
    def load(cls, path: str | Path) -> MultiDomainDataset:
        path = Path(path)
        meta_file = path / "meta.json"
        if not meta_file.exists():
            raise DataError(f"{path} is not a crossrec dataset directory (no meta.json)")
        meta = json.loads(meta_file.read_text())
        if meta.get("format_version") != FORMAT_VERSION:
            raise DataError(
                f"{path}: dataset format version {meta.get('format_version')} "
                f"(this crossrec reads version {FORMAT_VERSION}); re-run `crossrec prepare`"
            )
        for f in ("interactions.parquet", "users.parquet", "items.parquet"):
            if not (path / f).exists():
                raise DataError(f"{path}: missing {f}")
        domains = tuple(meta["domains"])
        items = pd.read_parquet(path / "items.parquet")
        inter = pd.read_parquet(path / "interactions.parquet")
        attr_cols = [c for c in items.columns if c.startswith("attr_")]
        attrs = items[attr_cols].rename(columns=lambda c: c[5:])
        return cls(
            name=meta["name"],
            users=Vocabulary.load(path / "users.parquet", name="user_id"),
            items=Vocabulary((items["domain"] + SEP + items["item_id"]).to_numpy(), name="item"),
            item_domain=pd.Categorical(items["domain"], categories=domains).codes.astype(np.int8),
            item_text=items["text"].fillna("").astype(str).tolist(),
            domains=domains,
            interactions=inter,
            item_attrs=attrs,
            report=meta.get("report", {}),
        )


def is_dataset_dir(path: str | Path) -> bool:
    """Whether ``path`` holds a dataset ``crossrec prepare`` / ``save`` wrote (of any format
    version): its ``meta.json`` has the dataset keys and ``interactions.parquet`` is there."""
    path = Path(path)
    meta_file = path / "meta.json"
    if not (meta_file.is_file() and (path / "interactions.parquet").is_file()):
        return False
    try:
        meta = json.loads(meta_file.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(meta, dict) and {"format_version", "name", "domains"} <= meta.keys()


def _json_default(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o))
