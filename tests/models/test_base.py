"""choose_on_validation: the grid search every model uses for a scalar set after training."""

from crossrec.models.base import choose_on_validation


def test_best_value_is_applied_and_ties_go_to_the_first_listed() -> None:
    applied: list[float] = []
    scores = {0.0: 0.1, 1.0: 0.3, 3.0: 0.3, 10.0: 0.2}
    model = object()

    def validate(m: object) -> float:
        assert m is model
        return scores[applied[-1]]

    chosen, curve = choose_on_validation([0, 1, 3, 10], applied.append, model, validate)
    assert chosen == 1.0 and applied[-1] == 1.0  # left applied
    assert curve == {"0.0": 0.1, "1.0": 0.3, "3.0": 0.3, "10.0": 0.2}
    assert applied[:4] == [0.0, 1.0, 3.0, 10.0]


def test_one_value_or_no_validation_applies_the_first_unscored() -> None:
    def never(m: object) -> float:
        raise AssertionError("validated a value that needs no choice")

    for values, validate in (([0.5], never), ([0.5, 2.0], None)):
        applied: list[float] = []
        chosen, curve = choose_on_validation(values, applied.append, object(), validate)
        assert chosen == 0.5 and applied == [0.5] and curve == {}
