"""A learned cross-domain text score: a small two-tower model on frozen text vectors.

Raw cosine between a user's source-domain titles and target-domain titles carries little (an
Arts title and the Office item the same person buys rarely share words). The two towers learn
the hop instead: the *user tower* maps the recency-weighted text profile of a user's history
outside the ranked domain (``dim``) to ``k`` dimensions, the *item tower* maps a ranked-domain
item's text vector (``dim``) to the same space; each is a one-hidden-layer MLP plus a linear
skip, output L2-normalised. They are trained on the training users who have history inside the
ranked domain and outside it, one pair per (user, inside item), with a softmax over the other
items of the batch (InfoNCE, temperature ``tau``; pairs of the same user or item are not
counted as negatives), for ``epochs`` passes; the epoch kept is the one with the best recall@10
over the batch on 10 % held-out users. The feature is the cosine of the two tower outputs.

Only training rows reach the towers: the ranker fits them on its episodes' training part for
the episodes and on the whole training split for scoring, like every other feature map.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

PREFIX = ("u.w1", "u.b1", "u.w2", "u.skip", "i.w1", "i.b1", "i.w2", "i.skip")


@dataclass
class Towers:
    """Trained weights (numpy, so scoring needs no autograd): per tower ``w1 [dim, h]``,
    ``b1 [h]``, ``w2 [h, k]``, ``skip [dim, k]``."""

    weights: dict[str, np.ndarray]

    def _apply(self, side: str, x: np.ndarray) -> np.ndarray:
        w = self.weights
        h = np.maximum(x @ w[f"{side}.w1"] + w[f"{side}.b1"], 0.0)
        out = h @ w[f"{side}.w2"] + x @ w[f"{side}.skip"]
        return (out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
                ).astype(np.float32)

    def users(self, profiles: np.ndarray) -> np.ndarray:
        """``float32 [B, k]`` user embeddings of ``[B, dim]`` outside-domain profiles."""
        return self._apply("u", np.asarray(profiles, dtype=np.float32))

    def items(self, vectors: np.ndarray) -> np.ndarray:
        """``float32 [N, k]`` item embeddings of ``[N, dim]`` text vectors."""
        return self._apply("i", np.asarray(vectors, dtype=np.float32))


class _Tower(torch.nn.Module):
    def __init__(self, dim: int, hidden: int, k: int) -> None:
        super().__init__()
        self.w1 = torch.nn.Linear(dim, hidden)
        self.w2 = torch.nn.Linear(hidden, k, bias=False)
        self.skip = torch.nn.Linear(dim, k, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.w2(torch.relu(self.w1(x))) + self.skip(x)
        return torch.nn.functional.normalize(out, dim=1)

    def export(self, side: str) -> dict[str, np.ndarray]:
        return {f"{side}.w1": self.w1.weight.detach().T.numpy().copy(),
                f"{side}.b1": self.w1.bias.detach().numpy().copy(),
                f"{side}.w2": self.w2.weight.detach().T.numpy().copy(),
                f"{side}.skip": self.skip.weight.detach().T.numpy().copy()}


def _loss(u: torch.Tensor, v: torch.Tensor, users: torch.Tensor, items: torch.Tensor,
          tau: float) -> torch.Tensor:
    logits = u @ v.T / tau  # [B, B]
    same = (users[:, None] == users[None, :]) | (items[:, None] == items[None, :])
    eye = torch.eye(len(u), dtype=torch.bool)
    logits = logits.masked_fill(same & ~eye, float("-inf"))
    return torch.nn.functional.cross_entropy(logits, torch.arange(len(u)))


def _recall(u: torch.Tensor, v: torch.Tensor, items: torch.Tensor) -> float:
    """Share of held-out pairs whose item is in the user's top 10 over the distinct items."""
    distinct, inverse = torch.unique(items, return_inverse=True)
    iv = torch.zeros(len(distinct), v.shape[1])
    iv[inverse] = v
    top = torch.topk(u @ iv.T, min(10, len(distinct)), dim=1).indices
    return float((top == inverse[:, None]).any(1).float().mean())


def fit_towers(profiles: np.ndarray, users: np.ndarray, items: np.ndarray,
               vectors: np.ndarray, *, seed: int, k: int = 128, hidden: int = 512,
               epochs: int = 12, batch: int = 1024, lr: float = 1e-3,
               weight_decay: float = 1e-5, tau: float = 0.1) -> Towers | None:
    """Train the towers on (user, item) pairs.

    Args:
        profiles: ``float32 [U, dim]`` outside-domain text profile of each user.
        users: ``int64 [P]`` row of ``profiles`` of each pair.
        items: ``int64 [P]`` row of ``vectors`` of each pair.
        vectors: ``float32 [N, dim]`` text vectors of the ranked domain's items.

    Returns:
        The towers, or None with fewer than 50 users to learn from.
    """
    owners = np.unique(users)
    if len(owners) < 50:
        return None
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    held = np.zeros(len(profiles), dtype=bool)
    picked = torch.randperm(len(owners), generator=gen).numpy()[:max(5, len(owners) // 10)]
    held[owners[picked]] = True
    fit_pairs = np.flatnonzero(~held[users])
    val_pairs = np.flatnonzero(held[users])
    dim = profiles.shape[1]
    ut, it = _Tower(dim, hidden, k), _Tower(dim, hidden, k)
    opt = torch.optim.Adam([*ut.parameters(), *it.parameters()], lr=lr,
                           weight_decay=weight_decay)
    p = torch.from_numpy(np.ascontiguousarray(profiles, dtype=np.float32))
    x = torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32))
    pu, pi = torch.from_numpy(users.astype(np.int64)), torch.from_numpy(items.astype(np.int64))
    best, best_recall = None, -1.0
    for _ in range(epochs):
        ut.train()
        it.train()
        order = torch.from_numpy(fit_pairs)[torch.randperm(len(fit_pairs), generator=gen)]
        for start in range(0, len(order), batch):
            idx = order[start:start + batch]
            if len(idx) < 2:
                continue
            loss = _loss(ut(p[pu[idx]]), it(x[pi[idx]]), pu[idx], pi[idx], tau)
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            ut.eval()
            it.eval()
            vp = torch.from_numpy(val_pairs)
            recall = _recall(ut(p[pu[vp]]), it(x[pi[vp]]), pi[vp]) if len(vp) else 0.0
        if recall > best_recall:
            best_recall, best = recall, {**ut.export("u"), **it.export("i")}
    return Towers(best)


def read_towers(state: dict[str, np.ndarray]) -> dict[str, Towers]:
    """The towers of every domain saved as ``tower.<weight>.<domain>`` keys of ``state``."""
    found: dict[str, dict[str, np.ndarray]] = {}
    for key, value in state.items():
        for name in PREFIX:
            head = f"tower.{name}."
            if key.startswith(head):
                found.setdefault(key[len(head):], {})[name] = np.asarray(value)
    return {d: Towers(w) for d, w in found.items() if len(w) == len(PREFIX)}
