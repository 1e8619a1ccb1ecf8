"""The ``[split]`` table of an experiment file: one pydantic class per split kind.

``SplitConfig`` is their discriminated union (chosen by ``kind``); a key of another kind is an
error. Seeded kinds (drawn anew per run seed unless ``seed_follows_run = false``) derive from
``_Seeded``. Re-exported by ``crossrec.config``; every field's ``description`` is what the
generated experiment-file reference (docs) prints.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Split(_Strict):
    """Fields of every split kind: the target domain and the source role(s) of the models."""

    target: str | None = Field(None, description=(
        "The domain evaluated (its users or items held out). Required, except with "
        "`eval.protocol = \"next_item\"` on a `predefined` split, which evaluates every "
        "domain's held-out rows; there it only names the target role of the models (default: "
        "the domain with the most test rows)."))
    source: list[str] = Field(default_factory=list, description=(
        "The source domain(s) of the transfer models (default: every other domain)."))

    @property
    def redrawn_per_seed(self) -> bool:
        """Whether each run seed draws its own split (only seeded kinds can)."""
        return False

    def split_seed(self, run_seed: int) -> int:
        """The seed the split is drawn with for ``run_seed`` (0 when it does not follow)."""
        return 0


class _Seeded(_Split):
    """A split that draws (users or items) with a seed: a new draw per run seed by default."""

    valid_share: float = Field(0.5, gt=0.0, lt=1.0, description=(
        "Share of the held-out users (items) that go to validation; the rest are test."))
    seed_follows_run: bool = Field(True, description=(
        "Draw the split anew with every run seed (false: one draw, with seed 0)."))

    @property
    def redrawn_per_seed(self) -> bool:
        return self.seed_follows_run

    def split_seed(self, run_seed: int) -> int:
        return run_seed if self.seed_follows_run else 0


class _FewShot(_Split):
    """Few-shot target users: each truth user keeps their first ``n_shots`` target
    interactions in training; truth = their rows after the first ``shot_pool`` (default
    ``n_shots``), only users with more than ``shot_pool`` (``crossrec.data.split.few_shot``)."""

    n_shots: int = Field(0, ge=0, description=(
        "Target interactions each test user keeps in training (0 = cold)."))
    shot_pool: int | None = Field(None, ge=0, description=(
        "Truth = a user's target rows after the first `shot_pool` (default `n_shots`), so "
        "that several `n_shots` are scored on the same rows."))


class ColdStartUsersSplit(_Seeded, _FewShot):
    """A ``ratio`` of the users in source and target lose their target interactions."""

    kind: Literal["cold_start_users"] = "cold_start_users"
    ratio: float = Field(0.2, gt=0.0, lt=1.0, description=(
        "Share of the users found in a source and the target whose target rows are held "
        "out."))


class ColdStartItemsSplit(_Seeded):
    """A ``ratio`` of the target's items lose all their interactions (held out)."""

    kind: Literal["cold_start_items"] = "cold_start_items"
    ratio: float = Field(0.2, gt=0.0, lt=1.0, description=(
        "Share of the target's items whose every interaction is held out."))


class NewDomainSplit(_Seeded):
    """The target is new: no target interaction in training at all."""

    kind: Literal["new_domain"] = "new_domain"


class LeaveOneOutSplit(_Split):
    """Per target user: the last interaction is test, the one before valid."""

    kind: Literal["leave_one_out"] = "leave_one_out"
    min_interactions: int = Field(3, ge=1, description=(
        "Users with fewer target interactions are not held out."))


class TemporalSplit(_Split):
    """A global time cut in the target: the latest ``test_frac`` test, ``valid_frac`` before."""

    kind: Literal["temporal"] = "temporal"
    valid_frac: float = Field(0.1, gt=0.0, lt=1.0, description=(
        "Share of the target's interactions, just before the test ones, held out as valid."))
    test_frac: float = Field(0.1, gt=0.0, lt=1.0, description=(
        "Share of the target's latest interactions held out as test."))

    @model_validator(mode="after")
    def _fractions(self) -> TemporalSplit:
        if self.valid_frac + self.test_frac >= 1.0:
            raise ValueError(f"valid_frac + test_frac must be < 1, got {self.valid_frac} + "
                             f"{self.test_frac}")
        return self


class PredefinedSplit(_FewShot):
    """The split the source ships with (its ``part`` column: a split file of
    ``crossrec prepare tabular ... -o split=FILE``)."""

    kind: Literal["predefined"] = "predefined"


SplitConfig = Annotated[ColdStartUsersSplit | ColdStartItemsSplit | NewDomainSplit
                        | LeaveOneOutSplit | TemporalSplit | PredefinedSplit,
                        Field(discriminator="kind")]
"""``[split]``: one class per kind, chosen by ``kind``."""

SPLITS: dict[str, type[_Split]] = {c.model_fields["kind"].default: c for c in (
    ColdStartUsersSplit, ColdStartItemsSplit, NewDomainSplit, LeaveOneOutSplit, TemporalSplit,
    PredefinedSplit)}
"""Each split kind's class, by ``kind``."""
