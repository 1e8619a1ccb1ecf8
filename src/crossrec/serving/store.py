"""A versioned bundle store: several bundle versions and a pointer to the live one.

Layout of a store directory::

    store.json              live version, activation history, one record per version
    versions/<version>/     one bundle directory per version (``<version>`` = its content hash)
    .lock                   taken (flock) while store.json is read-modified-written

``store.json`` is the only mutable file and is replaced atomically (written aside, fsynced,
renamed), so the pointer to the live version always names a version that was complete and
verified (every file's sha256) when it was made live. A version directory appears whole or
not at all (it is written under a hidden staging name, then renamed). ``history`` is a stack:
activating pushes, ``rollback`` pops back to the version that was live before.

Every version ``store.json`` names must be a plain name (letters, digits, ``.``, ``_``, ``-``;
no ``/`` or ``..``) whose directory is a real folder inside ``versions/``, and a version is the
content hash of its bundle: loading or activating it recomputes the hash and refuses a
mismatch.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from crossrec.atomic import atomic_file
from crossrec.bundle import Bundle, BundleError, confined, read_meta
from crossrec.errors import CrossrecError

STORE_FILE = "store.json"
STORE_FORMAT = 1
VERSION_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$")


class StoreError(CrossrecError):
    """A bundle store is missing, malformed, or asked for something it cannot do."""


def is_store(path: str | Path) -> bool:
    """True when ``path`` is a bundle store (has ``store.json``), not a plain bundle."""
    return (Path(path) / STORE_FILE).is_file()


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class BundleStore:
    """Bundle versions under one root, with an atomically switched live pointer."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if not is_store(self.root):
            raise StoreError(f"{self.root}: not a bundle store (no {STORE_FILE}); create one "
                             "with `crossrec store add STORE BUNDLE`")

    @classmethod
    def create(cls, root: str | Path) -> BundleStore:
        """An empty store at ``root`` (an existing store is opened as it is)."""
        root = Path(root)
        if (root / "meta.json").exists():
            raise StoreError(f"{root}: is a bundle directory, not a store; give a new path")
        (root / "versions").mkdir(parents=True, exist_ok=True)
        with _flock(root):
            if not is_store(root):
                _write_state(root, {"format_version": STORE_FORMAT, "live": None,
                                    "history": [], "versions": {}, "log": []})
        return cls(root)

    # ----------------------------------------------------------------- reading
    def state(self) -> dict[str, Any]:
        """The parsed ``store.json`` (checked: format, fields, live version present)."""
        f = self.root / STORE_FILE
        try:
            state = json.loads(f.read_text())
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
            raise StoreError(f"{f}: cannot read ({e})") from None
        if not isinstance(state, dict) or state.get("format_version") != STORE_FORMAT:
            raise StoreError(f"{f}: field 'format_version' is not {STORE_FORMAT}")
        for key, kind in (("history", list), ("versions", dict), ("log", list)):
            if not isinstance(state.get(key), kind):
                raise StoreError(f"{f}: field {key!r} missing or not a {kind.__name__}")
        for v in [*state["versions"], *state["history"]]:
            if not isinstance(v, str) or VERSION_NAME.match(v) is None or ".." in v:
                raise StoreError(f"{f}: version name {v!r} is not a plain name (letters, "
                                 "digits, '.', '_', '-'): it could leave the store")
        live = state.get("live")
        if live is not None and live not in state["versions"]:
            raise StoreError(f"{f}: field 'live' names {live!r}, which is not in 'versions'")
        return state

    @property
    def live(self) -> str | None:
        """The live version, or None in an empty store."""
        return self.state()["live"]

    def versions(self) -> dict[str, dict[str, Any]]:
        """Version -> its record (created_at, parent, origin, events_cursor, ...)."""
        return self.state()["versions"]

    def path_of(self, version: str) -> Path:
        return self.root / "versions" / self.resolve(version)

    def resolve(self, version: str) -> str:
        """A full version id from itself or a unique prefix."""
        known = self.versions()
        if version in known:
            return version
        hits = [v for v in known if v.startswith(version)]
        if len(hits) != 1:
            raise StoreError(f"{self.root}: version {version!r} "
                             f"{'is ambiguous' if hits else 'not found'}; versions: "
                             f"{', '.join(known) or 'none'}")
        return hits[0]

    def load(self, version: str | None = None) -> Bundle:
        """Load (checksums verified, version recomputed) ``version``, by default the live
        one."""
        version = version or self.live
        if version is None:
            raise StoreError(f"{self.root}: no live version yet")
        version = self.resolve(version)
        bundle = Bundle.load(self._folder(version))
        if bundle.version != version:
            raise StoreError(f"version {version}: its files hash to {bundle.version}")
        return bundle

    # ----------------------------------------------------------------- writing
    def add(self, bundle: Bundle, **record: Any) -> str:
        """Save ``bundle`` as a new version (not live); returns its version id.

        ``record`` goes into the version's entry (e.g. ``parent``, ``events_cursor``,
        ``update``). Saving the same content twice gives the same version and one directory.
        """
        staging = self._staging()
        try:
            bundle.save(staging)
            return self._register(staging, bundle.version, record)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def add_directory(self, path: str | Path, **record: Any) -> str:
        """Copy a bundle directory (checksums verified first) into the store as a version:
        ``meta.json`` and the files it lists, nothing else."""
        path = Path(path)
        meta = read_meta(path)
        version = meta["version"]
        staging = self._staging()
        try:
            for rel in ["meta.json", *meta["sha256"]]:
                (staging / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(confined(path, rel, path / "meta.json"), staging / rel)
            record.setdefault("origin", f"added from {path}")
            return self._register(staging, version, record)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def activate(self, version: str) -> tuple[str | None, str]:
        """Make ``version`` live after verifying every file of it; returns (previous, new)."""
        with _flock(self.root):
            state = self.state()
            version = self.resolve(version)
            self._verify(version)
            previous = state["live"]
            if previous == version:
                return previous, version
            state["live"] = version
            state["history"].append(version)
            state["log"].append({"at": _now(), "action": "activate", "version": version,
                                 "previous": previous})
            _write_state(self.root, state)
        return previous, version

    def rollback(self) -> tuple[str, str]:
        """Make the version that was live before the current one live again; returns
        (rolled back from, now live)."""
        with _flock(self.root):
            state = self.state()
            history = state["history"]
            if len(history) < 2:
                raise StoreError(f"{self.root}: nothing to roll back to (activation history: "
                                 f"{', '.join(history) or 'empty'})")
            current, previous = history[-1], history[-2]
            self._verify(previous)
            history.pop()
            state["live"] = previous
            state["log"].append({"at": _now(), "action": "rollback", "version": previous,
                                 "previous": current})
            _write_state(self.root, state)
        return current, previous

    # ----------------------------------------------------------------- internals
    def _staging(self) -> Path:
        return self.root / "versions" / f".staging-{uuid.uuid4().hex}"

    def _folder(self, version: str) -> Path:
        folder = self.root / "versions" / version
        if folder.is_symlink() or not folder.is_dir():
            raise StoreError(f"version {version}: {folder} is not a folder of the store "
                             "(missing, or a link)")
        return folder

    def _verify(self, version: str) -> None:
        folder = self._folder(version)
        try:
            meta = read_meta(folder)
        except BundleError as e:
            raise StoreError(f"version {version} is damaged and cannot be made live: {e}"
                             ) from None
        if meta.get("version") != version:
            raise StoreError(f"version {version}: its meta.json says version "
                             f"{meta.get('version')!r}")

    def _register(self, staging: Path, version: str, record: dict[str, Any]) -> str:
        read_meta(staging)  # what was written reads back whole
        target = self.root / "versions" / version
        with _flock(self.root):
            state = self.state()
            if not target.exists():
                os.rename(staging, target)
                _fsync_dir(target.parent)
            if version not in state["versions"]:
                state["versions"][version] = {"created_at": _now(), **record}
                _write_state(self.root, state)
        self._verify(version)
        return version


@contextmanager
def _flock(root: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``root/.lock`` (one writer of store.json at a time)."""
    with open(root / ".lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_state(root: Path, state: dict[str, Any]) -> None:
    text = json.dumps(state, indent=2, default=str)

    def write(tmp: Path) -> None:
        with open(tmp, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())

    atomic_file(root / STORE_FILE, write)
    _fsync_dir(root)


class BundleSource:
    """What a server loads (and reloads) from: a store's live version or a plain bundle."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.store = BundleStore(self.path) if is_store(self.path) else None

    def load(self) -> Bundle:
        """The live version of the store, or the bundle directory as it is now."""
        return self.store.load() if self.store is not None else Bundle.load(self.path)

    def describe(self) -> str:
        return f"store {self.path}" if self.store is not None else f"bundle {self.path}"
