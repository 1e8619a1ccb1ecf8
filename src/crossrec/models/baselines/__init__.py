"""Baselines: popularity, item-item kNN, EASE and BPR-MF (each on the target or all domains)."""

from crossrec.models.baselines.bpr import BPR, BPRConfig
from crossrec.models.baselines.ease import EASE, EASEConfig
from crossrec.models.baselines.itemknn import ItemKNN, ItemKNNConfig
from crossrec.models.baselines.pop import Pop, PopConfig

__all__ = ["BPR", "BPRConfig", "EASE", "EASEConfig", "ItemKNN", "ItemKNNConfig", "Pop",
           "PopConfig"]
