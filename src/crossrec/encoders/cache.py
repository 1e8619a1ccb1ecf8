"""On-disk vector cache keyed by (encoder key, text hash), stored as Parquet shards."""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from crossrec.encoders.base import TextEncoder


def text_hash(text: str) -> str:
    """sha1 hex digest of the UTF-8 text (the cache key of one item)."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


class VectorCache:
    """Vectors of one encoder in ``root/<encoder key>/part-*.parquet`` (``hash``, ``vector``).

    Shards are written whole to a temporary file and renamed, so a crash never leaves a
    half-written shard; several writers (processes, workers) never touch the same file.
    """

    def __init__(self, root: str | Path, key: str, dim: int) -> None:
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", key)
        self.dir, self.key, self.dim = Path(root) / slug, key, dim
        self._index: dict[str, int] | None = None
        self._vectors = np.zeros((0, dim), dtype=np.float32)

    def _load(self) -> None:
        import pyarrow.parquet as pq

        hashes, blocks = [], []
        for f in sorted(self.dir.glob("part-*.parquet")):
            t = pq.read_table(f)
            col = t.column("vector").combine_chunks()
            vec = col.values.to_numpy(zero_copy_only=False).reshape(len(t), -1)
            if vec.shape[1] != self.dim:
                continue  # another dimension under the same key: ignore, never mix
            hashes.extend(t.column("hash").to_pylist())
            blocks.append(vec.astype(np.float32, copy=False))
        self._vectors = np.concatenate(blocks) if blocks else self._vectors
        self._index = {h: i for i, h in enumerate(hashes)}  # a later shard wins

    def lookup(self, hashes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(found bool[n], vectors float32[n, dim])``; rows not found are zero."""
        if self._index is None:
            self._load()
        rows = np.array([self._index.get(h, -1) for h in hashes], dtype=np.int64)
        found = rows >= 0
        out = np.zeros((len(hashes), self.dim), dtype=np.float32)
        out[found] = self._vectors[rows[found]]
        return found, out

    def add(self, hashes: Sequence[str], vectors: np.ndarray) -> Path | None:
        """Write one new shard with ``vectors`` (``[n, dim]``); returns its path."""
        if len(hashes) == 0:
            return None
        import pyarrow as pa
        import pyarrow.parquet as pq

        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        flat = pa.array(vectors.reshape(-1), type=pa.float32())
        table = pa.table({"hash": pa.array(list(hashes), type=pa.string()),
                          "vector": pa.FixedSizeListArray.from_arrays(flat, self.dim)})
        self.dir.mkdir(parents=True, exist_ok=True)
        name = f"part-{uuid.uuid4().hex}.parquet"
        tmp = self.dir / f".{name}.tmp"
        pq.write_table(table, tmp)
        tmp.rename(self.dir / name)
        if self._index is not None:
            base = len(self._vectors)
            self._vectors = np.concatenate([self._vectors, vectors])
            self._index.update({h: base + i for i, h in enumerate(hashes)})
        return self.dir / name


def encode_items(texts: Sequence[str], encoder: TextEncoder, *,
                 cache: VectorCache | str | Path | None = "default", batch_size: int = 64,
                 progress: bool = True) -> np.ndarray:
    """``float32 [n, dim]`` vectors of ``texts``, encoding only texts the cache lacks.

    Args:
        texts: one text per item.
        encoder: the text encoder.
        cache: a VectorCache, a cache root directory, "default" (``$CROSSREC_CACHE/vectors``)
            or None (no cache).
        batch_size: texts per encoder call.
        progress: show a progress bar while encoding.
    """
    if isinstance(cache, (str, Path)):
        from crossrec.config import cache_dir

        root = cache_dir() / "vectors" if cache == "default" else Path(cache)
        cache = VectorCache(root, encoder.key, encoder.dim)
    hashes = [text_hash(t) for t in texts]
    uniq = list(dict.fromkeys(hashes))
    first = {h: t for h, t in zip(hashes, texts, strict=True)}
    if cache is not None:
        found, vecs = cache.lookup(uniq)
    else:
        found, vecs = np.zeros(len(uniq), dtype=bool), np.zeros((len(uniq), encoder.dim),
                                                                 dtype=np.float32)
    todo = np.flatnonzero(~found)
    if len(todo):
        chunk = max(batch_size * 16, 1024)
        starts = range(0, len(todo), chunk)
        if progress:
            from rich.progress import track

            starts = track(starts, description=f"encoding {len(todo)} texts",
                           total=len(starts))
        for s in starts:
            idx = todo[s:s + chunk]
            new = encoder.encode([first[uniq[i]] for i in idx], batch_size=batch_size)
            vecs[idx] = new
            if cache is not None:
                cache.add([uniq[i] for i in idx], new)
    pos = {h: i for i, h in enumerate(uniq)}
    return vecs[np.array([pos[h] for h in hashes], dtype=np.int64)] if hashes else vecs
