"""ServeSettings: everything `crossrec serve` can be told, validated in one place."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from crossrec.serving.retrieval import RetrievalConfig

KEYS_ENV = "CROSSREC_API_KEYS"  # comma-separated API keys (plain or "sha256:<hex>")
ADMIN_KEYS_ENV = "CROSSREC_ADMIN_KEYS"  # comma-separated admin keys (the /admin/* routes)
LOG_KEY_ENV = "CROSSREC_LOG_KEY"  # secret for the keyed hash of user ids in logs


class ServeSettings(BaseModel):
    """Settings of the HTTP service.

    Attributes:
        auth: require an API key on every route but ``/healthz`` and ``/readyz``.
        keys_file: file of API keys, one per line (plain, or ``sha256:<hex digest>``; ``#``
            starts a comment). Keys from ``keys_env`` are added.
        keys_env: environment variable holding comma-separated keys.
        admin_keys_file: file of admin keys (same format); with auth on, only these open
            ``POST /admin/reload`` and ``POST /admin/rollback`` (and every other route too).
            With no admin key configured the admin routes answer 403.
        admin_keys_env: environment variable holding comma-separated admin keys.
        events: where ``POST /events`` stores interactions: a SQLite file path (the embedded
            default) or a ``postgresql://`` URL.
        max_body_bytes: requests with a larger body get 413.
        max_k: the largest ``k`` a request may ask for.
        max_history: the most history items a request may carry.
        max_batch_events: the most events one ``POST /events`` may carry.
        explain_items: history items returned per recommended item with ``explain=true``.
        batch_users: concurrent ``POST /recommend`` requests (without a history) scored by
            one ``Bundle.recommend`` call, at most (``crossrec.serving.batching``); 1 scores
            each request alone.
        log_key_env: environment variable with the secret of the keyed hash (HMAC-SHA256) of
            user ids in logs; a random per-process secret when unset.
        retrieval: how the top k are found (``crossrec.serving.retrieval``): exact scoring by
            default, or an ANN index / compressed item vectors / an int8 user encoder.
    """

    model_config = ConfigDict(extra="forbid")

    auth: bool = True
    keys_file: Path | None = None
    keys_env: str = KEYS_ENV
    admin_keys_file: Path | None = None
    admin_keys_env: str = ADMIN_KEYS_ENV
    events: str = "events.sqlite"
    max_body_bytes: int = Field(64 * 1024, ge=1024)
    max_k: int = Field(100, ge=1, le=10_000)
    max_history: int = Field(500, ge=1)
    max_batch_events: int = Field(1000, ge=1)
    explain_items: int = Field(3, ge=1, le=50)
    batch_users: int = Field(32, ge=1, le=1024)
    log_key_env: str = LOG_KEY_ENV
    retrieval: RetrievalConfig = Field(default_factory=RetrievalConfig)
