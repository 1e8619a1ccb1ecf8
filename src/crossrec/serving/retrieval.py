"""Retrieval for serving: exact scoring, an approximate index, compressed item vectors.

By default ``Bundle.recommend`` scores every item of the asked domain with ``model.score`` and
takes the top k: exact, and what evaluation measures. A ``RetrievalConfig`` can change that for
large catalogues:

* ``kind``: ``"exact"`` (every item scored; with fp32 vectors this is ``model.score`` itself),
  ``"flat"`` (every item scored by faiss over the model's two-tower vectors, a reference),
  ``"hnsw"`` (a graph index, Malkov & Yashunin, TPAMI 2020) or ``"ivf"`` (an inverted file over
  k-means cells). Inner product throughout: the score is ``users @ items.T``.
* ``vectors``: the item vectors stored as ``"fp32"``, ``"fp16"`` or ``"int8"`` (faiss scalar
  quantisers, one range per dimension), for exact search over compressed vectors too.
* ``quantize_user_encoder``: dynamic int8 quantisation of the model's ``nn.Linear`` layers
  (``torch.ao.quantization.quantize_dynamic``), after the fp32 item vectors were taken.

An index serves a model whose score is a dot product, i.e. that has a two-tower view
(``Recommender.retrieval_vectors``); other models keep exact scoring (said once in the log).
faiss (``pip install 'crossrec[ann]'``) and torch are imported when first needed.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from crossrec.errors import ConfigError, DataError

if TYPE_CHECKING:
    import torch

    from crossrec.data.dataset import MultiDomainDataset
    from crossrec.models.base import Query, Recommender

log = logging.getLogger("crossrec.serving.retrieval")
BYTES_PER_VALUE = {"fp32": 4, "fp16": 2, "int8": 1}
INFORMATIVE_TOLERANCE = 1e-10  # relative score variance below which a user's scores are flat


class RetrievalConfig(BaseModel):
    """How ``Bundle.recommend`` finds the top k items (see the module docstring).

    Attributes:
        kind: ``"exact"``, ``"flat"``, ``"hnsw"`` or ``"ivf"``.
        vectors: storage of the item vectors: ``"fp32"``, ``"fp16"`` or ``"int8"``.
        hnsw_m: graph neighbours per node (HNSW's M).
        hnsw_ef_construction: candidate list size while building the graph.
        hnsw_ef_search: candidate list size per query (raised to the fetch size when larger).
        ivf_nlist: k-means cells; None = ``4 sqrt(n)``, at most ``n / 39``.
        ivf_nprobe: cells searched per query.
        max_fetch: at most this many items fetched beyond ``k`` to make up for the user's seen
            items, which are dropped afterwards; a user left short is searched again deeper.
        quantize_user_encoder: int8 dynamic quantisation of the model's ``nn.Linear`` layers.
    """

    model_config = ConfigDict(extra="forbid")

    kind: Literal["exact", "flat", "hnsw", "ivf"] = "exact"
    vectors: Literal["fp32", "fp16", "int8"] = "fp32"
    hnsw_m: int = Field(32, ge=2, le=256)
    hnsw_ef_construction: int = Field(100, ge=1)
    hnsw_ef_search: int = Field(128, ge=1)
    ivf_nlist: int | None = Field(None, ge=1)
    ivf_nprobe: int = Field(64, ge=1)
    max_fetch: int = Field(1000, ge=0)
    quantize_user_encoder: bool = False

    @property
    def is_default(self) -> bool:
        """True for plain exact scoring with ``model.score`` (nothing to build)."""
        return self.kind == "exact" and self.vectors == "fp32" and not self.quantize_user_encoder

    def describe(self) -> str:
        """A short label, e.g. ``hnsw/int8`` or ``exact/fp32+int8-encoder``."""
        return (f"{self.kind}/{self.vectors}"
                + ("+int8-encoder" if self.quantize_user_encoder else ""))

    def build(self, model: Recommender, train: MultiDomainDataset, target: str) -> Retriever:
        """The ``Retriever`` this config describes for a fitted model (what
        ``Bundle.use_retrieval`` calls; the target's index is built now)."""
        return Retriever(model, train, target, self)


def _faiss() -> Any:
    try:
        import faiss
    except ImportError:  # pragma: no cover - faiss is in the test extra
        raise ConfigError("retrieval kind/vectors other than exact/fp32 need faiss: "
                          "pip install 'crossrec[ann]'") from None
    return faiss


class VectorIndex:
    """Top-k inner-product search over one domain's item vectors.

    Exact fp32 search is a torch matrix product; everything else is a faiss index (flat, HNSW
    or IVF; fp32 vectors or a scalar quantiser).

    Args:
        items: ``float32 [n, d]`` item vectors.
        config: the kind of index and the vector storage.
    """

    def __init__(self, items: np.ndarray, config: RetrievalConfig) -> None:
        items = np.ascontiguousarray(items, dtype=np.float32)
        if items.ndim != 2 or len(items) == 0:
            raise DataError(f"item vectors must be a non-empty [n, d] array, got {items.shape}")
        self.config = config
        self.n, self.dim = items.shape
        centred = items.astype(np.float64) - items.mean(0, dtype=np.float64)
        self.gram = centred.T @ centred  # [d, d]: u^T G u = n x variance of u's scores
        self._spread = float(np.trace(self.gram))
        start = time.perf_counter()
        self.items: torch.Tensor | None = None
        self.index: Any = None
        # faiss's scalar quantisers take their SIMD path only when d is a multiple of 8 (about
        # 10x faster here): zero columns pad the vectors, leaving every inner product as it is
        self.pad = (-self.dim) % 8 if config.vectors != "fp32" else 0
        if config.kind == "exact" and config.vectors == "fp32":
            import torch

            self.items = torch.from_numpy(items.copy())
        else:
            self.index = self._build(self._padded(items))
        self.build_seconds = time.perf_counter() - start

    def _padded(self, x: np.ndarray) -> np.ndarray:
        if not self.pad:
            return x
        return np.ascontiguousarray(np.hstack([x, np.zeros((len(x), self.pad), x.dtype)]))

    def _build(self, items: np.ndarray) -> Any:
        faiss, c, (n, d) = _faiss(), self.config, items.shape
        ip = faiss.METRIC_INNER_PRODUCT
        qtype = {"fp16": faiss.ScalarQuantizer.QT_fp16,
                 "int8": faiss.ScalarQuantizer.QT_8bit}.get(c.vectors)
        if c.kind in ("exact", "flat"):
            index = (faiss.IndexFlatIP(d) if qtype is None
                     else faiss.IndexScalarQuantizer(d, qtype, ip))
        elif c.kind == "hnsw":
            index = (faiss.IndexHNSWFlat(d, c.hnsw_m, ip) if qtype is None
                     else faiss.IndexHNSWSQ(d, qtype, c.hnsw_m, ip))
            index.hnsw.efConstruction = c.hnsw_ef_construction
        else:
            self.nlist = min(c.ivf_nlist or max(1, min(n // 39, round(4 * math.sqrt(n)))), n)
            # cells from L2 k-means (compact), probed by inner product with their centroids:
            # k-means under the inner product lets large-norm centroids take most items (recall
            # 0.57 -> 0.77 at nprobe 16 on BPR-MF Office vectors)
            kmeans = faiss.Kmeans(d, self.nlist, niter=10, seed=1234)
            kmeans.train(items)
            self._coarse = faiss.IndexFlatIP(d)  # kept alive beside the index that uses it
            self._coarse.add(kmeans.centroids)
            index = (faiss.IndexIVFFlat(self._coarse, d, self.nlist, ip) if qtype is None
                     else faiss.IndexIVFScalarQuantizer(self._coarse, d, self.nlist, qtype, ip))
        if not index.is_trained:
            index.train(items)
        index.add(items)
        return index

    # ------------------------------------------------------------------ size
    def vector_bytes(self) -> int:
        """Bytes of the stored item vectors (codes), ``n x d x bytes per value`` (``d`` padded
        to a multiple of 8 for fp16 / int8)."""
        return self.n * (self.dim + self.pad) * BYTES_PER_VALUE[self.config.vectors]

    def memory_bytes(self) -> int:
        """Bytes of the whole index: vectors plus the HNSW graph or the IVF centroids and
        lists (faiss: its serialised size)."""
        if self.index is None:
            return self.items.numel() * self.items.element_size()
        return int(_faiss().serialize_index(self.index).nbytes)

    # ------------------------------------------------------------------ search
    def informative(self, users: np.ndarray) -> np.ndarray:
        """``bool [B]``: the user's scores differ between items (``u^T G u > 0`` up to
        rounding); a flat row means the model has nothing to go on (popularity fallback)."""
        u = np.asarray(users, dtype=np.float64)
        spread = np.einsum("bi,ij,bj->b", u, self.gram, u)
        return spread > INFORMATIVE_TOLERANCE * (u * u).sum(1) * self._spread

    def _search(self, users: np.ndarray, fetch: int, deep: bool) -> tuple[np.ndarray, np.ndarray]:
        faiss, c = _faiss(), self.config
        params = None
        if c.kind == "hnsw":
            ef = max(c.hnsw_ef_search, fetch) * (2 if deep else 1)
            params = faiss.SearchParametersHNSW(efSearch=ef)
        elif c.kind == "ivf":
            params = faiss.SearchParametersIVF(nprobe=self.nlist if deep else
                                               min(c.ivf_nprobe, self.nlist))
        return self.index.search(users, fetch, params=params)

    def search(self, users: np.ndarray, k: int,
               seen: Sequence[np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The top ``k`` items of each user, leaving out the user's ``seen`` items.

        Args:
            users: ``float32 [B, d]`` user vectors.
            k: items per user.
            seen: per user, ``int64`` local indices of items to leave out (or None).

        Returns:
            ``float32 [B, k]`` scores (``-inf`` where a user gets fewer than k) and ``int64
            [B, k]`` local item indices (-1 there), best first.
        """
        users = np.ascontiguousarray(users, dtype=np.float32)
        b, k = len(users), min(k, self.n)
        if self.index is None:
            return self._search_torch(users, k, seen)
        users = self._padded(users)
        scores = np.full((b, k), -np.inf, dtype=np.float32)
        ids = np.full((b, k), -1, dtype=np.int64)
        if b == 0 or k == 0:
            return scores, ids
        n_seen = [len(s) for s in seen] if seen is not None else [0] * b
        fetch = min(self.n, k + min(max(n_seen), self.config.max_fetch))
        dist, found = self._search(users, fetch, deep=False)
        short = []
        for r in range(b):
            if not self._keep(r, dist[r], found[r], seen, scores, ids):
                short.append(r)
        for r in short:  # seen items filled the fetched list, or the index found too few
            depth = min(self.n, k + n_seen[r])
            dist, found = self._search(users[r : r + 1], depth, deep=True)
            self._keep(r, dist[0], found[0], seen, scores, ids)
        return scores, ids

    def _keep(self, r: int, dist: np.ndarray, found: np.ndarray,
              seen: Sequence[np.ndarray] | None, scores: np.ndarray, ids: np.ndarray) -> bool:
        """Write row ``r``'s results without seen items; False when it has fewer than it can."""
        ok = found >= 0
        n_unseen = self.n
        if seen is not None and len(seen[r]):
            ok &= ~np.isin(found, seen[r])
            n_unseen -= len(np.unique(seen[r]))
        k = ids.shape[1]
        got = np.flatnonzero(ok)[:k]
        scores[r, : len(got)], ids[r, : len(got)] = dist[got], found[got]
        scores[r, len(got):], ids[r, len(got):] = -np.inf, -1
        return len(got) >= min(k, n_unseen)

    def _search_torch(self, users: np.ndarray, k: int,
                      seen: Sequence[np.ndarray] | None) -> tuple[np.ndarray, np.ndarray]:
        import torch

        scores = torch.from_numpy(users) @ self.items.T  # [B, n]
        for r, items in enumerate(seen or ()):
            scores[r, torch.as_tensor(items, dtype=torch.long)] = float("-inf")
        top = torch.topk(scores, k, dim=1)
        values, ids = top.values.numpy(), top.indices.numpy().astype(np.int64)
        ids[~np.isfinite(values)] = -1
        return values, ids


def quantize_linear(model: Any) -> int:
    """Dynamic int8 quantisation (per-channel weights) of ``model``'s ``nn.Linear`` layers,
    in place; returns how many were quantised (0 for a model without any, or not torch).

    Attention's output projection (``NonDynamicallyQuantizableLinear``) stays fp32, as
    ``quantize_dynamic`` leaves it.
    """
    import torch
    from torch import nn

    if not isinstance(model, nn.Module) or not any(type(m) is nn.Linear
                                                   for m in model.modules()):
        return 0
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():  # torch.ao's deprecation notice
        warnings.simplefilter("ignore", (DeprecationWarning, UserWarning))
        quantize_dynamic(model, {nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8,
                         inplace=True)
    for m in model.modules():
        if isinstance(m, nn.TransformerEncoderLayer):
            # its fused inference path reads ``linear1.weight`` as a tensor, which a quantised
            # Linear does not have: switch that path off (the layer-by-layer path is the same
            # computation; the flag only gates the fused kernel)
            m.activation_relu_or_gelu = 0
    return sum(type(m).__module__.startswith("torch.ao.nn.quantized") for m in model.modules())


class Retriever:
    """The ``RetrievalConfig`` of a bundle: one ``VectorIndex`` per domain, built from the
    model's two-tower item vectors (the target's at once, others on first use).

    With ``quantize_user_encoder`` the fp32 item vectors of every domain the model scores are
    taken first, then the model's ``nn.Linear`` layers are quantised in place: only the user
    side of a request runs in int8.
    """

    def __init__(self, model: Recommender, train: MultiDomainDataset, target: str,
                 config: RetrievalConfig) -> None:
        self.model, self.train, self.config = model, train, config
        self._indexes: dict[str, VectorIndex] = {}
        self._pending: dict[str, np.ndarray] = {}  # fp32 item vectors taken before quantising
        self._lock = threading.Lock()
        name = getattr(model, "name", type(model).__name__)
        self.factorised = model.retrieval_items(target) is not None
        if not self.factorised:
            log.info("model %s has no two-tower view (its score is no dot product): exact "
                     "scoring, retrieval %s not used", name, config.describe())
        if config.quantize_user_encoder:
            if self.factorised:
                for domain in train.domains:
                    try:
                        self._pending[domain] = self._item_vectors(domain)
                    except DataError:  # a domain the model does not score
                        continue
            n = quantize_linear(model)
            log.info("model %s: %s", name, f"{n} nn.Linear layers quantised to int8 (dynamic)"
                     if n else "no nn.Linear layer, user encoder left as it is")
        if self.factorised:
            self.index(target)

    def _item_vectors(self, domain: str) -> np.ndarray:
        import torch

        with torch.no_grad():
            items = self.model.retrieval_items(domain)
        return items.detach().float().cpu().numpy()

    def index(self, domain: str) -> VectorIndex:
        """The domain's index, built on first use (DataError for a domain the model does not
        score)."""
        with self._lock:
            if domain not in self._indexes:
                items = self._pending.pop(domain, None)
                if items is None:
                    items = self._item_vectors(domain)
                index = VectorIndex(items, self.config)
                log.info("retrieval %s for domain %s: %d items x %d dims, %.1f MiB, built in "
                         "%.2f s", self.config.describe(), domain, index.n, index.dim,
                         index.memory_bytes() / 2**20, index.build_seconds)
                self._indexes[domain] = index
            return self._indexes[domain]

    def top_k(self, queries: Sequence[Query], domain: str, k: int,
              seen: Sequence[np.ndarray] | None) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
        """Same contract as ``crossrec.eval.topk.exact_top_k``, through the domain's index
        (exact scoring for a model without a two-tower view)."""
        if not self.factorised:
            from crossrec.eval.topk import exact_top_k

            return exact_top_k(self.model, queries, domain, k, seen)
        import torch

        index = self.index(domain)
        with torch.no_grad():
            users = torch.cat([self.model.retrieval_users(q, domain).float().cpu()
                               for q in queries]).numpy()
        scores, ids = index.search(users, k, seen)
        return torch.from_numpy(scores), torch.from_numpy(ids), index.informative(users)
