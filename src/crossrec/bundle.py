"""Bundle: a trained model with everything needed to answer requests, saved without pickle.

Layout of a bundle directory::

    config.json        resolved experiment config, model spec, seed, target/source roles
    model.safetensors  the model's learned arrays (``Recommender.state``)
    dataset/           the training dataset (id vocabularies, item text, histories)
    meta.json          format version, crossrec version, sha256 of every file above
                       and ``version``, the hash of those digests (recomputed at load)

Every path ``meta.json`` names must be a regular file inside the bundle (no absolute path, no
``..``, no link leaving the directory), and every file the load reads must be listed.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import numpy as np

from crossrec.atomic import atomic_directory
from crossrec.data.dataset import MultiDomainDataset
from crossrec.errors import CrossrecError
from crossrec.evidence import Evidence, explain_batch, model_signals
from crossrec.models.base import FitOptions, Query, Recommender
from crossrec.paths import file_sha256

if TYPE_CHECKING:
    from crossrec.eval.topk import Retrieval, RetrievalSpec

BUNDLE_FORMAT = 1
LISTED = ("config.json", "model.safetensors")  # with every file under dataset/
LEGACY_UNLISTED = "dataset/meta.json"  # not hashed by bundles saved before it was; still confined
MAX_META_BYTES = 16 * 2**20


class BundleError(CrossrecError):
    """A bundle directory is missing, incomplete, tampered with, or of another format."""


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p != root / "meta.json")


@dataclass
class Recommendation:
    """Top-k answer for one user: raw item ids, scores, and how they were produced.

    ``strategy`` is ``"model"``, ``"text"`` or ``"popular_fallback"``; ``basis`` says what the
    model had to go on: ``"target"`` (training history in the asked domain), ``"source_only"``
    (training history only in other domains: the cross-domain case), ``"request_history"``
    (items sent with the request), ``"text"``, or ``"none"`` (fallback).
    """

    user_id: str
    domain: str
    item_ids: list[str]
    scores: list[float]
    strategy: str
    basis: str = "target"
    items: list[int] = field(default_factory=list)  # global item indices of item_ids
    because: list[list[Evidence]] | None = None  # per item, when explanations were asked for
    signals: list[list[Any]] | None = None  # per item: the model's own reasons (the ranker)
    ignored_history: int = 0  # request-history items unknown to the bundle (skipped)
    user_known: bool = False  # the user id is in the bundle's training data


def bundle_version(digests: dict[str, str]) -> str:
    """Content id of a bundle: a hash of the sha256 of every file (16 hex digits)."""
    text = json.dumps(digests, sort_keys=True).encode()
    return hashlib.sha256(text).hexdigest()[:16]


def confined(root: Path, rel: object, where: str | Path) -> Path:
    """``root / rel``, checked to be a regular file inside ``root`` (``rel`` a relative path
    without ``..``; a link is followed only when its target stays inside ``root``).

    Raises:
        BundleError: naming ``where`` (the file that gave ``rel``) and the offending path.
    """
    if not isinstance(rel, str) or not rel or "\x00" in rel:
        raise BundleError(f"{where}: file name {rel!r} is not a non-empty string")
    parts = PurePosixPath(rel).parts
    if PurePosixPath(rel).is_absolute() or rel.startswith("\\") or ".." in parts:
        raise BundleError(f"{where}: path {rel!r} leaves the directory (absolute or '..')")
    f = root / rel
    if not os.path.lexists(f):
        raise BundleError(f"{root}: missing file {rel}")
    try:
        real = f.resolve(strict=True)
        mode = real.stat().st_mode
    except (OSError, RuntimeError):
        raise BundleError(f"{where}: {rel} is a broken or looping link") from None
    if not real.is_relative_to(root.resolve()):
        raise BundleError(f"{where}: {rel} is a link to {real}, outside {root}")
    if not stat.S_ISREG(mode):
        raise BundleError(f"{where}: {rel} is not a regular file")
    return f


def _unlisted(root: Path, listed: set[str]) -> list[str]:
    """Files the load reads (``LISTED`` and everything under ``dataset/``) that ``meta.json``
    does not list."""
    found = [name for name in LISTED if name not in listed]
    for folder, dirs, files in os.walk(root / "dataset"):  # links to folders not followed
        for name in files + [d for d in dirs if os.path.islink(os.path.join(folder, d))]:
            rel = Path(folder, name).relative_to(root).as_posix()
            if rel == LEGACY_UNLISTED and rel not in listed:
                confined(root, rel, root / "meta.json")
            elif rel not in listed:
                found.append(rel)
    return found


def read_meta(path: str | Path, *, verify: bool = True) -> dict[str, Any]:
    """``meta.json`` of a bundle directory, after checking its format, that every file it
    lists is a regular file inside the bundle with (``verify``) its recorded sha256, that
    every file a load reads is listed, and that its ``version`` is the hash of those digests
    (set when absent, in bundles older than the field).

    Raises:
        BundleError: not a bundle, another format, a file missing, modified, truncated, out of
            the bundle or unlisted, or a version that does not match the content.
    """
    path = Path(path)
    meta_file = path / "meta.json"
    if not os.path.lexists(meta_file):
        raise BundleError(f"{path}: not a crossrec bundle (no meta.json)")
    confined(path, "meta.json", path)
    if meta_file.stat().st_size > MAX_META_BYTES:
        raise BundleError(f"{meta_file}: larger than {MAX_META_BYTES} bytes")
    try:
        meta = json.loads(meta_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BundleError(f"{meta_file}: not valid JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("format_version") != BUNDLE_FORMAT:
        got = meta.get("format_version") if isinstance(meta, dict) else None
        raise BundleError(f"{path}: bundle format {got}, this crossrec reads format "
                          f"{BUNDLE_FORMAT}")
    digests = meta.get("sha256")
    if not isinstance(digests, dict) or not all(isinstance(v, str) for v in digests.values()):
        raise BundleError(f"{meta_file}: field 'sha256' missing or not an object of strings")
    files = {rel: confined(path, rel, meta_file) for rel in digests}
    missing = _unlisted(path, set(digests))
    if missing:
        raise BundleError(f"{meta_file}: {missing[0]} is read by the load but not listed in "
                          "'sha256' (added or replaced after the bundle was saved)")
    if verify:
        for rel, f in files.items():
            if file_sha256(f) != digests[rel]:
                raise BundleError(f"{path}: checksum mismatch for {rel} (modified or "
                                  "truncated)")
    version = bundle_version(digests)
    if meta.get("version", version) != version:
        raise BundleError(f"{meta_file}: 'version' is {meta.get('version')!r} but the files "
                          f"hash to {version} (meta.json edited?)")
    meta["version"] = version
    return meta


@dataclass
class Bundle:
    model: Recommender
    train: MultiDomainDataset
    config: dict[str, Any]
    version: str = "unsaved"  # set by save / load (content hash of the files)
    retrieval: Retrieval | None = field(default=None, repr=False)  # None: exact scoring

    @property
    def target(self) -> str:
        return self.config["target"]

    def use_retrieval(self, config: RetrievalSpec | None) -> Bundle:
        """Find the top k through an index / compressed vectors / an int8 user encoder
        (``crossrec.serving.retrieval``); None or the default config: exact scoring.

        Builds the target's index now. ``quantize_user_encoder`` changes the model in place
        for good (a later ``use_retrieval(None)`` does not undo it).
        """
        self.retrieval = (None if config is None or config.is_default
                          else config.build(self.model, self.train, self.target))
        return self

    # ----------------------------------------------------------------- save / load
    def save(self, path: str | Path) -> Path:
        """Write atomically: everything goes to a temp dir beside ``path``, then a rename.
        The model table written (and kept in ``config``) is ``name`` (and ``label``) plus every
        field of ``model.config``, defaults resolved: ``load`` rebuilds exactly that."""
        from safetensors.numpy import save_file

        path = Path(path)
        keep = {k: v for k, v in self.config["model"].items() if k in ("name", "label")}
        self.config = {**self.config, "model": {**keep, **self.model.config.model_dump(
            mode="json")}}
        with atomic_directory(path) as tmp:
            state = {k: np.ascontiguousarray(v) for k, v in self.model.state().items()}
            save_file(state, str(tmp / "model.safetensors"))
            self.train.save(tmp / "dataset")
            (tmp / "config.json").write_text(json.dumps(self.config, indent=2, default=str))
            from crossrec import __version__

            digests = {str(p.relative_to(tmp)): file_sha256(p) for p in _files(tmp)}
            meta = {
                "format_version": BUNDLE_FORMAT,
                "crossrec_version": __version__,
                "model": self.config["model"]["name"],
                "version": bundle_version(digests),
                "sha256": digests,
            }
            (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
        self.version = meta["version"]
        return path

    @classmethod
    def load(cls, path: str | Path, *, device: str = "cpu", verify: bool = True,
             retrieval: RetrievalSpec | None = None) -> Bundle:
        """Rebuild the model through ``MODELS``; checks format version and checksums.
        ``retrieval``: see ``use_retrieval`` (default: exact scoring)."""
        from pydantic import ValidationError
        from safetensors.numpy import load_file

        from crossrec.models import MODELS

        path = Path(path)
        meta = read_meta(path, verify=verify)
        config = json.loads((path / "config.json").read_text())
        name = config["model"]["name"]
        spec = {k: v for k, v in config["model"].items() if k not in ("name", "label")}
        if name not in MODELS:
            raise BundleError(f"{path}: model {name!r} is not registered in this crossrec")
        try:
            model = MODELS[name](spec)
        except ValidationError as e:  # a field renamed or removed since the bundle was saved
            raise BundleError(f"{path}: its {name!r} config does not fit this crossrec: "
                              f"{e.errors()[0]['loc']}: {e.errors()[0]['msg']}") from None
        train = MultiDomainDataset.load(path / "dataset")
        options = FitOptions(target=config["target"], sources=tuple(config.get("sources", ())),
                             seed=int(config.get("seed", 0)), device=device, progress=False)
        model.restore(train, options, load_file(str(path / "model.safetensors")))
        return cls(model=model, train=train, config=config, version=meta["version"]
                   ).use_retrieval(
            retrieval)

    # ----------------------------------------------------------------- inference
    def popular(self, domain: str) -> tuple[np.ndarray, np.ndarray]:
        """Items of ``domain`` by training popularity: local indices ``int64[n]``, counts."""
        key = ("bundle_popular", domain)
        cache = self.train._cache
        if key not in cache:
            pop = self.train.item_popularity(domain)
            order = np.argsort(-pop, kind="stable")
            cache[key] = (order, pop[order])
        return cache[key]

    def history_index(self, history: Sequence[tuple[str, str]]) -> tuple[np.ndarray, int]:
        """``(domain, item_id)`` pairs -> global item indices ``int64[n]`` (first occurrence
        order, duplicates dropped) and the number of pairs unknown to the bundle (skipped).
        An unknown domain is a DataError."""
        out: list[int] = []
        unknown = 0
        for d in dict.fromkeys(domain for domain, _ in history):
            ids = [item for domain, item in history if domain == d]
            idx = self.train.item_index(d, ids, missing="ignore")
            unknown += int((idx < 0).sum())
            out.extend(int(i) for i in idx[idx >= 0])
        return np.asarray(list(dict.fromkeys(out)), dtype=np.int64), unknown

    def recommend(self, user_ids: Sequence[str | None], domain: str | None = None, k: int = 10,
                  exclude_seen: bool = True, *,
                  histories: Sequence[Sequence[tuple[str, str]] | None] | None = None,
                  explain: int = 0) -> list[Recommendation]:
        """Top-``k`` items of ``domain`` (default: the target) for each user.

        A user is scored by the model from their training history in every domain (a user
        known only in a source domain gets target items from that evidence), plus the
        ``(domain, item_id)`` pairs of ``histories[i]`` when given (an anonymous user, ``None``,
        needs one). Users with no evidence, and users whose model scores are all equal (the
        model has nothing to go on), get the domain's most popular items with
        ``strategy="popular_fallback"``.

        Args:
            user_ids: raw user ids; ``None`` for an anonymous request.
            domain: the domain to recommend in.
            k: items per user.
            exclude_seen: drop items the user has in training or in the request history.
            histories: per user, extra history items (or ``None``).
            explain: per recommended item, attach up to this many history items that support
                it (see ``explain_items``); 0 = no explanations.
        """
        import torch

        from crossrec.eval.topk import exact_top_k

        domain = domain or self.target
        s = self.train.domain_items(domain)
        n = len(user_ids)
        histories = list(histories) if histories is not None else [None] * n
        if len(histories) != n:
            raise ValueError(f"histories: {len(histories)} entries for {n} users")
        raw = np.asarray(["" if u is None else str(u) for u in user_ids], dtype=object)
        idx = self.train.users.index(raw, missing="ignore").astype(np.int64)
        idx[[u is None for u in user_ids]] = -1
        full, dom = self.train.user_items(None), self.train.user_items(domain)
        safe = np.maximum(idx, 0)
        has_train = (idx >= 0) & (full.indptr[safe + 1] > full.indptr[safe])
        in_domain = (idx >= 0) & (dom.indptr[safe + 1] > dom.indptr[safe])
        extra, ignored = [], []
        for h in histories:
            e, bad = self.history_index(h) if h else (np.zeros(0, np.int64), 0)
            extra.append(e)
            ignored.append(bad)
        evidence = [np.concatenate([full.indices[full.indptr[u]:full.indptr[u + 1]]
                                    if has_train[i] else np.zeros(0, np.int64), extra[i]])
                    .astype(np.int64) for i, u in enumerate(idx)]
        scored = np.flatnonzero([len(ev) > 0 for ev in evidence])
        out: list[Recommendation | None] = [None] * n
        top_items: dict[int, np.ndarray] = {}
        if len(scored):
            plain = [i for i in scored if len(extra[i]) == 0]
            live = [i for i in scored if len(extra[i]) > 0]
            rows = plain + live
            queries = []
            if plain:
                queries.append(Query(users=torch.as_tensor(idx[plain], dtype=torch.long)))
            if live:
                width = max(len(evidence[i]) for i in live)
                hist = torch.full((len(live), width), -1, dtype=torch.long)
                for r, i in enumerate(live):
                    hist[r, : len(evidence[i])] = torch.as_tensor(evidence[i])
                queries.append(Query(users=torch.as_tensor(idx[live], dtype=torch.long),
                                     history=hist))
            seen = ([evidence[i][(evidence[i] >= s.start) & (evidence[i] < s.stop)] - s.start
                     for i in rows] if exclude_seen else None)
            if self.retrieval is not None:
                values, indices, informative = self.retrieval.top_k(queries, domain, k, seen)
            else:
                values, indices, informative = exact_top_k(self.model, queries, domain, k, seen)
            # [B, k] arrays: numpy on k values is a few us where each torch op costs ~10 us
            values, indices = np.asarray(values), np.asarray(indices)
            for r, i in enumerate(rows):
                if not informative[r]:
                    continue
                keep = np.isfinite(values[r])
                items = indices[r][keep].astype(np.int64) + s.start
                basis = ("request_history" if len(extra[i]) else
                         "target" if in_domain[i] else "source_only")
                top_items[i] = items
                out[i] = Recommendation(str(raw[i]), domain,
                                        self.train.item_ids(items).tolist(),
                                        values[r][keep].tolist(), "model", basis,
                                        items.tolist(), ignored_history=ignored[i],
                                        user_known=bool(idx[i] >= 0))
        fallback = [i for i in range(n) if out[i] is None]
        if fallback:
            order, counts = self.popular(domain)
            for i in fallback:
                keep = order[:k]
                if exclude_seen and len(evidence[i]):
                    seen = np.isin(order + s.start, evidence[i])
                    keep = order[~seen][:k]
                    counts_i = counts[~seen][:k]
                else:
                    counts_i = counts[:k]
                items = keep.astype(np.int64) + s.start
                top_items[i] = items
                out[i] = Recommendation(str(raw[i]), domain, self.train.item_ids(items).tolist(),
                                        counts_i.tolist(), "popular_fallback", "none",
                                        items.tolist(), ignored_history=ignored[i],
                                        user_known=bool(idx[i] >= 0))
        if explain > 0:
            because = explain_batch(full, evidence, [top_items[i] for i in range(n)],
                                    self.train, explain)
            for i in range(n):
                out[i].because = because[i]
            asked = [i for i in range(n) if out[i].strategy == "model"]
            if asked and hasattr(self.model, "signals"):
                queries = [Query(torch.as_tensor([idx[i]]), torch.as_tensor(evidence[i])[None]
                                 if len(extra[i]) else None) for i in asked]
                found = model_signals(self.model, queries, domain,
                                      [top_items[i] - s.start for i in asked], explain)
                for i, sig in zip(asked, found, strict=True):
                    out[i].signals = sig
        return out  # type: ignore[return-value]

    def warm_up(self, explain: int = 3) -> float:
        """Pay now the set-up the first requests would otherwise pay (~0.2 s of a first
        request on the Arts -> Office ranker bundle: the ranker's path-attribution tables and
        merged trees, its text -> CF item map, the co-occurrence columns of explanations; with
        ``z_sample``, the text source's nearest-title index, ~14 s):
        one recommendation with ``explain`` explanations for the first training user of the
        target domain. Returns the seconds it took (0 without such a user)."""
        import time

        dom = self.train.user_items(self.target)
        users = np.flatnonzero(np.diff(dom.indptr))
        if not len(users):
            return 0.0
        start = time.perf_counter()
        self.recommend([str(self.train.users.ids[users[0]])], self.target, 10, explain=explain)
        return time.perf_counter() - start

    def recommend_text(self, texts: Sequence[str], domain: str | None = None,
                       k: int = 10) -> list[Recommendation]:
        """Top-``k`` items of ``domain`` for free-text needs, through the model's text encoder.

        The model must implement ``score_text(texts, domain) -> [B, n_items(domain)]``; a
        BundleError says so otherwise.
        """
        import torch

        domain = domain or self.target
        s = self.train.domain_items(domain)
        if not hasattr(self.model, "score_text"):
            raise BundleError(f"model {self.config['model']['name']!r} has no text encoder "
                              "(no score_text); free-text requests need a text model")
        with torch.no_grad():
            scores = self.model.score_text(list(texts), domain).float().cpu()
        if tuple(scores.shape) != (len(texts), s.stop - s.start):
            raise BundleError(f"score_text returned shape {tuple(scores.shape)}, expected "
                              f"{(len(texts), s.stop - s.start)}")
        top = torch.topk(scores, min(k, scores.shape[1]), dim=1)
        out = []
        for r in range(len(texts)):
            items = top.indices[r].numpy().astype(np.int64) + s.start
            out.append(Recommendation("", domain, self.train.item_ids(items).tolist(),
                                      top.values[r].tolist(), "text", "text", items.tolist()))
        return out
