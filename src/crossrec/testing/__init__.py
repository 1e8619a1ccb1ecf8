"""Testing helpers: synthetic two-domain data with a known answer and the model contract.

``RecommenderContract`` imports pytest, so import it from ``crossrec.testing.contract``.
"""

from crossrec.testing.synthetic import make_two_domain

__all__ = ["make_two_domain"]
