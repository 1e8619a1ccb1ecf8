"""User histories as model input: per-domain padded item lists and masked mean pooling.

Models that represent a user by the items they interacted with (rather than by a free user
vector) read each user's training history restricted to some domains, or the history a
``Query`` carries, as a left-padded ``[B, L]`` array of global item indices (-1 = padding,
most recent item in the last column, as in ``crossrec.data.sequence``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from crossrec.data.sequence import user_sequences
from crossrec.errors import DataError

if TYPE_CHECKING:
    from crossrec.data.dataset import MultiDomainDataset


def training_histories(train: MultiDomainDataset, domains: Sequence[str],
                       max_len: int) -> torch.Tensor:
    """``int64 [n_users, max_len]`` each user's last ``max_len`` training items of ``domains``.

    Left-padded with -1; a user without items there has a row of -1.
    """
    seq = user_sequences(train, list(domains))
    return torch.from_numpy(seq.padded(np.arange(train.n_users), max_len))


def select_history(history: torch.Tensor, item_domain: torch.Tensor, domains: torch.Tensor,
                   max_len: int) -> torch.Tensor:
    """The items of ``domains`` in a query history, the last ``max_len`` of them, left-padded.

    Args:
        history: ``[B, L]`` global item indices, -1 = padding, oldest first.
        item_domain: ``int64 [n_items]`` domain code of every item.
        domains: ``int64 [k]`` domain codes to keep.
        max_len: columns of the result.

    Returns:
        ``int64 [B, max_len]``; the kept items in their order, right-aligned, -1 before them.
    """
    h = history.to(dtype=torch.long)
    keep = (h >= 0) & torch.isin(item_domain[h.clamp(min=0)], domains)
    from_end = keep.flip(1).cumsum(1).flip(1)  # kept items at this position or later
    keep = keep & (from_end <= max_len)
    out = torch.full((h.shape[0], max_len), -1, dtype=torch.long, device=h.device)
    rows, cols = keep.nonzero(as_tuple=True)
    out[rows, max_len - from_end[rows, cols]] = h[rows, cols]
    return out


def check_query(train: MultiDomainDataset, users: torch.Tensor,
                history: torch.Tensor | None) -> None:
    """DataError for a user index out of range without a history, or a bad history."""
    if history is None:
        if len(users) and (int(users.min()) < 0 or int(users.max()) >= train.n_users):
            raise DataError(f"user index out of range [0, {train.n_users}) and no history "
                            "given; an anonymous user needs Query.history")
        return
    if history.ndim != 2:
        raise DataError(f"Query.history must be [B, L], got shape {tuple(history.shape)}")
    if history.numel() and int(history.max()) >= train.n_items:
        raise DataError(f"Query.history has item index {int(history.max())} >= {train.n_items}")


def masked_mean(table: nn.Embedding, history: torch.Tensor,
                drop: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean embedding of each row's items.

    Args:
        table: item embeddings (global item indices), ``[n_items, d]``.
        history: ``[B, L]`` item indices, -1 = padding.
        drop: optional ``[B]`` item per row to leave out (e.g. the positive being predicted).

    Returns:
        ``[B, d]`` means (0 for a row without items) and ``int64 [B]`` item counts.
    """
    mask = history >= 0
    if drop is not None:
        mask = mask & (history != drop[:, None])
    counts = mask.sum(1)
    weights = mask.float() / counts.clamp(min=1)[:, None].float()  # [B, L]
    return torch.einsum("bl,bld->bd", weights, table(history.clamp(min=0))), counts
