"""Bundle: a trained model with everything needed to answer requests, saved without pickle.

Layout of a bundle directory::

    config.json        resolved experiment config, model spec, seed, target/source roles
    model.safetensors  the model's learned arrays (``Recommender.state``)
    dataset/           the training dataset (id vocabularies, item text, histories)
    meta.json          format version, crossrec version, sha256 of every file above
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from crossrec.atomic import atomic_directory
from crossrec.data.dataset import MultiDomainDataset
from crossrec.errors import CrossrecError
from crossrec.models.base import FitOptions, Query, Recommender

BUNDLE_FORMAT = 1


class BundleError(CrossrecError):
    """A bundle directory is missing, incomplete, tampered with, or of another format."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name != "meta.json")


@dataclass
class Recommendation:
    """Top-k answer for one user: raw item ids, scores, and how they were produced."""

    user_id: str
    domain: str
    item_ids: list[str]
    scores: list[float]
    strategy: str  # "model" | "popular_fallback"


@dataclass
class Bundle:
    model: Recommender
    train: MultiDomainDataset
    config: dict[str, Any]

    @property
    def target(self) -> str:
        return self.config["target"]

    # ----------------------------------------------------------------- save / load
    def save(self, path: str | Path) -> Path:
        """Write atomically: everything goes to a temp dir beside ``path``, then a rename."""
        from safetensors.numpy import save_file

        path = Path(path)
        with atomic_directory(path) as tmp:
            state = {k: np.ascontiguousarray(v) for k, v in self.model.state().items()}
            save_file(state, str(tmp / "model.safetensors"))
            self.train.save(tmp / "dataset")
            (tmp / "config.json").write_text(json.dumps(self.config, indent=2, default=str))
            from crossrec import __version__

            meta = {
                "format_version": BUNDLE_FORMAT,
                "crossrec_version": __version__,
                "model": self.config["model"]["name"],
                "sha256": {str(p.relative_to(tmp)): _sha256(p) for p in _files(tmp)},
            }
            (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
        return path

    @classmethod
    def load(cls, path: str | Path, *, device: str = "cpu", verify: bool = True) -> Bundle:
        """Rebuild the model through ``MODELS``; checks format version and checksums."""
        from safetensors.numpy import load_file

        from crossrec.models import MODELS

        path = Path(path)
        meta_file = path / "meta.json"
        if not meta_file.exists():
            raise BundleError(f"{path}: not a crossrec bundle (no meta.json)")
        meta = json.loads(meta_file.read_text())
        if meta.get("format_version") != BUNDLE_FORMAT:
            raise BundleError(f"{path}: bundle format {meta.get('format_version')}, "
                              f"this crossrec reads format {BUNDLE_FORMAT}")
        for rel, digest in meta["sha256"].items():
            f = path / rel
            if not f.exists():
                raise BundleError(f"{path}: missing file {rel}")
            if verify and _sha256(f) != digest:
                raise BundleError(f"{path}: checksum mismatch for {rel} (modified or truncated)")
        config = json.loads((path / "config.json").read_text())
        spec = dict(config["model"])
        name = spec.pop("name")
        spec.pop("label", None)
        if name not in MODELS:
            raise BundleError(f"{path}: model {name!r} is not registered in this crossrec")
        model = MODELS[name](spec)
        train = MultiDomainDataset.load(path / "dataset")
        options = FitOptions(target=config["target"], sources=tuple(config.get("sources", ())),
                             seed=int(config.get("seed", 0)), device=device, progress=False)
        model.restore(train, options, load_file(str(path / "model.safetensors")))
        return cls(model=model, train=train, config=config)

    # ----------------------------------------------------------------- inference
    def recommend(self, user_ids: list[str], domain: str | None = None, k: int = 10,
                  exclude_seen: bool = True) -> list[Recommendation]:
        """Top-``k`` items of ``domain`` (default: the target) for each user.

        Known users (in any domain) are scored by the model; unknown users get the domain's
        most popular items and ``strategy="popular_fallback"``.
        """
        import torch

        domain = domain or self.target
        s = self.train.domain_items(domain)
        idx = self.train.users.index(np.asarray(user_ids, dtype=object), missing="ignore")
        known = idx >= 0
        out: list[Recommendation | None] = [None] * len(user_ids)
        if known.any():
            with torch.no_grad():
                users = torch.as_tensor(idx[known], dtype=torch.long)
                scores = self.model.score(Query(users=users), domain).float().cpu()
            if exclude_seen:
                seen = self.train.user_items(domain)[idx[known]].tocoo()
                scores[torch.as_tensor(seen.row, dtype=torch.long),
                       torch.as_tensor(seen.col, dtype=torch.long)] = float("-inf")
            top = torch.topk(scores, min(k, scores.shape[1]), dim=1)
            for row, pos in enumerate(np.flatnonzero(known)):
                keep = torch.isfinite(top.values[row])
                items = top.indices[row][keep].numpy() + s.start
                out[pos] = Recommendation(str(user_ids[pos]), domain,
                                          self.train.item_ids(items).tolist(),
                                          top.values[row][keep].tolist(), "model")
        if (~known).any():
            pop = self.train.item_popularity(domain)
            order = np.argsort(-pop, kind="stable")[:k]
            items = self.train.item_ids(order + s.start).tolist()
            for pos in np.flatnonzero(~known):
                out[pos] = Recommendation(str(user_ids[pos]), domain, items,
                                          pop[order].tolist(), "popular_fallback")
        return out  # type: ignore[return-value]
