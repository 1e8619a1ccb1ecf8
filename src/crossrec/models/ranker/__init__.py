"""The two-stage ranker: candidate sources, leak-free episodes, features, LightGBM."""

from crossrec.models.ranker.model import Ranker, RankerConfig

__all__ = ["Ranker", "RankerConfig"]
