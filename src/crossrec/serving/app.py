"""The HTTP API: ``create_app(bundle, settings) -> FastAPI``. All state lives on the app.

Routes: ``POST /recommend``, ``POST /recommend/text``, ``GET /metrics`` (a key of role
``read`` or above when ``settings.auth``), ``POST /events`` (role ``write``; each event is
stored with the id of the key that posted it), ``POST /admin/reload`` and
``POST /admin/rollback`` (role ``admin``), ``GET /healthz`` and ``GET /readyz`` (open); the
key and its role are checked by ``crossrec.serving.middleware.Gate`` before the body is
read. The bundle is swapped on a hot reload (``crossrec.serving.reload``): a handler reads
``reloader.current`` once, so a request finishes on the bundle it started with. Bad input
gets a 4xx whose ``message`` names the field (``body.k: ...``); an oversized body gets 413.
Logs carry a keyed hash of the user id (``user=<16 hex>``), never the raw id, nor any key.
"""

from __future__ import annotations

import gc
import logging
import os
import secrets
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from crossrec.bundle import Bundle, BundleError, Recommendation
from crossrec.errors import ConfigError, DataError
from crossrec.serving.auth import KeyRing, user_hash
from crossrec.serving.batching import RecommendBatcher
from crossrec.serving.events import Event, EventStore, open_event_store
from crossrec.serving.metrics import ServeMetrics
from crossrec.serving.middleware import (  # noqa: F401 - ABORTED, RateLimiter: public here too
    ABORTED,
    KEY_ID,
    USER_KEY,
    BodyLimit,
    Gate,
    Observe,
    RateLimiter,
)
from crossrec.serving.reload import Reloader, Served
from crossrec.serving.schemas import (
    Because,
    EventsRequest,
    EventsResponse,
    RecommendedItem,
    RecommendRequest,
    RecommendResponse,
    ReloadResponse,
    Signal,
    Status,
    TextRequest,
    TextResponse,
)
from crossrec.serving.settings import ServeSettings
from crossrec.serving.store import BundleSource

log = logging.getLogger("crossrec.serving")


class FieldError(Exception):
    """Bad input found after schema validation (unknown domain, a limit of the settings)."""

    def __init__(self, loc: Sequence[str | int], msg: str, kind: str = "value_error") -> None:
        super().__init__(msg)
        self.loc, self.msg, self.kind = list(loc), msg, kind


def _error_body(errors: list[dict[str, Any]]) -> dict[str, Any]:
    detail = [{"loc": list(e["loc"]), "msg": str(e["msg"]), "type": str(e["type"])}
              for e in errors]
    message = "; ".join(".".join(str(x) for x in d["loc"]) + ": " + d["msg"] for d in detail)
    return {"detail": detail, "message": message}


