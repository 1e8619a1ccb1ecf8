"""The ``meta`` feature group: TF-IDF category/brand tokens, a known answer, restore, reasons."""

import numpy as np
import pandas as pd
import pytest
import torch

from crossrec.data import DatasetBuilder
from crossrec.data.split import cold_start_users
from crossrec.models.base import FitOptions, Query
from crossrec.models.ranker import Ranker
from crossrec.models.ranker.metadata import item_meta, meta_features, meta_names
from crossrec.testing.contract import SOURCE, TARGET
from crossrec.testing.synthetic import make_two_domain

BASE = {"candidates": [{"name": "pop", "n": 100}], "n_estimators": 40, "episode_ratio": 0.5,
        "negatives": 40, "min_child_samples": 5}
NO_META = ["sources", "popularity", "history"]


@pytest.fixture(scope="module")
def split():
    return cold_start_users(make_two_domain(), SOURCE, TARGET, 0.3, seed=0)


def _options() -> FitOptions:
    return FitOptions(target=TARGET, sources=(SOURCE,), seed=0, progress=False)


def _catalogue() -> DatasetBuilder:
    items = pd.DataFrame({
        "item_id": ["a", "b", "c", "d"], "domain": ["x", "x", "y", "y"],
        "categories": ["Paper, Pens", "paper glue", "pens ink", ""],
        "brand": ["Acme", "", "acme", "Zeta"]})
    inter = pd.DataFrame({"user_id": ["u", "u", "v"], "item_id": ["a", "b", "c"],
                          "domain": ["x", "x", "y"]})
    return DatasetBuilder("m").add_interactions(inter).add_items(items)


def test_tokens_are_unit_tfidf_rows_with_brand_as_one_token() -> None:
    data = _catalogue().build()
    meta = item_meta(data)
    assert meta is not None and meta.brand is not None
    norms = np.sqrt(np.asarray(meta.tokens.multiply(meta.tokens).sum(1)).ravel())
    np.testing.assert_allclose(norms, 1.0, atol=1e-6)  # every item has a word or a brand
    ids = list(data.item_ids(np.arange(data.n_items)))
    a, c, d = ids.index("a"), ids.index("c"), ids.index("d")
    assert meta.brand[a] == meta.brand[c] >= 0 and meta.brand[d] not in (-1, meta.brand[a])
    sim = (meta.tokens @ meta.tokens.T).toarray()
    assert sim[a, c] > 0 and sim[c, d] == 0  # "pens" and the brand acme; nothing shared


def test_no_columns_without_categories_or_brand() -> None:
    inter = pd.DataFrame({"user_id": ["u"], "item_id": ["a"], "domain": ["x"]})
    data = DatasetBuilder("n").add_interactions(inter).build()
    assert item_meta(data) is None
    assert meta_names(data.domains, None) == []
    assert meta_features(None, np.zeros(3, np.int64), np.array([0, 3]),
                         np.zeros((1, 2), np.int64), np.zeros((1, 2)), 1, 0.8) == []


def test_max_profile_and_brand_share_known_values() -> None:
    data = _catalogue().build()
    meta = item_meta(data)
    ids = list(data.item_ids(np.arange(data.n_items)))
    a, b, c, d = (ids.index(k) for k in "abcd")
    dx = data.info.domain_index("x")
    hist = np.array([[a, b]])
    dom = np.array([[dx, dx]])
    cols = meta_features(meta, np.array([c, d]), np.array([0, 2]), hist, dom,
                         len(data.domains), 0.5)
    names = meta_names(data.domains, meta)
    got = dict(zip(names, cols, strict=True))
    sim = (meta.tokens @ meta.tokens.T).toarray()
    np.testing.assert_allclose(got["meta:x:max"], [max(sim[c, a], sim[c, b]), 0.0], atol=1e-6)
    prof = 0.5 * meta.tokens[a].toarray() + meta.tokens[b].toarray()
    prof /= np.linalg.norm(prof)
    np.testing.assert_allclose(got["meta:x:profile"],
                               (meta.tokens[[c, d]].toarray() @ prof.T).ravel(), atol=1e-6)
    assert np.isnan(got["meta:y:max"]).all()  # no history in y
    np.testing.assert_allclose(got["meta:brand"], [0.5, 0.0])  # a is acme, b has no brand


def test_categories_alone_separate_the_right_items(split) -> None:
    """Popularity is the only source and text is off: only the category words (the cluster's
    theme in both domains) can tell a cold user's cluster, so ``meta`` must win clearly."""
    from crossrec.testing.contract import recall_at_k

    with_meta = Ranker({**BASE, "features": [*NO_META, "meta"]}).fit(split.train, _options())
    without = Ranker({**BASE, "features": NO_META}).fit(split.train, _options())
    r_meta, r_none = recall_at_k(with_meta, split), recall_at_k(without, split)
    assert r_meta >= r_none + 0.15, (r_meta, r_none)


