"""Helpers of the serving tests: the test API key and the synthetic data's right answers."""

from __future__ import annotations

import numpy as np

from crossrec.bundle import Bundle

KEY = "test-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}
ADMIN_KEY = "admin-key-fedcba9876543210"  # opens /admin/* (and every other route)
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


def cluster_of_user(bundle: Bundle, user_id: str) -> int:
    answer = bundle.train.report["synthetic"]
    return int(answer["user_cluster"][int(bundle.train.users.index([user_id])[0])])


def cluster_share(bundle: Bundle, domain: str, item_ids: list[str], cluster: int) -> float:
    """Share of ``item_ids`` (of ``domain``) in the block of ``cluster``."""
    answer = np.asarray(bundle.train.report["synthetic"]["item_cluster"])
    idx = bundle.train.item_index(domain, item_ids)
    return float((answer[idx] == cluster).mean())
