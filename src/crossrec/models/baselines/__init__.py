"""Baselines: popularity, item-item and user-user kNN, RP3beta, EASE, BPR-MF and implicit ALS
(each on the target or all domains); the sequential SASRec and item-transition models over
mixed-domain sequences."""

from crossrec.models.baselines.als import ALS, ALSConfig
from crossrec.models.baselines.bpr import BPR, BPRConfig
from crossrec.models.baselines.ease import EASE, EASEConfig
from crossrec.models.baselines.itemknn import ItemKNN, ItemKNNConfig
from crossrec.models.baselines.pop import Pop, PopConfig
from crossrec.models.baselines.rp3beta import RP3Beta, RP3BetaConfig
from crossrec.models.baselines.sasrec import SASRec, SASRecConfig
from crossrec.models.baselines.transition import Transition, TransitionConfig
from crossrec.models.baselines.userknn import UserKNN, UserKNNConfig

__all__ = ["ALS", "ALSConfig", "BPR", "BPRConfig", "EASE", "EASEConfig", "ItemKNN",
           "ItemKNNConfig", "Pop", "PopConfig", "RP3Beta", "RP3BetaConfig", "SASRec",
           "SASRecConfig", "Transition", "TransitionConfig", "UserKNN", "UserKNNConfig"]