def test_meta_survives_restore_and_explains(split) -> None:
    from crossrec.models.ranker.explain import _reason

    spec = {**BASE, "features": [*NO_META, "meta"]}
    model = Ranker(spec).fit(split.train, _options())
    assert "meta:source:max" in model.features.names(split.train)
    users = torch.arange(12)
    restored = Ranker(spec).restore(split.train, _options(), model.state())
    torch.testing.assert_close(restored.score(Query(users), TARGET),
                               model.score(Query(users), TARGET))
    item = split.train.domain_items(TARGET).start
    src = np.arange(split.train.domain_items(SOURCE).start,
                    split.train.domain_items(SOURCE).start + 3)
    assert _reason(model, "meta:source:max", item, src).startswith("same categories as '")


def test_token_columns_do_not_depend_on_the_hash_seed() -> None:
    """The vocabulary's column order is fixed, so a bundle restored in another process (another
    PYTHONHASHSEED) sums the same products in the same order as the process that fitted it."""
    import subprocess
    import sys

    code = ("import numpy as np, pandas as pd\n"
            "from crossrec.data import DatasetBuilder\n"
            "from crossrec.models.ranker.metadata import item_meta\n"
            "words = ' '.join(f'w{i}' for i in range(40))\n"
            "items = pd.DataFrame({'item_id': ['a', 'b'], 'domain': ['x', 'x'],\n"
            "                      'categories': [words, 'w3 w7 w11'], 'brand': ['Acme', '']})\n"
            "inter = pd.DataFrame({'user_id': ['u'], 'item_id': ['a'], 'domain': ['x']})\n"
            "m = item_meta(DatasetBuilder('m').add_interactions(inter).add_items(items).build())\n"
            "print(m.tokens.indices.tolist())\n")
    out = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={**__import__("os").environ, "PYTHONHASHSEED": seed}).stdout
           for seed in ("1", "2", "3")}
    assert len(out) == 1, out


def _per_user_reference(meta, gitems, starts, hist, dom, n_domains, decay):
    """The per-user formulation the batched ``meta_features`` replaced."""
    feats = np.full((len(gitems), 2 * n_domains + 1), np.nan, dtype=np.float32)
    cand = meta.tokens[gitems]
    for r in range(hist.shape[0]):
        a, b = starts[r], starts[r + 1]
        valid = hist[r] >= 0
        if a == b or not valid.any():
            continue
        h, hd = hist[r][valid], dom[r][valid]
        ht = meta.tokens[h]
        sims = (cand[a:b] @ ht.T).toarray()
        gram = (ht @ ht.T).toarray()
        for d in range(n_domains):
            m = np.flatnonzero(hd == d)
            if not len(m):
                continue
            w = decay ** np.arange(len(m))[::-1]
            norm = np.sqrt(max(float(w @ gram[np.ix_(m, m)] @ w), 0.0))
            feats[a:b, 2 * d] = sims[:, m].max(1)
            feats[a:b, 2 * d + 1] = sims[:, m] @ w / norm if norm > 0 else 0.0
        cb, hb = meta.brand[gitems[a:b]], meta.brand[h]
        feats[a:b, -1] = np.where(cb >= 0, (cb[:, None] == hb[None, :]).mean(1), np.nan)
    return list(feats.T)


def test_batched_products_equal_the_per_user_ones_bit_for_bit() -> None:
    rng = np.random.default_rng(3)
    n_items, words = 300, [f"w{i}" for i in range(40)]
    items = pd.DataFrame({
        "item_id": [f"i{k}" for k in range(n_items)],
        "domain": rng.choice(["x", "y"], n_items),
        "categories": [" ".join(rng.choice(words, rng.integers(0, 6))) for _ in range(n_items)],
        "brand": rng.choice(["", "acme", "zeta", "orbit"], n_items)})
    inter = pd.DataFrame({"user_id": ["u"] * n_items, "item_id": items["item_id"],
                          "domain": items["domain"]})
    data = DatasetBuilder("m").add_interactions(inter).add_items(items).build()
    meta = item_meta(data)
    b, length = 7, 12
    hist = rng.integers(0, n_items, (b, length))
    for r, pad in enumerate([0, 3, 12, 5, 0, 11, 1]):  # left padding; user 2 has none
        hist[r, :pad] = -1
    dom = np.where(hist >= 0, rng.integers(0, 2, hist.shape), -1)
    sizes = np.array([5, 0, 9, 4, 13, 2, 6])  # user 1 has no candidates
    starts = np.concatenate([[0], np.cumsum(sizes)])
    gitems = rng.integers(0, n_items, starts[-1])
    got = meta_features(meta, gitems, starts, hist, dom, 2, 0.8)
    ref = _per_user_reference(meta, gitems, starts, hist, dom, 2, 0.8)
    for g, r in zip(got, ref, strict=True):
        np.testing.assert_array_equal(g, r)
    assert np.isfinite(got[0][starts[3]:starts[4]]).any()
