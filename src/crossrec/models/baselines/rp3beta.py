"""RP3beta: item-item transition probabilities of a 3-step random walk, popularity-damped.

Paudel, Christoffel, Newell & Bernstein, "Updatable, accurate, diverse, and scalable
recommendations for interactive applications" (TiiS 2016); a strong simple baseline in
Dacrema et al., "Are we really making much progress?" (RecSys 2019). A walk user -> item ->
user -> item, each step uniform over the neighbours with probabilities raised to ``alpha``:

``sim[i, j] = sum_{u in U_i ∩ U_j} (|U_i| |I_u|)^-alpha / |U_j|^beta``

``beta > 0`` divides by the popularity of the item reached, so the tail is not drowned by
items everybody has. Rows keep their ``neighbors`` largest entries; a user's score of an item
is the sum over their history, as for ItemKNN (whose scoring, bundling and explanations it
shares). Merged over all domains (``train_on = "all"``), the walk crosses domains through
the users active in both.
"""

from __future__ import annotations

from pydantic import Field

from crossrec.models.base import BaselineConfig
from crossrec.models.baselines.itemknn import ItemKNN


class RP3BetaConfig(BaselineConfig):
    """RP3beta hyper-parameters.

    Attributes:
        neighbors: similar items kept per item and per scored domain.
        alpha: power of the walk's transition probabilities (1 = the plain walk P3; 0 = counts
            of shared users).
        beta: power of the reached item's popularity dividing the score (0 = no damping).
    """

    neighbors: int = Field(200, ge=1)
    alpha: float = Field(1.0, ge=0.0)
    beta: float = Field(0.5, ge=0.0)


class RP3Beta(ItemKNN):
    """RP3beta over the target catalogue or all domains merged (see the module docstring)."""

    Config = RP3BetaConfig  # type: ignore[assignment]
    name = "rp3beta"
    config: RP3BetaConfig  # type: ignore[assignment]

    def _terms(self) -> dict[str, float]:
        """The walk's weighting of ``item_similarity``."""
        c = self.config
        return {"shrink": 0.0, "user_power": c.alpha, "row_power": c.alpha,
                "column_power": c.beta}
