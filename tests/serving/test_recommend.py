"""POST /recommend for each kind of user, explanations, and POST /recommend/text."""

from __future__ import annotations

import numpy as np
import torch
from serving_toy import AUTH, cluster_of_user, cluster_share

from crossrec.bundle import Bundle
from crossrec.models.baselines.itemknn import ItemKNN


def post(client, body, path="/recommend"):
    r = client.post(path, json=body, headers=AUTH)
    assert r.status_code == 200, r.text
    return r.json()


def test_user_known_in_target(client, bundle, users):
    uid = users["target"]
    out = post(client, {"user_id": uid, "domain": "target", "k": 10})
    assert out["strategy"] == "model" and out["basis"] == "target"
    assert out["model_version"] == bundle.version and len(bundle.version) == 16
    ids = [i["item_id"] for i in out["items"]]
    assert len(ids) == 10 and all(i.startswith("t") for i in ids)
    scores = [i["score"] for i in out["items"]]
    assert scores == sorted(scores, reverse=True)
    inter = bundle.train.domain_interactions("target")
    seen = set(bundle.train.item_ids(
        inter[inter["user"] == bundle.train.users.index([uid])[0]]["item"].to_numpy()))
    assert seen and not seen & set(ids)  # exclude_seen is the default
    again = post(client, {"user_id": uid, "domain": "target", "k": 50, "exclude_seen": False})
    assert seen & {i["item_id"] for i in again["items"]}
    assert out["items"][0]["title"].startswith("The ")


def test_source_only_user_gets_target_items_of_their_cluster(client, bundle, users):
    uid = users["source_only"]
    out = post(client, {"user_id": uid, "k": 10})  # domain defaults to the bundle's target
    assert out["domain"] == "target"
    assert out["strategy"] == "model" and out["basis"] == "source_only"
    ids = [i["item_id"] for i in out["items"]]
    assert len(ids) == 10 and all(i.startswith("t") for i in ids)
    # the right answer of the synthetic data: the target block of the user's cluster
    assert cluster_share(bundle, "target", ids, cluster_of_user(bundle, uid)) >= 0.8
    # the API answers exactly what the one inference path (Bundle.recommend) answers
    assert ids == bundle.recommend([uid], "target", 10)[0].item_ids


def test_anonymous_history_of_either_form(client, bundle, users):
    uid = users["source_only"]
    train = bundle.train
    mine = train.user_items("source")[train.users.index([uid])[0]].indices
    history_ids = train.item_ids(mine + train.domain_items("source").start).tolist()
    history = [f"source:{i}" for i in history_ids[:4]] + [
        {"domain": "source", "item_id": i} for i in history_ids[4:]] + ["source:no-such-item"]
    out = post(client, {"history": history, "domain": "target", "k": 10})
    assert out["user_id"] is None
    assert out["strategy"] == "model" and out["basis"] == "request_history"
    assert out["ignored_history"] == 1
    ids = [i["item_id"] for i in out["items"]]
    assert cluster_share(bundle, "target", ids, cluster_of_user(bundle, uid)) >= 0.8
    # the same evidence as the user's stored history gives the same list
    assert ids == [i["item_id"] for i in post(client, {"user_id": uid, "k": 10})["items"]]
    # history items of the asked domain are not recommended back
    back = post(client, {"history": history, "domain": "source", "k": 30})
    assert not set(history_ids) & {i["item_id"] for i in back["items"]}


def test_unknown_user_gets_popular_items(client, bundle):
    out = post(client, {"user_id": "never-seen-user", "domain": "target", "k": 5})
    assert out["strategy"] == "popular_fallback" and out["basis"] == "none"
    pop = bundle.train.item_popularity("target")
    top = bundle.train.item_ids(np.argsort(-pop, kind="stable")[:5]
                                + bundle.train.domain_items("target").start).tolist()
    assert [i["item_id"] for i in out["items"]] == top
    assert [i["score"] for i in out["items"]] == sorted(pop, reverse=True)[:5]
    # an unknown user with a history is scored by the model from it
    out = post(client, {"user_id": "never-seen-user", "history": ["source:s0"], "k": 5})
    assert out["strategy"] == "model" and out["basis"] == "request_history"


def test_explanations_name_history_items_and_domain(client, bundle, users):
    uid = users["source_only"]
    out = post(client, {"user_id": uid, "k": 5, "explain": True})
    train = bundle.train
    mine = set(train.item_ids(train.user_items("source")[train.users.index([uid])[0]].indices
                              + train.domain_items("source").start))
    for item in out["items"]:
        assert 1 <= len(item["because"]) <= 3
        weights = [b["weight"] for b in item["because"]]
        assert weights == sorted(weights, reverse=True) and weights[0] > 0
        for b in item["because"]:
            assert b["domain"] == "source" and b["item_id"] in mine
    # without explain=true there are none
    assert post(client, {"user_id": uid, "k": 5})["items"][0]["because"] is None
    # popular fallback: no history, so no evidence
    fb = post(client, {"user_id": "nobody-here", "k": 3, "explain": True})
    assert all(i["because"] == [] for i in fb["items"])


def test_explanation_weights_are_cooccurrence_cosine(bundle, users):
    uid = users["source_only"]
    rec = bundle.recommend([uid], "target", 3, explain=2)[0]
    x = bundle.train.user_items(None).toarray() > 0
    for item, because in zip(rec.items, rec.because, strict=True):
        for ev in because:
            h = bundle.train.item_index(ev.domain, [ev.item_id])[0]
            both = (x[:, h] & x[:, item]).sum()
            expected = both / np.sqrt(x[:, h].sum() * x[:, item].sum())
            assert abs(ev.weight - expected) < 1e-6


class WordOverlapKNN(ItemKNN):
    """Test double: an ItemKNN with a text hook scoring items by words shared with the title."""

    def score_text(self, texts: list[str], domain: str) -> torch.Tensor:
        train = self._check_fitted()
        s = train.domain_items(domain)
        titles = [set(t.lower().replace(":", " ").split()) for t in train.item_text[s]]
        return torch.tensor([[float(len(set(q.lower().split()) & t)) for t in titles]
                             for q in texts])


def test_text_route(make_client, bundle):
    model = WordOverlapKNN(bundle.model.config)
    model.restore(bundle.train, bundle.model.options, bundle.model.state())
    texts = Bundle(model, bundle.train, bundle.config)
    client = make_client(texts)
    out = post(client, {"text": "a galaxy robot alien starship", "domain": "target", "k": 5},
               "/recommend/text")
    assert out["strategy"] == "text" and out["model_version"] == "unsaved"
    titles = [i["title"].lower() for i in out["items"]]
    assert all(any(w in t for w in ("galaxy", "robot", "alien", "starship")) for t in titles)


def test_text_route_without_text_encoder_is_a_clear_4xx(client):
    r = client.post("/recommend/text", json={"text": "space films"}, headers=AUTH)
    assert r.status_code == 400
    assert "no text encoder" in r.json()["detail"]
