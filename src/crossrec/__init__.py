"""crossrec: cross-domain recommendation with large pretrained models."""

__version__ = "0.1.0"
