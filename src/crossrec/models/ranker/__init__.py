"""The two-stage ranker: candidate sources, leak-free episodes, features, LightGBM."""

from crossrec.models.ranker.config import RankerConfig
from crossrec.models.ranker.model import Ranker

__all__ = ["Ranker", "RankerConfig"]