def create_app(bundle: Bundle, settings: ServeSettings | None = None, *,
               events: EventStore | None = None, keys: KeyRing | None = None,
               admin_keys: KeyRing | None = None,
               source: BundleSource | None = None) -> FastAPI:
    """Build the service around a loaded bundle.

    Args:
        bundle: what to serve (``Bundle.load``).
        settings: auth, limits, event store location (defaults: ``ServeSettings()``).
        events: an open event store (default: ``open_event_store(settings.events)``); the app
            closes it on shutdown.
        keys: accepted API keys with their roles (default: read from ``settings.keys_file`` /
            ``keys_env``).
        admin_keys: keys of role ``admin``, whatever their ring says (default: read from
            ``settings.admin_keys_file`` / ``admin_keys_env``).
        source: where ``POST /admin/reload`` and SIGHUP reload from (a store's live version or
            a bundle directory); None: reloading is refused.

    Raises:
        ConfigError: auth is on and no key is configured.
    """
    settings = settings or ServeSettings()
    if keys is None:
        keys = KeyRing.load(settings.keys_file, settings.keys_env) if settings.auth \
            else KeyRing([])
    if admin_keys is None:
        admin_keys = KeyRing.load(settings.admin_keys_file, settings.admin_keys_env,
                                  role="admin") if settings.auth else KeyRing([])
    ring = keys + KeyRing(list(admin_keys._keys), role="admin")
    if settings.auth and not len(ring):
        raise ConfigError(f"no API key configured: give a keys file or set ${settings.keys_env}"
                          " (or turn auth off explicitly)")
    store = events if events is not None else open_event_store(settings.events)
    metrics = ServeMetrics()
    metrics.serving(bundle.version, str(bundle.config["model"]["name"]), bundle.target)
    log_key = os.environ.get(settings.log_key_env, "").encode() or secrets.token_bytes(32)

    def prepare(b: Bundle) -> Served:  # also for every bundle a hot reload brings in
        if b.retrieval is None and not settings.retrieval.is_default:
            b.use_retrieval(settings.retrieval)  # index built before the first request
        return Served.prepare(b)

    reloader = Reloader(prepare(bundle), source, metrics, prepare)
    batcher = RecommendBatcher(settings.batch_users)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        reloader.install_sighup()
        # the bundle's ~10^5 long-lived objects leave the cyclic collector's scans: no full
        # collection of all of them (0.1-0.4 s, a latency spike) while serving
        gc.collect()
        gc.freeze()
        yield
        gc.unfreeze()  # an app built and stopped in a longer process (tests) leaves no trace
        reloader.remove_sighup()
        store.close()

    # FastAPI's own OpenTelemetry hooks are off: the service exports Prometheus metrics, and
    # the hooks cost ~30 us a request even with no OpenTelemetry provider configured
    app = FastAPI(title="crossrec", summary="Cross-domain recommendations",
                  docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan,
                  telemetry={"tracing": False, "metrics": False, "logs": False,
                             "operation_spans": False})
    app.state.settings, app.state.events = settings, store
    app.state.metrics, app.state.reloader = metrics, reloader
    app.state.batcher = batcher

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(_error_body(list(exc.errors())), status_code=422)

    @app.exception_handler(FieldError)
    async def _field(_: Request, exc: FieldError) -> JSONResponse:
        return JSONResponse(_error_body([{"loc": exc.loc, "msg": exc.msg, "type": exc.kind}]),
                            status_code=422)

    def check_domain(cur: Served, domain: str | None, loc: Sequence[str | int]) -> str:
        if domain is None:
            return cur.bundle.target
        if domain not in cur.domains:
            raise FieldError(loc, f"unknown domain {domain!r}; known: "
                                  f"{', '.join(cur.bundle.train.domains)}")
        return domain

    def check_k(k: int) -> None:
        if k > settings.max_k:
            raise FieldError(("body", "k"), f"k must be at most {settings.max_k}",
                             "less_than_equal")

    def items_of(cur: Served, rec: Recommendation) -> list[RecommendedItem]:
        out = []
        for j, (item, score, idx) in enumerate(zip(rec.item_ids, rec.scores, rec.items,
                                                   strict=True)):
            title = cur.titles[idx]
            because = None if rec.because is None else [
                Because(domain=e.domain, item_id=e.item_id, weight=e.weight)
                for e in rec.because[j]]
            signals = None if rec.signals is None else [
                Signal(feature=g.feature, weight=g.weight, reason=g.reason)
                for g in rec.signals[j]]
            out.append(RecommendedItem(item_id=item, score=float(score),
                                       title=title if isinstance(title, str) and title
                                       else None, because=because, signals=signals))
        return out

    # Inference takes a few ms of CPU: it runs on the event loop (``async def``), which saves
    # two thread hand-offs per request (dependency + endpoint) that cost more than the work on
    # a loaded machine. ``POST /events`` waits on a disk commit and stays in the thread pool.
    api = APIRouter()

    @api.post("/recommend", response_model=RecommendResponse)
    async def recommend(req: RecommendRequest, request: Request) -> RecommendResponse:
        """Top-k items of a domain for a user and/or a history."""
        request.scope[USER_KEY] = user_hash(log_key, req.user_id)
        cur = reloader.current  # this request's bundle, whatever a reload does meanwhile
        bundle = cur.bundle
        domain = check_domain(cur, req.domain, ("body", "domain"))
        check_k(req.k)
        history = req.history or []
        if len(history) > settings.max_history:
            raise FieldError(("body", "history"),
                             f"at most {settings.max_history} history items", "too_long")
        for i, h in enumerate(history):
            check_domain(cur, h.domain, ("body", "history", i, "domain"))
        explain = settings.explain_items if req.explain else 0
        try:
            if history or req.user_id is None:
                rec = bundle.recommend(
                    [req.user_id], domain, req.k, req.exclude_seen,
                    histories=[[(h.domain, h.item_id) for h in history]] if history else None,
                    explain=explain)[0]
            else:  # scored with the other requests of this event-loop turn
                rec = await batcher.recommend(bundle, req.user_id, domain, req.k,
                                              req.exclude_seen, explain)
        except DataError as e:  # e.g. a target-only model asked for another domain
            raise FieldError(("body", "domain"), str(e)) from None
        user = "anonymous" if req.user_id is None else ("known" if rec.user_known else "unknown")
        metrics.users.labels(domain=domain, user=user).inc()
        metrics.recommendations.labels(domain=domain, strategy=rec.strategy,
                                       basis=rec.basis).inc()
        return RecommendResponse(user_id=req.user_id, domain=domain, strategy=rec.strategy,
                                 basis=rec.basis, model_version=bundle.version,
                                 items=items_of(cur, rec), ignored_history=rec.ignored_history)

    @api.post("/recommend/text", response_model=TextResponse)
    async def recommend_text(req: TextRequest) -> TextResponse:
        """Top-k items of a domain for a free-text need (models with a text encoder)."""
        cur = reloader.current
        bundle = cur.bundle
        domain = check_domain(cur, req.domain, ("body", "domain"))
        check_k(req.k)
        try:
            rec = bundle.recommend_text([req.text], domain, req.k)[0]
        except BundleError as e:
            raise HTTPException(400, str(e)) from None
        except DataError as e:
            raise FieldError(("body", "domain"), str(e)) from None
        metrics.recommendations.labels(domain=domain, strategy=rec.strategy,
                                       basis=rec.basis).inc()
        return TextResponse(domain=domain, strategy=rec.strategy, model_version=bundle.version,
                            items=items_of(cur, rec))

    @api.post("/events", response_model=EventsResponse)
    def post_events(req: EventsRequest, request: Request) -> EventsResponse:
        """Store interactions durably (answered after the commit); an event id is kept once.
        Each event is stored with the id of the key that posted it (``crossrec update
        --exclude-key`` drops a key's events)."""
        if len(req.events) > settings.max_batch_events:
            raise FieldError(("body", "events"),
                             f"at most {settings.max_batch_events} events per request",
                             "too_long")
        cur = reloader.current
        for i, e in enumerate(req.events):
            check_domain(cur, e.domain, ("body", "events", i, "domain"))
        received, key_id = time.time(), str(request.scope.get(KEY_ID, "-"))
        new = store.add([Event(e.event_id, e.user_id, e.domain, e.item_id, e.rating,
                               int(received) if e.timestamp is None else e.timestamp,
                               received, cur.bundle.version, key_id) for e in req.events])
        for e in new:
            metrics.events.labels(domain=e.domain).inc()
        metrics.duplicates.inc(len(req.events) - len(new))
        return EventsResponse(stored=len(new), duplicates=len(req.events) - len(new))

    @api.get("/metrics")
    async def prometheus() -> Response:
        """Prometheus text exposition."""
        return Response(metrics.exposition(), media_type=metrics.content_type)

    app.include_router(api)
    admin = APIRouter(prefix="/admin")  # role admin: checked by the Gate

    def reload_response(result: dict[str, Any]) -> Response | ReloadResponse:
        out = ReloadResponse(**result)
        code = {"failed": 500, "refused": 409, "unavailable": 409, "restarting": 202}.get(
            out.status)
        return out if code is None else JSONResponse(out.model_dump(), status_code=code)

    @admin.post("/reload", response_model=ReloadResponse)
    async def admin_reload() -> Response | ReloadResponse:
        """Load the live version of the store (or the bundle directory) and serve it."""
        return reload_response(await reloader.reload("api"))

    @admin.post("/rollback", response_model=ReloadResponse)
    async def admin_rollback() -> Response | ReloadResponse:
        """Make the store's previously live version live again and serve it."""
        return reload_response(await reloader.rollback())

    app.include_router(admin)

    @app.get("/healthz", response_model=Status)
    async def healthz() -> Status:
        """Liveness: the process answers."""
        return Status(status="ok", model_version=reloader.current.bundle.version)

    @app.get("/readyz", response_model=Status)
    def readyz() -> Response | Status:
        """Readiness: the model is loaded and the event store answers."""
        if not store.ping():
            return JSONResponse(Status(status="unavailable", detail="event store does not "
                                       "answer").model_dump(), status_code=503)
        return Status(status="ready", model_version=reloader.current.bundle.version)

    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(Gate, settings=settings, keys=ring)
    # the routers' own routes: FastAPI may keep an included router as one opaque entry
    paths = frozenset(getattr(r, "path", "") for r in [*app.routes, *api.routes,
                                                         *admin.routes])
    app.add_middleware(Observe, metrics=metrics, paths=paths)
    return app


BUNDLE_ENV = "CROSSREC_SERVE_BUNDLE"
SETTINGS_ENV = "CROSSREC_SERVE_SETTINGS"
LOG_LEVEL_ENV = "CROSSREC_SERVE_LOG_LEVEL"


def app_from_env() -> FastAPI:
    """App factory for several uvicorn workers (``uvicorn --factory``): each worker process
    loads the bundle (or the store's live version) at ``$CROSSREC_SERVE_BUNDLE`` with the
    settings JSON in
    ``$CROSSREC_SERVE_SETTINGS``. The workers share nothing but the event store."""
    if not os.environ.get(BUNDLE_ENV):
        raise ConfigError(f"${BUNDLE_ENV} is not set: the bundle directory to serve")
    settings = ServeSettings.model_validate_json(os.environ.get(SETTINGS_ENV) or "{}")
    logging.basicConfig(level=os.environ.get(LOG_LEVEL_ENV, "info").upper(),
                        format="%(asctime)s %(name)s %(message)s")
    source = BundleSource(os.environ[BUNDLE_ENV])
    return create_app(source.load(), settings, source=source)
