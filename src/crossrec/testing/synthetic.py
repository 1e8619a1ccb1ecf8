"""A synthetic two-domain dataset whose right answer is known.

Users belong to latent clusters. Each cluster likes one block of items in the ``source`` domain
and one block in the ``target`` domain, and a user picks mostly from their cluster's blocks. A
cold-start user's source history therefore reveals which target block to recommend: a model
that transfers across domains beats popularity on cold-start users of the target, a model that
only sees the target cannot. Item titles carry the cluster's theme words, so text models can
find the same structure in the text.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from crossrec.data.builder import DatasetBuilder
from crossrec.data.dataset import MultiDomainDataset

THEMES = (
    ("space", "galaxy", "robot", "alien", "starship"),
    ("love", "romance", "wedding", "heart", "kiss"),
    ("murder", "detective", "crime", "mystery", "clue"),
    ("dragon", "magic", "wizard", "quest", "sword"),
    ("war", "soldier", "battle", "army", "general"),
    ("cooking", "kitchen", "recipe", "chef", "feast"),
    ("football", "team", "match", "goal", "stadium"),
    ("ocean", "ship", "pirate", "island", "storm"),
)
DOMAINS = ("source", "target")
KINDS = {"source": "book", "target": "film"}


def _theme(cluster: int) -> tuple[str, ...]:
    words = THEMES[cluster % len(THEMES)]
    suffix = "" if cluster < len(THEMES) else str(cluster // len(THEMES))
    return tuple(w + suffix for w in words)


def _pick(rng: np.random.Generator, pool: np.ndarray, n: int, weights: np.ndarray) -> np.ndarray:
    n = min(n, len(pool))
    if n == 0:
        return pool[:0]
    return rng.choice(pool, size=n, replace=False, p=weights / weights.sum())


def make_two_domain(
    n_users: int = 300,
    n_items: tuple[int, int] = (120, 100),
    n_overlap: int = 200,
    *,
    n_clusters: int = 4,
    interactions_per_user: tuple[int, int] = (8, 16),
    affinity: float = 0.9,
    text_noise: float = 0.0,
    seed: int = 0,
    name: str = "synthetic",
) -> MultiDomainDataset:
    """Two domains, ``"source"`` and ``"target"``, with clustered users.

    The first ``n_overlap`` users interact in both domains; the rest are split between
    source-only and target-only users. Each user draws ``interactions_per_user`` items per
    domain: a share ``affinity`` from their cluster's block (items inside a block have a mild
    popularity skew), the rest uniformly from the domain's other items. Target blocks are a
    permutation of the clusters, so nothing can be read off item positions.

    Item titles (``item_text``) carry two theme words of the item's cluster; a cluster's theme
    is the same in both domains, so related items of different domains share words and a text
    model can transfer without any overlapping user. With ``text_noise`` > 0 a share of the
    items get the theme words of a random other cluster (their interactions do not change), so
    text alone is an imperfect guide and interaction data adds to it.

    Args:
        n_users: users in all.
        n_items: items in the source and in the target domain.
        n_overlap: users with interactions in both domains.
        n_clusters: latent user clusters (= item blocks per domain).
        interactions_per_user: inclusive range of interactions per user and domain.
        affinity: probability that an interaction falls in the user's cluster block.
        text_noise: share of items whose title words come from another cluster's theme (drawn
            from a separate random stream: 0 gives exactly the data of earlier versions).
        seed: random seed.
        name: dataset name.

    Returns:
        The dataset; ``report["synthetic"]`` holds the answer: ``user_cluster`` (per user
        index), ``item_cluster`` (per global item index) and ``text_cluster`` (the cluster
        whose theme an item's title carries, = ``item_cluster`` unless ``text_noise``), plus
        the parameters.
    """
    if not 0 <= n_overlap <= n_users:
        raise ValueError(f"n_overlap must be in [0, n_users], got {n_overlap}")
    if not 0.0 <= text_noise <= 1.0:
        raise ValueError(f"text_noise must be in [0, 1], got {text_noise}")
    rng = np.random.default_rng(seed)
    text_rng = np.random.default_rng([seed, 1])  # apart from rng: noise leaves the rest alone
    user_cluster = rng.integers(n_clusters, size=n_users)
    rest = n_users - n_overlap
    index = np.arange(n_users)
    source_only_end = n_overlap + (rest + 1) // 2
    in_source = index < source_only_end
    in_target = (index < n_overlap) | (index >= source_only_end)
    block_of = {"source": np.arange(n_clusters), "target": rng.permutation(n_clusters)}

    inter_rows, item_rows, item_cluster, text_cluster = [], [], {}, {}
    for domain, n_dom, members in zip(DOMAINS, n_items, (in_source, in_target), strict=True):
        blocks = np.array_split(np.arange(n_dom), n_clusters)
        cluster_of_item = np.empty(n_dom, dtype=np.int64)
        for c in range(n_clusters):
            cluster_of_item[blocks[block_of[domain][c]]] = c
        skew = 1.0 / np.sqrt(1.0 + rng.permutation(n_dom))  # mild popularity skew
        for i in range(n_dom):
            c = int(cluster_of_item[i])
            tc = c
            if text_noise > 0 and n_clusters > 1 and text_rng.random() < text_noise:
                tc = int((c + text_rng.integers(1, n_clusters)) % n_clusters)
            w = _theme(tc)
            a, b = rng.choice(len(w), size=2, replace=False)
            title = f"The {w[a]} {KINDS[domain]}: {w[b]} story {i}"
            item_rows.append({"domain": domain, "item_id": f"{domain[0]}{i}", "title": title,
                              "categories": w[0]})
            item_cluster[(domain, f"{domain[0]}{i}")] = c
            text_cluster[(domain, f"{domain[0]}{i}")] = tc
        lo, hi = interactions_per_user
        for u in np.flatnonzero(members):
            c = user_cluster[u]
            block = blocks[block_of[domain][c]]
            others = np.setdiff1d(np.arange(n_dom), block)
            n = int(rng.integers(lo, hi + 1))
            n_in = int(rng.binomial(n, affinity))
            chosen = np.concatenate([_pick(rng, block, n_in, skew[block]),
                                     _pick(rng, others, n - n_in, skew[others])])
            times = np.sort(rng.integers(1_000_000, 2_000_000, size=len(chosen)))
            for item, t in zip(chosen, times, strict=True):
                inter_rows.append((f"u{u}", f"{domain[0]}{item}", domain, float(t)))

    inter = pd.DataFrame(inter_rows, columns=["user_id", "item_id", "domain", "timestamp"])
    builder = DatasetBuilder(name).add_interactions(inter).add_items(pd.DataFrame(item_rows))
    data = builder.build(domains=DOMAINS)
    users = data.users.index(np.array([f"u{u}" for u in range(n_users)], dtype=object),
                             missing="ignore")
    per_user = np.full(data.n_users, -1, dtype=np.int64)
    per_user[users[users >= 0]] = user_cluster[users >= 0]
    keys = data.items.ids
    item_keys = [tuple(k.split("\x1f", 1)) for k in keys]
    answer = {"user_cluster": per_user.tolist(),
              "item_cluster": [item_cluster[k] for k in item_keys],
              "text_cluster": [text_cluster[k] for k in item_keys],
              "n_clusters": n_clusters, "affinity": affinity, "text_noise": text_noise,
              "seed": seed}
    return replace(data, report={**data.report, "synthetic": answer})
