"""On-disk vector cache keyed by (encoder key, text hash), stored as Parquet shards."""

from __future__ import annotations

import hashlib
import re
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
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
        try:
            pq.write_table(table, tmp)
            tmp.rename(self.dir / name)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        if self._index is not None:
            base = len(self._vectors)
            self._vectors = np.concatenate([self._vectors, vectors])
            self._index.update({h: base + i for i, h in enumerate(hashes)})
        return self.dir / name


def open_cache(cache: VectorCache | str | Path | None, encoder: TextEncoder
               ) -> VectorCache | None:
    """The VectorCache of ``encoder`` under a root directory, "default"
    (``$CROSSREC_CACHE/vectors``), a VectorCache as it is, or None (no cache)."""
    if isinstance(cache, (str, Path)):
        from crossrec.paths import cache_dir

        root = cache_dir() / "vectors" if cache == "default" else Path(cache)
        return VectorCache(root, encoder.key, encoder.dim)
    return cache


@dataclass(frozen=True)
class EncodeStats:
    """What one ``encode_items`` call did."""

    items: int  # texts asked for
    unique: int  # distinct texts among them
    encoded: int  # distinct texts encoded now
    from_cache: int  # distinct texts found in the cache
    seconds: float

    @property
    def items_per_second(self) -> float:
        return self.items / self.seconds if self.seconds > 0 else float("inf")

    def summary(self) -> str:
        """One readable line: ``3,000 items: encoded 12, from cache 2,988, ...``."""
        return (f"{self.items:,} items ({self.unique:,} distinct texts): encoded {self.encoded:,}, "
                f"from cache {self.from_cache:,}, {self.seconds:.1f} s, "
                f"{self.items_per_second:,.0f} items/s")


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
        progress: say what is encoded with which model and where it is cached (or that the
            cache had it all), and report progress: a bar on a terminal, else a plain line
            on stdout at least every 10 % of the texts.
    """
    return encode_with_stats(texts, encoder, cache=cache, batch_size=batch_size,
                             progress=progress)[0]


class EncodeJob:
    """What one encode call has to do, and its answer: shared by the in-process and Ray paths.

    Texts are deduplicated by hash; the cache answers what it holds; ``todo`` indexes the
    missing unique texts, longest first (less padding per batch). Fill ``vectors[todo]``, then
    ``result()`` gives ``(float32 [n, dim] in the order of texts, EncodeStats)``.
    """

    def __init__(self, texts: Sequence[str], cache: VectorCache | None, dim: int) -> None:
        self.start = time.perf_counter()
        self.n_texts = len(texts)
        self.hashes = [text_hash(t) for t in texts]
        self.unique = list(dict.fromkeys(self.hashes))
        self.first = {h: t for h, t in zip(self.hashes, texts, strict=True)}
        if cache is not None:
            self.found, self.vectors = cache.lookup(self.unique)
        else:
            self.found = np.zeros(len(self.unique), dtype=bool)
            self.vectors = np.zeros((len(self.unique), dim), dtype=np.float32)
        todo = np.flatnonzero(~self.found)
        lengths = [-len(self.first[self.unique[i]]) for i in todo]
        self.todo = todo[np.argsort(lengths, kind="stable")]

    def result(self) -> tuple[np.ndarray, EncodeStats]:
        index = {h: i for i, h in enumerate(self.unique)}
        rows = np.array([index[h] for h in self.hashes], dtype=np.int64)
        out = self.vectors[rows] if self.hashes else self.vectors
        stats = EncodeStats(items=self.n_texts, unique=len(self.unique), encoded=len(self.todo),
                            from_cache=int(self.found.sum()),
                            seconds=time.perf_counter() - self.start)
        return out, stats


def encode_with_stats(texts: Sequence[str], encoder: TextEncoder, *,
                      cache: VectorCache | str | Path | None = "default", batch_size: int = 64,
                      progress: bool = True) -> tuple[np.ndarray, EncodeStats]:
    """``encode_items`` that also says what it did: ``(float32 [n, dim], EncodeStats)``.

    Texts to encode go longest first in chunks of up to ``16 * batch_size`` (each chunk is one
    cache shard, so an interrupted run keeps what it finished), and at most a tenth of them, so
    that progress is reported at least every 10 %; a chunk is a whole number of batches where
    the texts allow, so the encoder pads them as it would in one direct call.
    """
    cache = open_cache(cache, encoder)
    job = EncodeJob(texts, cache, encoder.dim)
    uniq, first, vecs, todo = job.unique, job.first, job.vectors, job.todo
    if progress:
        announce(job, encoder, cache)
    if len(todo):
        chunk = chunk_size(len(todo), batch_size, max(batch_size * 16, 1024))
        with encode_progress(len(todo), progress) as advance:
            for s in range(0, len(todo), chunk):
                idx = todo[s:s + chunk]
                new = encoder.encode([first[uniq[i]] for i in idx], batch_size=batch_size)
                vecs[idx] = new
                if cache is not None:
                    cache.add([uniq[i] for i in idx], new)
                advance(len(idx))
    return job.result()


def chunk_size(n: int, batch_size: int, most: int) -> int:
    """Texts per encoder call (and cache shard): at most ``most`` and a tenth of ``n``, in
    whole batches when a tenth holds one."""
    c = max(1, min(most, n // 10))
    return c - c % batch_size if c >= batch_size else c


def encode_progress(total: int, shown: bool) -> AbstractContextManager[Callable[[int], None]]:
    """``crossrec.console.progress`` of the encoding, or a silent stand-in."""

    from crossrec.console import progress

    return progress(total, "encoding item texts") if shown else nullcontext(lambda n: None)


def _home(path: Path) -> str:
    """``path`` with the home directory written ``~``."""
    try:
        return "~/" + path.resolve().relative_to(Path.home().resolve()).as_posix()
    except (ValueError, RuntimeError):
        return str(path)


def announce(job: EncodeJob, encoder: TextEncoder, cache: VectorCache | None) -> None:
    """One line saying what will be encoded with which model, and where vectors are cached
    (or that the cache has them all)."""
    from crossrec.console import note

    spec = getattr(encoder, "spec", None)
    model = getattr(spec, "model", None) or encoder.key
    found = int(job.found.sum())
    if not job.n_texts:
        return
    if not len(job.todo):
        where = f" from the cache {_home(cache.dir)}" if cache is not None else ""
        note(f"loaded {job.n_texts:,} item vectors ({len(job.unique):,} distinct texts){where}; "
             "nothing to encode")
        return
    known = f" ({found:,} of {len(job.unique):,} distinct texts cached)" if found else ""
    where = (f"caching vectors in {_home(cache.dir)}" if cache is not None
             else "no vector cache")
    note(f"encoding {len(job.todo):,} item texts{known} with {model}; {where}")
