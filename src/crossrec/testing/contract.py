"""RecommenderContract: the conformance suite every model's tests inherit.

A model's test file is a few lines::

    class TestItemKNNAll(RecommenderContract):
        model_cls = ItemKNN
        fast_config = {"train_on": "all"}
        transfers = True

The suite fits the model once per class on the synthetic two-domain data
(``make_two_domain``) under a cold-start split of the target, then checks construction,
config validation, score shapes and dtypes, batch == one-by-one scoring, ``state`` ->
``restore`` through safetensors, anonymous users with a ``Query.history``, the two-tower view
(``retrieval_vectors``) where the model has one, determinism, serving and evaluation ranking
tied items alike, and a known answer: a model that transfers must beat popularity on the
cold-start test users.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
import pydantic
import pytest
import torch

from crossrec.data.split import Split, cold_start_users
from crossrec.errors import DataError
from crossrec.eval.topk import top_indices
from crossrec.models.base import FitOptions, Query, Recommender
from crossrec.testing.synthetic import make_two_domain

SOURCE, TARGET = "source", "target"


def recall_at_k(model: Recommender, split: Split, k: int = 10, part: str = "test") -> float:
    """Mean Recall@k over the users of ``split``'s ``part`` truth in the target domain.

    Full ranking of the target's items, training items of the user masked, through the shared
    top-k (``crossrec.eval.topk``); simpler than ``evaluate`` so the known answer depends on
    little beyond the model interface.
    """
    truth = split.truth(part)
    train = split.train
    items = train.domain_items(split.target)
    users = np.unique(truth["user"].to_numpy())
    if len(users) == 0:
        return float("nan")
    scores = model.score(Query(torch.from_numpy(users.astype(np.int64))), split.target)
    scores = scores.detach().cpu().float().clone()
    seen = train.user_items(split.target)[users].tocoo()
    scores[torch.from_numpy(seen.row.astype(np.int64)), torch.from_numpy(
        seen.col.astype(np.int64))] = -torch.inf
    top = top_indices(scores, k).numpy()  # the tie rule of evaluation and serving
    row_of = {u: r for r, u in enumerate(users)}
    hits = np.zeros(len(users))
    sizes = np.zeros(len(users))
    top_sets = [set(row.tolist()) for row in top]
    for u, i in zip(truth["user"].to_numpy(), truth["item"].to_numpy() - items.start, strict=True):
        r = row_of[u]
        sizes[r] += 1
        hits[r] += i in top_sets[r]
    return float(np.mean(hits / sizes))


class RecommenderContract:
    """A pytest mixin: subclass it as ``Test<Model>`` and set the class attributes.

    Attributes:
        model_cls: the Recommender class under test.
        fast_config: config overrides that keep the fit fast (a few seconds).
        transfers: True if this config must beat popularity on cold-start users.
        scores_every_domain: False if the config scores only the target (then scoring another
            domain must raise DataError).
        min_margin: Recall@10 by which a transferring model must beat popularity.
        registered: whether ``MODELS[model_cls.name]`` must be ``model_cls``.
        uses_history: False for models that score every user alike (popularity).
        history_is_exact: True if passing a user's training history as ``Query.history``
            must give the same scores as passing the user (memory-based models).
    """

    model_cls: ClassVar[type[Recommender]]
    fast_config: ClassVar[dict[str, Any]] = {}
    transfers: ClassVar[bool] = False
    scores_every_domain: ClassVar[bool] = True
    min_margin: ClassVar[float] = 0.1
    registered: ClassVar[bool] = True
    uses_history: ClassVar[bool] = True
    history_is_exact: ClassVar[bool] = False

    # ------------------------------------------------------------------ hooks
    def make_model(self, **overrides: Any) -> Recommender:
        """A fresh model with ``fast_config`` (override for models needing more arguments)."""
        return self.model_cls({**self.fast_config, **overrides})

    @staticmethod
    def fit_options(**overrides: Any) -> FitOptions:
        return FitOptions(target=TARGET, sources=(SOURCE,), seed=0, progress=False, **overrides)

    # ------------------------------------------------------------------ fixtures
    @pytest.fixture(scope="class")
    def split(self) -> Split:
        return cold_start_users(make_two_domain(), SOURCE, TARGET, 0.3, seed=0)

    @pytest.fixture(scope="class")
    def fitted(self, split: Split) -> Recommender:
        return self.make_model().fit(split.train, self.fit_options())

    @pytest.fixture(scope="class")
    def users(self, split: Split) -> torch.Tensor:
        """Cold test users, then warm target users, then source-only users: ``[B]``."""
        cold = np.unique(split.truth("test")["user"].to_numpy())[:6]
        warm = split.train.domain_users(TARGET)[:6]
        source_only = np.setdiff1d(split.train.domain_users(SOURCE),
                                   split.train.domain_users(TARGET))[:4]
        return torch.from_numpy(np.concatenate([cold, warm, source_only]).astype(np.int64))

    def _domains(self, model: Recommender, split: Split) -> Iterator[str]:
        for domain in split.train.domains:
            if domain == TARGET or self.scores_every_domain:
                yield domain
            else:
                with pytest.raises(DataError):
                    model.score(Query(torch.tensor([0])), domain)

    # ------------------------------------------------------------------ checks
    def test_default_construction(self) -> None:
        model = self.model_cls()
        assert model.config == self.model_cls.Config()
        assert isinstance(model.config, pydantic.BaseModel)

    def test_registered(self) -> None:
        if not self.registered:
            pytest.skip("model not meant for the registry")
        from crossrec.models import MODELS

        assert MODELS.get(self.model_cls.name) is self.model_cls

    def test_config_round_trip(self) -> None:
        cfg = self.model_cls.Config(**self.fast_config)
        assert self.model_cls.Config(**cfg.model_dump()) == cfg
        assert self.model_cls.Config.model_validate_json(cfg.model_dump_json()) == cfg
        with pytest.raises(pydantic.ValidationError):
            self.model_cls.Config(**{**self.fast_config, "no_such_option": 1})
        with pytest.raises(pydantic.ValidationError):
            self.model_cls({**self.fast_config, "no_such_option": 1})

    def test_score_before_fit_raises(self) -> None:
        with pytest.raises(RuntimeError, match="not fitted"):
            self.make_model().score(Query(torch.tensor([0])), TARGET)

    def test_score_shape_dtype_finite(self, fitted: Recommender, split: Split,
                                      users: torch.Tensor) -> None:
        for domain in self._domains(fitted, split):
            scores = fitted.score(Query(users), domain)
            assert isinstance(scores, torch.Tensor)
            assert scores.shape == (len(users), split.train.info.n_domain_items(domain))
            assert scores.dtype == torch.float32
            assert torch.isfinite(scores).all(), f"non-finite scores in {domain}"

    def test_unknown_domain_raises(self, fitted: Recommender, users: torch.Tensor) -> None:
        with pytest.raises(DataError):
            fitted.score(Query(users), "no-such-domain")

    def test_batch_equals_single(self, fitted: Recommender, split: Split,
                                 users: torch.Tensor) -> None:
        for domain in self._domains(fitted, split):
            batch = fitted.score(Query(users), domain).cpu()
            single = torch.cat([fitted.score(Query(users[i : i + 1]), domain).cpu()
                                for i in range(len(users))])
            torch.testing.assert_close(batch, single, rtol=1e-5, atol=1e-5)

    def test_state_restore(self, fitted: Recommender, split: Split,
                           users: torch.Tensor) -> None:
        from safetensors.numpy import load, save

        state = fitted.state()
        assert all(isinstance(k, str) and isinstance(v, np.ndarray) for k, v in state.items())
        arrays = load(save({k: np.ascontiguousarray(v) for k, v in state.items()}))
        restored = self.make_model().restore(split.train, self.fit_options(), arrays)
        for domain in self._domains(fitted, split):
            torch.testing.assert_close(restored.score(Query(users), domain).cpu(),
                                       fitted.score(Query(users), domain).cpu(),
                                       rtol=1e-6, atol=1e-6)

    def test_bundle_round_trip(self, fitted: Recommender, split: Split, users: torch.Tensor,
                               tmp_path_factory: pytest.TempPathFactory) -> None:
        from crossrec.bundle import Bundle

        spec = {"name": self.model_cls.name, **fitted.config.model_dump()}
        config = {"model": spec, "target": TARGET, "sources": [SOURCE], "seed": 0}
        path = Bundle(fitted, split.train, config).save(tmp_path_factory.mktemp("b") / "bundle")
        loaded = Bundle.load(path)
        assert type(loaded.model) is type(fitted)
        for domain in self._domains(fitted, split):
            torch.testing.assert_close(loaded.model.score(Query(users), domain).cpu(),
                                       fitted.score(Query(users), domain).cpu(),
                                       rtol=1e-6, atol=1e-6)

    def test_serving_matches_evaluation_on_ties(self, fitted: Recommender, split: Split,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
        """``Bundle.recommend`` and evaluation return the same lists when scores tie (the
        model's scores cut into groups of 4 equal values: lower item index first)."""
        from crossrec.bundle import Bundle
        from crossrec.eval.ranking import ranked_items

        score = fitted.score

        def tied(query: Query, domain: str) -> torch.Tensor:
            order = torch.argsort(score(query, domain).float(), dim=1, descending=True,
                                  stable=True)
            return -(torch.argsort(order, dim=1) // 4).float()  # [B, n]: 0, 0, 0, 0, -1, ...

        monkeypatch.setattr(fitted, "score", tied)
        users = np.concatenate([np.unique(split.truth("valid")["user"].to_numpy())[:4],
                                split.train.domain_users(TARGET)[:4]]).astype(np.int64)
        evaluated = ranked_items(fitted, split, users, 10, part="valid")
        config = {"model": {"name": self.model_cls.name}, "target": TARGET,
                  "sources": [SOURCE], "seed": 0}
        served = Bundle(fitted, split.train, config).recommend(
            split.train.users.raw(users).tolist(), TARGET, k=10, exclude_seen=True)
        start = split.train.domain_items(TARGET).start
        for rec, row in zip(served, evaluated, strict=True):
            assert rec.strategy == "model"
            assert (np.asarray(rec.items) - start).tolist() == row.tolist()

    def test_history_query(self, fitted: Recommender, split: Split) -> None:
        src = split.train.domain_items(SOURCE)
        tgt = split.train.domain_items(TARGET)
        history = torch.tensor([[src.start, src.start + 1, tgt.start, -1],
                                [-1, -1, -1, -1],
                                [tgt.start + 2, -1, -1, -1]])
        query = Query(torch.tensor([-1, -1, -1]), history)
        for domain in self._domains(fitted, split):
            scores = fitted.score(query, domain)
            assert scores.shape == (3, split.train.info.n_domain_items(domain))
            assert torch.isfinite(scores).all()

    def test_retrieval_vectors(self, fitted: Recommender, split: Split,
                               users: torch.Tensor) -> None:
        """Where a model has a two-tower view (serving's ANN index), ``users @ items.T`` is
        its score, for known users and for anonymous users with a ``Query.history``."""
        if fitted.retrieval_items(TARGET) is None:
            assert fitted.retrieval_vectors(Query(users), TARGET) is None
            pytest.skip("model has no two-tower view (exact scoring only)")
        src, tgt = split.train.domain_items(SOURCE), split.train.domain_items(TARGET)
        history = torch.tensor([[src.start, src.start + 1, tgt.start, -1],
                                [-1, -1, -1, -1],
                                [tgt.start + 2, src.start + 3, -1, -1]])
        queries = (Query(users), Query(torch.full((3,), -1, dtype=torch.long), history))
        for domain in split.train.domains:
            if domain != TARGET and not self.scores_every_domain:
                with pytest.raises(DataError):
                    fitted.retrieval_vectors(Query(users), domain)
                continue
            for query in queries:
                u, v = fitted.retrieval_vectors(query, domain)
                assert u.dtype == v.dtype == torch.float32
                assert v.shape == (split.train.info.n_domain_items(domain), u.shape[1])
                assert u.shape[0] == len(query.users)
                torch.testing.assert_close((u @ v.T).cpu(), fitted.score(query, domain).cpu(),
                                           rtol=1e-4, atol=1e-4)

    def test_history_replaces_training_history(self, fitted: Recommender, split: Split,
                                               users: torch.Tensor) -> None:
        if not self.history_is_exact:
            pytest.skip("model folds histories in approximately")
        rows = split.train.user_items(None)[users.numpy()]
        width = max(1, int(np.diff(rows.indptr).max()))
        history = torch.full((len(users), width), -1, dtype=torch.long)
        for r in range(len(users)):
            items = rows.indices[rows.indptr[r] : rows.indptr[r + 1]]
            history[r, : len(items)] = torch.from_numpy(items.astype(np.int64))
        anonymous = torch.full_like(users, -1)
        for domain in self._domains(fitted, split):
            torch.testing.assert_close(fitted.score(Query(anonymous, history), domain).cpu(),
                                       fitted.score(Query(users), domain).cpu(),
                                       rtol=1e-5, atol=1e-5)

    def test_history_out_of_range_raises(self, fitted: Recommender, split: Split) -> None:
        if not self.uses_history:
            pytest.skip("model ignores histories")
        history = torch.tensor([[split.train.n_items + 5]])
        with pytest.raises(DataError):
            fitted.score(Query(torch.tensor([-1]), history), TARGET)
        with pytest.raises(DataError):  # anonymous user without a history
            fitted.score(Query(torch.tensor([-1])), TARGET)

    def test_deterministic(self, fitted: Recommender, split: Split,
                           users: torch.Tensor) -> None:
        again = self.make_model().fit(split.train, self.fit_options())
        torch.testing.assert_close(again.score(Query(users), TARGET).cpu(),
                                   fitted.score(Query(users), TARGET).cpu(), rtol=0, atol=0)

    def test_known_answer(self, fitted: Recommender, split: Split) -> None:
        from crossrec.models.baselines.pop import Pop

        pop = Pop().fit(split.train, self.fit_options())
        model_recall, pop_recall = recall_at_k(fitted, split), recall_at_k(pop, split)
        assert np.isfinite(model_recall)
        if self.transfers:
            assert model_recall >= pop_recall + self.min_margin, (
                f"{self.model_cls.__name__} {self.fast_config}: Recall@10 on cold-start users "
                f"{model_recall:.3f} vs popularity {pop_recall:.3f}"
            )
