"""Hot reload: a running app swaps the bundle it serves for the store's live version.

``Served`` is everything a request reads that depends on the bundle (the bundle, its domain
names, item titles, warmed caches). A request handler takes ``reloader.current`` once and uses
that snapshot to the end, so a request in flight during a reload finishes on the old bundle;
``Reloader.reload`` loads and prepares the new ``Served`` in a worker thread (the event loop
keeps answering) and then replaces the one reference (atomic in Python). A load that fails
(damaged version, no live version, ...) leaves the old bundle in place and says why.

Triggers: ``POST /admin/reload`` and SIGHUP to the serving process; ``POST /admin/rollback``
first makes the store's previously live version live again (``BundleStore.rollback``), then
reloads. With several uvicorn
workers (``crossrec serve --workers N``), SIGHUP to the supervisor (the parent process) makes
uvicorn replace the workers one at a time, each new one loading the live version before the
old one is retired; ``POST /admin/reload`` answered by a worker asks its supervisor for that
rolling restart (it cannot reload the other workers itself).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from crossrec.bundle import Bundle
from crossrec.errors import CrossrecError
from crossrec.serving.metrics import ServeMetrics
from crossrec.serving.store import BundleSource, StoreError

log = logging.getLogger("crossrec.serving")
SUPERVISOR_ENV = "CROSSREC_SERVE_SUPERVISOR_PID"  # set by `crossrec serve --workers N`


@dataclass(frozen=True)
class Served:
    """A bundle ready to answer requests (caches warmed)."""

    bundle: Bundle
    domains: frozenset[str]
    titles: np.ndarray  # object[n_items]: title or item text per global item index

    @classmethod
    def prepare(cls, bundle: Bundle) -> Served:
        train = bundle.train
        titles = (train.item_attrs["title"].astype(object).to_numpy()
                  if "title" in train.item_attrs.columns
                  else np.asarray(train.item_text, object))
        for d in train.domains:  # warm the caches the first requests would otherwise fill
            train.user_items(d)
            bundle.popular(d)
        train.user_items(None)
        try:  # and the model's own (e.g. the ranker's explanation tables): one request
            log.info("warm-up request: %.3f s", bundle.warm_up())
        except CrossrecError as e:  # the requests will say it themselves
            log.warning("warm-up request failed: %s", e)
        return cls(bundle, frozenset(train.domains), titles)


def supervisor_pid() -> int | None:
    """The pid of the uvicorn supervisor when this process is one of its workers."""
    text = os.environ.get(SUPERVISOR_ENV, "")
    if text.isdigit() and int(text) == os.getppid():
        return int(text)
    return None


class Reloader:
    """Holds the ``Served`` snapshot requests read, and replaces it on reload."""

    def __init__(self, served: Served, source: BundleSource | None, metrics: ServeMetrics,
                 prepare: Callable[[Bundle], Served] = Served.prepare) -> None:
        """``prepare`` turns a freshly loaded bundle into what requests read (the app's own
        set-up of a bundle, e.g. its retrieval index, goes there)."""
        self.current = served
        self.source = source
        self.metrics = metrics
        self.prepare = prepare
        self._lock = threading.Lock()  # one load at a time (loads run in worker threads)
        self._tasks: set[asyncio.Task] = set()  # SIGHUP reloads in flight (kept referenced)

    def _load(self) -> Served:
        with self._lock:
            return self.prepare(self.source.load())

    async def reload(self, trigger: str) -> dict[str, Any]:
        """Load the source's live bundle and swap it in; returns what happened.

        ``status`` is ``"reloaded"`` (a new version is served), ``"unchanged"`` (the live
        version is the one already served), ``"restarting"`` (a worker asked its supervisor
        for a rolling restart), ``"failed"`` (``detail`` says why; the old one is kept) or
        ``"unavailable"`` (the app has no source to reload from).
        """
        old = self.current.bundle.version
        if trigger == "api" and supervisor_pid() is not None:
            os.kill(supervisor_pid(), signal.SIGHUP)
            log.info("reload (%s): asked the supervisor for a rolling restart", trigger)
            return {"status": "restarting", "model_version": old, "previous_version": old,
                    "detail": "several workers: each is being replaced by one that loads the "
                              "live version; /healthz shows the version a worker serves"}
        if self.source is None:
            return {"status": "unavailable", "model_version": old, "previous_version": old,
                    "detail": "this app was built from a bundle object, not a path: there is "
                              "nothing to reload from"}
        start = time.perf_counter()
        try:
            served = await asyncio.get_running_loop().run_in_executor(None, self._load)
        except Exception as e:  # noqa: BLE001 - any failed load keeps the old bundle
            self.metrics.reloads.labels(result="failed").inc()
            log.error("reload (%s) from %s failed, still serving %s: %s", trigger,
                      self.source.describe(), old, e)
            return {"status": "failed", "model_version": old, "previous_version": old,
                    "detail": f"reload from {self.source.describe()} failed, still serving "
                              f"{old}: {e}"}
        self.current = served  # the swap: requests that start from now on see the new one
        gc.unfreeze()  # the app froze the first bundle's objects (gc.freeze): let the old
        # one's reference cycles be collected
        new = served.bundle.version
        self.metrics.serving(new, str(served.bundle.config["model"]["name"]),
                             served.bundle.target)
        self.metrics.reloads.labels(result="ok").inc()
        seconds = time.perf_counter() - start
        log.info("reload (%s) from %s: %s -> %s in %.2fs", trigger, self.source.describe(),
                 old, new, seconds)
        return {"status": "reloaded" if new != old else "unchanged", "model_version": new,
                "previous_version": old, "seconds": round(seconds, 3)}

    async def rollback(self) -> dict[str, Any]:
        """Roll the store back to its previously live version, then reload (as
        ``reload("api")``: with several workers, a rolling restart). ``status`` is
        ``"refused"`` when there is nothing to roll back to (``detail`` says why; nothing
        changed), ``"unavailable"`` when the app does not serve a bundle store."""
        old = self.current.bundle.version
        store = self.source.store if self.source is not None else None
        if store is None:
            what = self.source.describe() if self.source is not None else "a bundle object"
            return {"status": "unavailable", "model_version": old, "previous_version": old,
                    "detail": f"rollback needs a bundle store (`crossrec update STORE --add "
                              f"BUNDLE`); this app serves {what}"}
        loop = asyncio.get_running_loop()
        try:
            rolled_from, live = await loop.run_in_executor(None, store.rollback)
        except StoreError as e:
            return {"status": "refused", "model_version": old, "previous_version": old,
                    "detail": str(e)}
        log.info("rollback (api) of store %s: %s -> %s", self.source.path, rolled_from, live)
        out = await self.reload("api")
        note = f"store rolled back from {rolled_from} to {live}"
        out["detail"] = f"{note}; {out['detail']}" if out.get("detail") else note
        return out

    def install_sighup(self) -> bool:
        """Reload on SIGHUP (only possible from the main thread's running loop)."""
        if threading.current_thread() is not threading.main_thread():
            return False
        loop = asyncio.get_running_loop()
        try:
            loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
        except (NotImplementedError, RuntimeError, ValueError):
            return False
        return True

    def _on_sighup(self) -> None:
        task = asyncio.get_running_loop().create_task(self.reload("SIGHUP"))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def remove_sighup(self) -> None:
        if threading.current_thread() is threading.main_thread():
            try:
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            except (NotImplementedError, RuntimeError, ValueError):
                pass
