"""Fixtures of the evaluation tests (helpers live in ``eval_toy``)."""

from __future__ import annotations

import numpy as np
import pytest
from eval_toy import FixedScores, toy_split

from crossrec.data import Split


@pytest.fixture
def split() -> Split:
    return toy_split()


@pytest.fixture
def model() -> FixedScores:
    table = np.zeros((4, 6), np.float32)
    table[0] = [9, 8, 5, 7, 1, 0]  # a: m0 (train) and m1 (valid) highest, test m2 ranks 2nd
    table[1] = 0.0  # b: all tied; the unmasked m1, m2, m5 rank by index, test m5 3rd
    table[2] = [0, 3, 0, 0, 2, 5]  # c: m5, then the truths m1 (2nd) and m4 (3rd)
    return FixedScores({"movies": table, "books": np.zeros((4, 2))})
