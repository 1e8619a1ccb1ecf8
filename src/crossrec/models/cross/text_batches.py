"""Training batches of the text-transfer model: next-item windows, augmented views, targets.

Pre-training reads each user's source-domain sequence (left-padded, last ``L + 1`` items): the
state at every position predicts the next item, and two augmented views of the sequence (item
drop or crop) feed the sequence-sequence contrastive loss. Adaptation reads one example per
target-domain training interaction: the input is either the user's source-domain history alone
(the case of a cold-start user, whose target history is empty) or the user's mixed-domain
history before that interaction.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch

from crossrec.data.sequence import PAD, Sequences


@dataclass
class SequenceBatch:
    """One batch of either stage.

    Attributes:
        inputs: ``[B, L]`` global item indices, -1 = padding (left-padded).
        targets: pre-training ``[B, L]`` next item per position (-1 = none); adaptation ``[B]``.
        candidates: ``[C]`` sorted global item indices the targets are ranked among (they
            include every target); None = every item of the target domain.
        view_a, view_b: ``[B, L]`` two augmented views of each sequence (pre-training), or None.
    """

    inputs: torch.Tensor
    targets: torch.Tensor
    candidates: torch.Tensor | None = None
    view_a: torch.Tensor | None = None
    view_b: torch.Tensor | None = None

    def to(self, device: str | torch.device) -> SequenceBatch:
        return SequenceBatch(**{f.name: None if getattr(self, f.name) is None
                                else getattr(self, f.name).to(device) for f in fields(self)})


def windows(items: np.ndarray, starts: np.ndarray, ends: np.ndarray, length: int) -> np.ndarray:
    """``int64 [B, length]`` the last ``length`` entries of ``items[starts[b]:ends[b]]``,
    left-padded with -1."""
    out = np.full((len(ends), length), PAD, dtype=np.int64)
    back = length - np.arange(length)  # 1 .. length positions before the end
    src = ends[:, None] - back[None, :]
    valid = src >= starts[:, None]
    out[valid] = items[src[valid]]
    return out


def augment(seqs: np.ndarray, rng: np.random.Generator, *, drop: float,
            crop: float) -> np.ndarray:
    """A random view of each left-padded row: item drop (half the rows) or a contiguous crop.

    Item drop removes each item with probability ``drop``; crop keeps a random window of
    ``ceil(crop * n)`` of the row's ``n`` items. At least one item always stays. Returns
    ``int64 [B, L]``, left-padded again.
    """
    b, length = seqs.shape
    valid = seqs >= 0
    n = valid.sum(1)
    m = np.maximum(1, np.ceil(crop * n)).astype(np.int64)
    start = (length - n) + (rng.random(b) * (n - m + 1)).astype(np.int64)
    cols = np.arange(length)[None, :]
    cropped = (cols >= start[:, None]) & (cols < (start + m)[:, None])
    dropped = rng.random((b, length)) >= drop
    keep = np.where((rng.random(b) < 0.5)[:, None], cropped, dropped) & valid
    empty = ~keep.any(1)
    keep[empty, -1] = valid[empty, -1]
    out = np.where(keep, seqs, PAD)
    order = np.argsort(keep, axis=1, kind="stable")  # dropped (False) first: left-pad again
    return np.take_along_axis(out, order, 1)


def by_length(lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Row indices in batches of similar length (less padding to compute), batches shuffled.

    Rows are sorted by length with random tie-breaking, cut into batches, and the batches
    are put in random order.
    """
    order = np.lexsort((rng.random(len(lengths)), lengths))
    chunks = [order[s:s + batch_size] for s in range(0, len(order), batch_size)]
    return [chunks[i] for i in rng.permutation(len(chunks))]


def with_negatives(targets: np.ndarray, pool: np.ndarray, n_negatives: int,
                   rng: np.random.Generator) -> torch.Tensor:
    """Sorted unique candidates: the batch's targets (in-batch negatives for each other) plus
    ``n_negatives`` items drawn uniformly from ``pool``."""
    drawn = pool[rng.integers(len(pool), size=n_negatives)] if n_negatives else pool[:0]
    return torch.from_numpy(np.unique(np.concatenate([targets[targets >= 0], drawn])))


def pretrain_batches(seq: Sequences, pool: np.ndarray, *, max_len: int, batch_size: int,
                     n_negatives: int, drop: float, crop: float, views: bool,
                     rng: np.random.Generator):  # noqa: ANN201 (generator)
    """One epoch of next-item batches over the users with at least two items in ``seq``.

    Args:
        seq: source-domain sequences.
        pool: global item indices negatives are drawn from (the source items).
        max_len: input length L.
        batch_size: users per batch.
        n_negatives: sampled negatives per batch.
        drop, crop: augmentation settings of the views.
        views: build the two augmented views.
        rng: random generator of the epoch.
    """
    users = np.flatnonzero(seq.lengths() >= 2)
    for rows in by_length(np.minimum(seq.lengths()[users], max_len + 1), batch_size, rng):
        arr = seq.padded(users[rows], max_len + 1)
        inputs, targets = arr[:, :-1], arr[:, 1:].copy()
        targets[inputs < 0] = PAD
        va = vb = None
        if views:
            va = torch.from_numpy(augment(arr[:, 1:], rng, drop=drop, crop=crop))
            vb = torch.from_numpy(augment(arr[:, 1:], rng, drop=drop, crop=crop))
        yield SequenceBatch(torch.from_numpy(inputs), torch.from_numpy(targets),
                            with_negatives(targets.reshape(-1), pool, n_negatives, rng), va, vb)


def adapt_batches(full: Sequences, source: Sequences, item_domain: np.ndarray, target: int,
                  pool: np.ndarray, *, max_len: int, batch_size: int, n_negatives: int,
                  cold_share: float, rng: np.random.Generator):  # noqa: ANN201 (generator)
    """One epoch of (history, target item) examples: one random target training interaction
    per user who has any (an epoch is cheap; over epochs every interaction is drawn).

    Args:
        full: mixed-domain sequences of every user.
        source: source-domain sequences of every user.
        item_domain: ``[n_items]`` domain code per item.
        target: domain code of the target.
        pool: the target's global items (for sampled negatives).
        max_len: input length L.
        batch_size: examples per batch.
        n_negatives: 0 = rank among every target item; else in-batch + sampled negatives.
        cold_share: probability that an example's input is the source history alone.
        rng: random generator of the epoch.
    """
    positions = np.flatnonzero(item_domain[full.items] == target)
    owner = np.repeat(np.arange(full.n_users), full.lengths())[positions]
    shuffled = rng.permutation(len(positions))
    _, first = np.unique(owner[shuffled], return_index=True)  # a random one per user
    pos, users = positions[shuffled[first]], owner[shuffled[first]]
    mixed = windows(full.items, full.indptr[users], pos, max_len)
    alone = source.padded(users, max_len)
    cold = rng.random(len(users)) < cold_share
    every_input = np.where(cold[:, None], alone, mixed)  # [n_users_with_target, L]
    for rows in by_length((every_input >= 0).sum(1), batch_size, rng):
        inputs, targets = every_input[rows], full.items[pos[rows]]
        cand = with_negatives(targets, pool, n_negatives, rng) if n_negatives else None
        yield SequenceBatch(torch.from_numpy(inputs), torch.from_numpy(targets), cand)
