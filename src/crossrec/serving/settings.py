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
        keys_file: file of API keys, one per line: the key (plain, or ``sha256:<hex digest>``)
            then optionally ``role=read|write|admin`` and ``name=<id>`` (``#`` starts a
            comment). A key without a role is ``write`` (what every key could do before roles
            existed). Keys from ``keys_env`` are added (comma-separated entries, same format).
        keys_env: environment variable holding comma-separated keys.
        admin_keys_file: file of admin keys (same format, role ``admin`` whatever is written).
            With no admin key configured the admin routes answer 403.
        admin_keys_env: environment variable holding comma-separated admin keys.
        events: where ``POST /events`` stores interactions: a SQLite file path (the embedded
            default) or a ``postgresql://`` URL.
        max_body_bytes: requests with a larger body get 413.
        max_header_bytes: requests with larger headers (all of them together) get 431; also
            the HTTP parser's limit (``uvicorn_options``).
        rate_limit_per_second: requests a second each API key may make (per worker process),
            beyond ``rate_limit_burst`` at once; more get 429 with ``Retry-After``. Without
            auth, per client address. 0 turns the limit off.
        rate_limit_burst: requests a key may make at once before the rate applies.
        header_timeout_s: seconds a connection may take to send a request's headers (from
            its opening, or from the previous answer) before it is closed (slowloris cut).
        body_timeout_s: seconds a request's body may take to arrive once its headers have.
        keep_alive_s: seconds an idle keep-alive connection is kept open.
        max_requests_per_connection: requests one keep-alive connection may carry; the last
            answer closes it.
        max_connections: concurrent connections (and tasks) per worker; beyond, 503.
        graceful_shutdown_s: on SIGTERM, seconds the requests in flight get before they are cut.
        forwarded_allow_ips: comma-separated addresses of reverse proxies whose
            ``X-Forwarded-For`` / ``X-Forwarded-Proto`` are trusted (``*``: any).
        tls_cert / tls_key: PEM certificate and key: serve HTTPS with uvicorn's own TLS.
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
    max_header_bytes: int = Field(16 * 1024, ge=1024, le=1024 * 1024)
    rate_limit_per_second: float = Field(1000.0, ge=0)
    rate_limit_burst: int = Field(2000, ge=1)
    header_timeout_s: float = Field(10.0, gt=0, le=600)
    body_timeout_s: float = Field(30.0, gt=0, le=3600)
    keep_alive_s: float = Field(5.0, gt=0, le=600)
    max_requests_per_connection: int = Field(1000, ge=1)
    max_connections: int = Field(1000, ge=1)
    graceful_shutdown_s: float = Field(30.0, ge=0, le=3600)
    forwarded_allow_ips: str = "127.0.0.1"
    tls_cert: Path | None = None
    tls_key: Path | None = None
    max_k: int = Field(100, ge=1, le=10_000)
    max_history: int = Field(500, ge=1)
    max_batch_events: int = Field(1000, ge=1)
    explain_items: int = Field(3, ge=1, le=50)
    batch_users: int = Field(32, ge=1, le=1024)
    log_key_env: str = LOG_KEY_ENV
    retrieval: RetrievalConfig = Field(default_factory=RetrievalConfig)

    def uvicorn_options(self) -> dict[str, object]:
        """Keyword arguments of ``uvicorn.run`` / ``uvicorn.Config`` that bound what one
        connection may hold: the h11 parser (whose incomplete-request limit caps the headers)
        with a deadline for each request's headers and body and a request cap per connection
        (``crossrec.serving.protocol``), the keep-alive timeout, the connection cap, the
        graceful-shutdown bound, the trusted proxies, and TLS when both files are set.

        Raises:
            ConfigError: only one of ``tls_cert`` / ``tls_key``, a missing file, or files that
                are not a PEM certificate and its key.
        """
        import functools

        from crossrec.serving.protocol import ConnectionLimits, GuardedH11Protocol

        limits = ConnectionLimits(self.header_timeout_s, self.body_timeout_s,
                                  self.max_requests_per_connection)
        opts: dict[str, object] = {
            "http": functools.partial(GuardedH11Protocol, limits=limits),
            "h11_max_incomplete_event_size": self.max_header_bytes,
            "timeout_keep_alive": self.keep_alive_s,
            "limit_concurrency": self.max_connections,
            "timeout_graceful_shutdown": self.graceful_shutdown_s,
            "proxy_headers": True,
            "forwarded_allow_ips": self.forwarded_allow_ips,
        }
        tls = check_tls(self.tls_cert, self.tls_key)
        if tls is not None:
            opts["ssl_certfile"], opts["ssl_keyfile"] = tls
        return opts


def check_tls(cert: Path | None, key: Path | None) -> tuple[str, str] | None:
    """The TLS certificate and key paths, checked to load together (None: no TLS).

    Raises:
        ConfigError: one without the other, a missing file, or not a PEM pair.
    """
    import ssl

    from crossrec.errors import ConfigError

    if (cert is None) != (key is None):
        raise ConfigError("--tls-cert and --tls-key go together: give both")
    if cert is None or key is None:
        return None
    for path in (cert, key):
        if not Path(path).is_file():
            raise ConfigError(f"{path}: no such file (TLS certificate or key)")
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as e:
        raise ConfigError(f"{cert} / {key}: not a PEM certificate and its private key "
                          f"({e.__class__.__name__}: {getattr(e, 'reason', None) or e})"
                          ) from None
    return str(cert), str(key)
