"""choose_on_validation: the grid search every model uses for a scalar set after training."""

from crossrec.models.base import choose_on_validation


def test_best_value_is_applied_and_ties_go_to_the_first_listed() -> None:
    applied: list[float] = []
    scores = {0.0: 0.1, 1.0: 0.3, 3.0: 0.3, 10.0: 0.2}

    chosen, curve = choose_on_validation([0, 1, 3, 10], applied.append,
                                         lambda: scores[applied[-1]])
    assert chosen == 1.0 and applied[-1] == 1.0  # left applied
    assert curve == {"0.0": 0.1, "1.0": 0.3, "3.0": 0.3, "10.0": 0.2}
    assert applied[:4] == [0.0, 1.0, 3.0, 10.0]


def test_a_single_value_is_scored_and_kept() -> None:
    applied: list[float] = []
    chosen, curve = choose_on_validation([0.5], applied.append, lambda: float("nan"))
    assert chosen == 0.5 and applied[-1] == 0.5 and list(curve) == ["0.5"]
