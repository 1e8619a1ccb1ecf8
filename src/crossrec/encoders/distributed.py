"""Item-text encoding on several workers with Ray Data, through the same vector cache.

Only the texts the cache lacks leave the driver: they go (longest first, so that a batch holds
texts of similar length) through ``map_batches`` over a pool of ``EncoderActor`` — each actor
loads the encoder once — and every finished batch comes back to the driver, which writes it as
one Parquet shard of the ``VectorCache`` (the format and directory of the single-process path,
so either path reuses what the other encoded, and a rerun encodes nothing).

Example:
    >>> from functools import partial
    >>> factory = partial(load_encoder, "minilm")  # doctest: +SKIP
    >>> vectors, stats = encode_distributed(texts, factory(), factory, workers=2)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from crossrec.cluster import check_workers, ray_session
from crossrec.encoders.base import TextEncoder
from crossrec.encoders.cache import (
    EncodeJob,
    EncodeStats,
    VectorCache,
    announce,
    chunk_size,
    encode_progress,
    open_cache,
)
from crossrec.errors import ConfigError


class EncoderActor:
    """A Ray Data worker: loads the encoder once, then encodes one batch per call.

    Args:
        factory: builds the encoder (pickled to the worker), e.g. ``partial(load_encoder, ...)``.
        key: the driver's encoder key; a worker whose encoder has another key (another model
            or version on that machine) refuses to run rather than fill the cache wrongly.
        batch_size: texts per encoder call within a batch.
    """

    def __init__(self, factory: Callable[[], TextEncoder], key: str, batch_size: int) -> None:
        self.encoder = factory()
        if self.encoder.key != key:
            raise ConfigError(f"worker encoder key {self.encoder.key!r} differs from the "
                              f"driver's {key!r}")
        self.batch_size = batch_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``{"hash": str[b], "text": str[b]}`` -> ``{"hash": str[b], "vector": f32[b, dim]}``."""
        vectors = self.encoder.encode([str(t) for t in batch["text"]],
                                      batch_size=self.batch_size)
        return {"hash": batch["hash"], "vector": np.asarray(vectors, dtype=np.float32)}


def encode_distributed(
    texts: Sequence[str],
    encoder: TextEncoder,
    factory: Callable[[], TextEncoder],
    *,
    workers: int,
    cache: VectorCache | str | Path | None = "default",
    batch_size: int = 64,
    address: str | None = None,
    progress: bool = False,
) -> tuple[np.ndarray, EncodeStats]:
    """``encode_with_stats`` with the missing texts encoded by ``workers`` Ray actors.

    Args:
        texts: one text per item.
        encoder: the encoder as the driver knows it (its ``key`` and ``dim`` address the cache;
            it encodes nothing here).
        factory: builds the same encoder on a worker.
        workers: actors in the pool (one CPU each).
        cache: as in ``encode_with_stats``; None keeps the vectors in memory only.
        batch_size: texts per encoder call; a Ray batch (and a cache shard) holds up to 16
            of them, fewer when that leaves a worker idle or holds over a tenth of the texts.
        address: an existing Ray cluster; None starts a local one.
        progress: say what is encoded and cached, and report progress as batches come back
            (as ``encode_with_stats``; Ray Data's own bars stay off).

    Returns:
        ``(float32 [n, dim], EncodeStats)``, as ``encode_with_stats``.
    """
    check_workers(workers)
    store = open_cache(cache, encoder)
    job = EncodeJob(texts, store, encoder.dim)
    uniq, first, vecs, todo = job.unique, job.first, job.vectors, job.todo
    if progress:
        announce(job, encoder, store)
    if len(todo):
        pos = {uniq[i]: int(i) for i in todo}
        rows = [{"hash": uniq[i], "text": first[uniq[i]]} for i in todo]
        # every worker busy; a batch back at least every tenth of the texts
        chunk = chunk_size(len(rows), batch_size, min(batch_size * 16, -(-len(rows) // workers)))
        done = 0
        with ray_session(workers, address) as ray, encode_progress(len(rows), progress) as advance:
            ray.data.DataContext.get_current().enable_progress_bars = False
            blocks = -(-len(rows) // chunk)
            ds = ray.data.from_items(rows, override_num_blocks=blocks)
            out = ds.map_batches(EncoderActor, fn_constructor_args=(factory, encoder.key,
                                                                    batch_size),
                                 concurrency=min(workers, blocks), batch_size=chunk, num_cpus=1,
                                 batch_format="numpy")
            for batch in out.iter_batches(batch_size=None, batch_format="numpy"):
                got = [str(h) for h in batch["hash"]]
                new = np.asarray(batch["vector"], dtype=np.float32).reshape(len(got), -1)
                if new.shape[1] != encoder.dim:
                    raise ConfigError(f"workers returned {new.shape[1]}-d vectors; the "
                                      f"encoder {encoder.key!r} gives {encoder.dim}")
                vecs[[pos[h] for h in got]] = new
                if store is not None:
                    store.add(got, new)
                done += len(got)
                advance(len(got))
        if done != len(todo):
            raise RuntimeError(f"the workers returned {done} of {len(todo)} vectors")
    return job.result()
