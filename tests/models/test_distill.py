"""distill: the contract for both students (EASE(all) teacher, which transfers on the synthetic
data), reproducing the teacher's top-10 under pure distillation, the teacher fitted once, a
text teacher (hashing test encoder), and the teacher-score cache being only a cache."""

from collections.abc import Iterator

import numpy as np
import pydantic
import pytest
import torch

from crossrec.data.split import Split, cold_start_users
from crossrec.errors import DataError
from crossrec.models.base import FitOptions, Query, Recommender
from crossrec.models.baselines import EASE, Pop
from crossrec.models.distill import Distill
from crossrec.testing import make_two_domain
from crossrec.testing.contract import RecommenderContract, recall_at_k
from crossrec.testing.text import hashing_encoder

TEACHER = {"name": "ease", "train_on": "all"}
FAST = {"teacher": TEACHER, "epochs": 8, "encoder": "hashing"}


@pytest.fixture(scope="module", autouse=True)
def test_encoder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    with hashing_encoder(cache_dir=tmp_path_factory.mktemp("cache")):
        yield


class TestDistillMF(RecommenderContract):
    model_cls = Distill
    fast_config = {**FAST, "student": "mf"}
    transfers = True
    scores_every_domain = False


class TestDistillMLP(RecommenderContract):
    model_cls = Distill
    fast_config = {**FAST, "student": "mlp"}
    transfers = True
    scores_every_domain = False
    history_is_exact = True  # a user is the mean of their history's text vectors


@pytest.fixture(scope="module")
def split() -> Split:
    return cold_start_users(make_two_domain(), "source", "target", 0.3, seed=0)


def _options() -> FitOptions:
    return FitOptions(target="target", sources=("source",), seed=0, progress=False)


def _top10_overlap(a: Recommender, b: Recommender, split: Split, users: np.ndarray) -> float:
    """Mean share of the top-10 target items (training items masked) the two models share."""
    query = Query(torch.from_numpy(users.astype(np.int64)))
    seen = split.train.user_items("target")[users].tocoo()
    tops = []
    for model in (a, b):
        s = model.score(query, "target").clone()
        s[torch.from_numpy(seen.row.astype(np.int64)),
          torch.from_numpy(seen.col.astype(np.int64))] = -torch.inf
        tops.append(torch.topk(s, 10, dim=1).indices.numpy())
    return float(np.mean([len(set(x) & set(y)) / 10 for x, y in zip(*tops, strict=True)]))


def test_pure_distillation_reproduces_the_teachers_top10(split: Split) -> None:
    teacher = EASE(train_on="all").fit(split.train, _options())
    student = Distill({**FAST, "student": "mf", "alpha": 1.0, "epochs": 25},
                      fitted_teacher=teacher).fit(split.train, _options())
    users = np.unique(split.train.interactions["user"].to_numpy())  # training users
    cold = np.unique(split.truth("valid")["user"].to_numpy())  # no target training item
    assert _top10_overlap(teacher, student, split, users) >= 0.8
    assert _top10_overlap(teacher, student, split, cold) >= 0.8  # learned from the teacher only


def test_teacher_is_fitted_once(split: Split, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    fit = EASE.fit

    def counting(self, train, options):  # noqa: ANN001, ANN202
        calls.append(1)
        return fit(self, train, options)

    monkeypatch.setattr(EASE, "fit", counting)
    model = Distill({**FAST, "epochs": 2}).fit(split.train, _options())
    assert len(calls) == 1 and isinstance(model.teacher, EASE)
    again = Distill({**FAST, "epochs": 2}, fitted_teacher=model.teacher)
    again.fit(split.train, _options())
    assert len(calls) == 1 and again.teacher is model.teacher
    assert "teacher" not in "".join(again.state())  # the student is saved alone


def test_unfitted_or_foreign_teacher_raises(split: Split) -> None:
    with pytest.raises(ValueError, match="not fitted"):
        Distill(FAST, fitted_teacher=EASE()).fit(split.train, _options())
    other = cold_start_users(make_two_domain(n_users=120, n_overlap=80), "source", "target",
                             0.3, seed=0)
    teacher = Pop().fit(other.train, _options())
    with pytest.raises(ValueError, match="other data"):
        Distill(FAST, fitted_teacher=teacher).fit(split.train, _options())


def test_teacher_config_is_validated() -> None:
    with pytest.raises(pydantic.ValidationError, match="teacher needs a 'name'"):
        Distill(teacher={"name": "no_such_model"})
    with pytest.raises(pydantic.ValidationError, match="teacher needs a 'name'"):
        Distill(teacher={"name": "distill"})
    with pytest.raises(pydantic.ValidationError, match="teacher 'ease'"):
        Distill(teacher={"name": "ease", "train_on": "everything"})


def test_text_teacher_mlp_student_transfers_to_cold_users(split: Split) -> None:
    text = {"name": "text_zero_shot", "encoder": "hashing"}
    model = Distill({"teacher": text, "student": "mlp", "epochs": 8}).fit(split.train,
                                                                           _options())
    assert model.config.text_config().encoder == "hashing"  # the teacher's encoder
    pop = Pop().fit(split.train, _options())
    assert recall_at_k(model, split) >= recall_at_k(pop, split) + 0.1
    with pytest.raises(DataError, match="only its target"):
        model.score(Query(torch.tensor([0])), "source")


def test_uncached_teacher_scores_give_the_same_student(split: Split) -> None:
    teacher = EASE(train_on="all").fit(split.train, _options())
    users = torch.arange(20)
    cached = Distill({**FAST, "epochs": 2}, fitted_teacher=teacher).fit(split.train, _options())
    fresh = Distill({**FAST, "epochs": 2, "teacher_cache_mb": 0.0},
                    fitted_teacher=teacher).fit(split.train, _options())
    torch.testing.assert_close(fresh.score(Query(users), "target"),
                               cached.score(Query(users), "target"), rtol=0, atol=0)
