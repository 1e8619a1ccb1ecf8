"""Data layer: vocabularies, the multi-domain dataset, its builder, readers and splits."""

from crossrec.data.builder import DatasetBuilder
from crossrec.data.dataset import DatasetInfo, MultiDomainDataset
from crossrec.data.split import Split, cold_start_users, leave_one_out, predefined, temporal
from crossrec.data.vocab import Vocabulary

__all__ = [
    "DatasetBuilder",
    "DatasetInfo",
    "MultiDomainDataset",
    "Split",
    "Vocabulary",
    "cold_start_users",
    "leave_one_out",
    "predefined",
    "temporal",
]
