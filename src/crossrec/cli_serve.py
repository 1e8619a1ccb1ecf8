"""``crossrec recommend`` and ``crossrec serve``: the two commands that answer from a bundle."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from crossrec.console import console
from crossrec.console import fail as _fail
from crossrec.errors import ConfigError, CrossrecError

if TYPE_CHECKING:
    from crossrec.serving.retrieval import RetrievalConfig
    from crossrec.serving.settings import ServeSettings


def recommend(
    bundle: Annotated[Path, typer.Argument(help="A bundle directory written by 'crossrec train'")],
    user: Annotated[list[str], typer.Option("--user", "-u", help="Raw user id (repeatable)")],
    domain: Annotated[str | None, typer.Option(help="Domain to recommend in")] = None,
    k: Annotated[int, typer.Option("-k", min=1, help="How many items")] = 10,
    include_seen: Annotated[bool, typer.Option(help="Keep items the user already has")] = False,
) -> None:
    """Top-k items for users (an unknown user gets the popular items, and is told so)."""
    from crossrec.bundle import Bundle

    try:
        b = Bundle.load(bundle)
        recs = b.recommend(user, domain, k, exclude_seen=not include_seen)
    except CrossrecError as e:
        _fail(e)
    for r in recs:
        t = Table(title=f"user {r.user_id} -> {r.domain} ({r.strategy})")
        t.add_column("#", justify="right")
        t.add_column("item_id")
        t.add_column("title")
        t.add_column("score", justify="right")
        idx = b.train.item_index(r.domain, r.item_ids)
        for i, (item, sc, ii) in enumerate(zip(r.item_ids, r.scores, idx, strict=True), 1):
            t.add_row(str(i), item, b.train.item_text[ii][:70], f"{sc:.4f}")
        console.print(t)


def serve(
    bundle: Annotated[Path, typer.Argument(help="A bundle directory written by 'crossrec "
                                           "train', or a bundle store ('crossrec update'): "
                                           "its live version")],
    host: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    keys_file: Annotated[Path | None, typer.Option(help="API keys, one per line (plain or "
                                                   "sha256:<hex>); $CROSSREC_API_KEYS adds "
                                                   "more")] = None,
    admin_keys_file: Annotated[Path | None, typer.Option(
        help="Admin keys (same format): only they open POST /admin/reload and "
             "/admin/rollback; $CROSSREC_ADMIN_KEYS adds more")] = None,
    no_auth: Annotated[bool, typer.Option("--no-auth", help="Serve without API keys "
                                          "(trusted networks only)")] = False,
    events: Annotated[str, typer.Option(help="Event store: SQLite file or postgresql:// URL")
                      ] = "events.sqlite",
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error")] = "info",
    processes: Annotated[int, typer.Option(min=1, help="Server processes on one port (each "
                                           "loads the bundle; they share the event store)")
                         ] = 1,
    workers: Annotated[int | None, typer.Option(hidden=True, help="Deprecated: --processes")
                       ] = None,
    retrieval: Annotated[str, typer.Option(help="Top-k search: exact (every item scored, the "
                                           "default), flat, hnsw or ivf (a faiss index over "
                                           "the item vectors of a factorised model)")
                         ] = "exact",
    vectors: Annotated[str, typer.Option(help="Item vectors searched: fp32, fp16 or int8")
                       ] = "fp32",
    quantize_user_encoder: Annotated[bool, typer.Option(
        "--quantize-user-encoder", help="Dynamic int8 quantisation of the model's Linear "
        "layers (the user side; item vectors are taken in fp32 first)")] = False,
    ef_search: Annotated[int | None, typer.Option(help="HNSW candidates per query")] = None,
    nprobe: Annotated[int | None, typer.Option(help="IVF cells searched per query")] = None,
    batch_users: Annotated[int, typer.Option(min=1, max=1024, help="Concurrent /recommend "
                                             "requests scored by one model call, at most "
                                             "(1: each alone)")] = 32,
    tls_cert: Annotated[Path | None, typer.Option(help="PEM certificate: serve HTTPS "
                                                  "(with --tls-key)")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="PEM private key of --tls-cert")] = None,
    header_timeout: Annotated[float, typer.Option(help="Seconds a request's headers may take "
                                                  "to arrive (slow clients are cut)")] = 10.0,
    body_timeout: Annotated[float, typer.Option(help="Seconds a request's body may take "
                                                "once its headers have arrived")] = 30.0,
    keep_alive: Annotated[float, typer.Option(help="Seconds an idle keep-alive connection "
                                              "stays open")] = 5.0,
    max_requests_per_connection: Annotated[int, typer.Option(
        help="Requests one keep-alive connection may carry")] = 1000,
    limit_concurrency: Annotated[int, typer.Option(help="Connections at once per process; "
                                                   "beyond, 503")] = 1000,
    max_header_bytes: Annotated[int, typer.Option(help="Request headers cap (431)")
                                ] = 16 * 1024,
    max_body_bytes: Annotated[int, typer.Option(help="Request body cap (413)")] = 64 * 1024,
    rate_limit: Annotated[float, typer.Option(help="Requests a second per API key and "
                                              "process (429 beyond); 0: off")] = 1000.0,
    rate_burst: Annotated[int, typer.Option(help="Requests a key may make at once")] = 2000,
    graceful_shutdown: Annotated[float, typer.Option(help="On SIGTERM, seconds requests in "
                                                     "flight get")] = 30.0,
    forwarded_allow_ips: Annotated[str, typer.Option(help="Reverse proxies whose "
                                                     "X-Forwarded-For/-Proto are trusted "
                                                     "(comma-separated; '*': any)")
                                   ] = "127.0.0.1",
) -> None:
    """Serve BUNDLE over HTTP (POST /recommend, /recommend/text, /events; GET /metrics).

    Keys have roles: read (recommend, metrics), write (also events), admin (also /admin/*);
    a key without role= is write. Connection limits (header and body timeouts, keep-alive,
    connections) and TLS apply to every process.

    POST /admin/reload (admin key) or SIGHUP loads the store's live version (or the bundle
    directory again) and swaps it in without dropping requests; POST /admin/rollback makes
    the store's previous version live again and serves it; with --processes N, send SIGHUP to
    this (the supervisor) process: each one is replaced by a process that loads the live version.
    """
    import logging
    import os
    import secrets

    import uvicorn

    from crossrec.serving import app as serving
    from crossrec.serving.listen import check_free, worker_socket
    from crossrec.serving.reload import SUPERVISOR_ENV
    from crossrec.serving.store import BundleSource

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    if workers is not None:  # the old name (it meant Ray workers in other commands)
        Console(stderr=True).print("warning: --workers is deprecated for serve; use --processes")
        processes = workers
    try:
        settings = _settings(
            auth=not no_auth, keys_file=keys_file, admin_keys_file=admin_keys_file,
            events=events, batch_users=batch_users, tls_cert=tls_cert, tls_key=tls_key,
            header_timeout_s=header_timeout, body_timeout_s=body_timeout,
            keep_alive_s=keep_alive, max_requests_per_connection=max_requests_per_connection,
            max_connections=limit_concurrency, max_header_bytes=max_header_bytes,
            max_body_bytes=max_body_bytes, rate_limit_per_second=rate_limit,
            rate_limit_burst=rate_burst, graceful_shutdown_s=graceful_shutdown,
            forwarded_allow_ips=forwarded_allow_ips,
            retrieval=_retrieval_config(retrieval, vectors, quantize_user_encoder, ef_search,
                                        nprobe))
        options = settings.uvicorn_options()  # TLS files checked before the bundle loads
        check_free(host, port)  # so is the address
        source = BundleSource(bundle)
        b = source.load()
        api = serving.create_app(b, settings, source=source)  # checks keys, event store
    except CrossrecError as e:
        _fail(e)
    console.print(f"serving {source.describe()} (model {b.config['model']['name']}, "
                  f"version {b.version}, retrieval {settings.retrieval.describe()}, "
                  f"auth {'on' if settings.auth else 'OFF'}, events {settings.events}, "
                  f"{processes} process(es), {'HTTPS' if settings.tls_cert else 'HTTP'})")
    if processes <= 1:
        uvicorn.run(api, host=host, port=port, log_level=log_level, **options)
        return
    del api, b  # each worker process builds its own app from the environment
    os.environ[serving.BUNDLE_ENV] = str(bundle.resolve())
    os.environ[serving.SETTINGS_ENV] = settings.model_dump_json()
    # one secret for all workers, so that a user's hash in the logs is the same in each
    os.environ.setdefault(settings.log_key_env, secrets.token_hex(32))
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # /metrics sums over the workers
        import tempfile

        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="crossrec-metrics-")
    os.environ[serving.LOG_LEVEL_ENV] = log_level
    os.environ[SUPERVISOR_ENV] = str(os.getpid())  # POST /admin/reload -> SIGHUP to us
    from uvicorn.supervisors import Multiprocess

    # SIGHUP replaces the workers one at a time; a new one must load the bundle (and import
    # torch) before the old one retires, which takes longer than uvicorn's default 5 s
    config = uvicorn.Config("crossrec.serving.app:app_from_env", factory=True, workers=processes,
                            host=host, port=port, log_level=log_level,
                            timeout_worker_healthcheck=120, **options)
    # each worker listens on its own SO_REUSEPORT socket: the kernel spreads the connections
    # (one shared socket let one worker take all the keep-alive connections opened together)
    try:
        sock = worker_socket(host, port)
    except OSError as e:
        _fail(ConfigError(f"cannot listen on {host}:{port}: {e.strerror or e}"))
    Multiprocess(config, sockets=[sock]).run()


FLAGS = {"header_timeout_s": "--header-timeout", "body_timeout_s": "--body-timeout",
         "keep_alive_s": "--keep-alive", "max_connections": "--limit-concurrency",
         "rate_limit_per_second": "--rate-limit", "rate_limit_burst": "--rate-burst",
         "graceful_shutdown_s": "--graceful-shutdown"}


def _settings(**values: object) -> ServeSettings:
    """ServeSettings from the ``serve`` options; ConfigError naming the bad option."""
    from pydantic import ValidationError

    from crossrec.serving.settings import ServeSettings

    try:
        return ServeSettings(**values)
    except ValidationError as e:
        raise ConfigError("; ".join(
            f"{FLAGS.get(str(err['loc'][0]), '--' + str(err['loc'][0]).replace('_', '-'))}: "
            f"{err['msg']}" for err in e.errors())) from None


def _retrieval_config(kind: str, vectors: str, quantize: bool, ef_search: int | None,
                      nprobe: int | None) -> RetrievalConfig:
    """The ``serve`` options as a RetrievalConfig; ConfigError naming the bad option."""
    from pydantic import ValidationError

    from crossrec.serving.retrieval import RetrievalConfig

    names = {"kind": "--retrieval", "vectors": "--vectors", "hnsw_ef_search": "--ef-search",
             "ivf_nprobe": "--nprobe"}
    extra = {k: v for k, v in (("hnsw_ef_search", ef_search), ("ivf_nprobe", nprobe))
             if v is not None}
    try:
        return RetrievalConfig(kind=kind, vectors=vectors, quantize_user_encoder=quantize,
                               **extra)
    except ValidationError as e:
        raise ConfigError("; ".join(f"{names.get(str(err['loc'][0]), err['loc'][0])}: "
                                    f"{err['msg']}" for err in e.errors())) from None
