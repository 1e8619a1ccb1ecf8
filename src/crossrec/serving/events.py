"""Event stores: new interactions posted to the API, stored durably before the answer.

``SQLiteEventStore`` (the embedded default: WAL journal, ``synchronous=FULL``, so a committed
event survives a crash of the process or of the machine) and ``PostgresEventStore`` (given a
``postgresql://`` URL; needs the ``psycopg`` package). Both store an event id once: a duplicate
id is counted and ignored, whatever its content. Each event keeps the id of the API key that
posted it (``key_id``: the key's name or digest prefix, never the key; ``-`` without auth, empty
for events stored before keys had ids), so ``crossrec update --exclude-key`` can drop them.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from crossrec.errors import ConfigError

COLUMNS = ("event_id", "user_id", "domain", "item_id", "rating", "timestamp", "received_at",
           "model_version", "key_id")


@dataclass(frozen=True)
class Event:
    """One interaction. ``timestamp`` is the client's (seconds); ``received_at`` the server's."""

    event_id: str
    user_id: str
    domain: str
    item_id: str
    rating: float | None
    timestamp: int
    received_at: float = 0.0
    model_version: str = ""
    key_id: str = ""


class EventStore(Protocol):
    """Durable, idempotent storage of events."""

    url: str

    def add(self, events: list[Event]) -> list[Event]:
        """Store ``events`` in one transaction; returns, once it is committed, the events that
        were new (the others repeat an id already stored, or earlier in ``events``)."""

    def get(self, event_id: str) -> Event | None: ...

    def count(self) -> int: ...

    def since(self, received_after: float = 0.0, limit: int | None = None) -> list[Event]:
        """Events received after a server time, oldest first."""

    def ping(self) -> bool:
        """True when the store answers (readiness)."""

    def close(self) -> None: ...


def _row(r: tuple) -> Event:
    return Event(r[0], r[1], r[2], r[3], None if r[4] is None else float(r[4]), int(r[5]),
                 float(r[6]), r[7], r[8] or "")


class SQLiteEventStore:
    """Events in one SQLite file (WAL); safe for several threads and processes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.url = str(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30.0,
                                   isolation_level=None)  # explicit BEGIN / COMMIT below
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS events (event_id TEXT PRIMARY KEY, user_id TEXT NOT NULL,"
            " domain TEXT NOT NULL, item_id TEXT NOT NULL, rating REAL, timestamp INTEGER NOT NULL,"
            " received_at REAL NOT NULL, model_version TEXT NOT NULL,"
            " key_id TEXT NOT NULL DEFAULT '')")
        have = {r[1] for r in self._db.execute("PRAGMA table_info(events)").fetchall()}
        if "key_id" not in have:  # a file written before events carried their key's id
            self._db.execute("ALTER TABLE events ADD COLUMN key_id TEXT NOT NULL DEFAULT ''")
        self._db.execute("CREATE INDEX IF NOT EXISTS events_received ON events (received_at)")

    def add(self, events: list[Event]) -> list[Event]:
        sql = (f"INSERT OR IGNORE INTO events ({', '.join(COLUMNS)}) VALUES "
               f"({', '.join('?' * len(COLUMNS))})")
        new = []
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for e in events:
                    if self._db.execute(sql, tuple(getattr(e, c) for c in COLUMNS)).rowcount:
                        new.append(e)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return new

    def get(self, event_id: str) -> Event | None:
        with self._lock:
            r = self._db.execute(f"SELECT {', '.join(COLUMNS)} FROM events WHERE event_id = ?",
                                 (event_id,)).fetchone()
        return None if r is None else _row(r)

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM events").fetchone()[0])

    def since(self, received_after: float = 0.0, limit: int | None = None) -> list[Event]:
        sql = (f"SELECT {', '.join(COLUMNS)} FROM events WHERE received_at > ? "
               "ORDER BY received_at, event_id")
        args: tuple = (received_after,)
        if limit is not None:
            sql, args = sql + " LIMIT ?", (received_after, int(limit))
        with self._lock:
            return [_row(r) for r in self._db.execute(sql, args).fetchall()]

    def ping(self) -> bool:
        try:
            with self._lock:
                self._db.execute("SELECT 1").fetchone()
            return True
        except sqlite3.Error:
            return False

    def close(self) -> None:
        with self._lock:
            self._db.close()


class PostgresEventStore:
    """Events in a PostgreSQL table ``crossrec_events``; one connection, reopened if lost."""

    def __init__(self, url: str) -> None:
        try:
            import psycopg
        except ImportError as e:  # pragma: no cover - depends on the install
            raise ConfigError("a postgresql:// event store needs psycopg: "
                              "pip install 'crossrec[postgres]'") from e
        self._psycopg = psycopg
        self.url = url
        self._lock = threading.Lock()
        self._conn = None
        with self._lock, self._connect().cursor() as cur:
            cur.execute(
                "CREATE TABLE IF NOT EXISTS crossrec_events (event_id TEXT PRIMARY KEY,"
                " user_id TEXT NOT NULL, domain TEXT NOT NULL, item_id TEXT NOT NULL,"
                " rating DOUBLE PRECISION, timestamp BIGINT NOT NULL,"
                " received_at DOUBLE PRECISION NOT NULL, model_version TEXT NOT NULL,"
                " key_id TEXT NOT NULL DEFAULT '')")
            cur.execute("ALTER TABLE crossrec_events ADD COLUMN IF NOT EXISTS key_id TEXT"
                        " NOT NULL DEFAULT ''")
            cur.execute("CREATE INDEX IF NOT EXISTS crossrec_events_received"
                        " ON crossrec_events (received_at)")
            self._conn.commit()

    def _connect(self):  # noqa: ANN202 - psycopg.Connection, imported lazily
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = self._psycopg.connect(self.url, connect_timeout=10)
        return self._conn

    def add(self, events: list[Event]) -> list[Event]:
        cols = list(zip(*(tuple(getattr(e, c) for c in COLUMNS) for e in events), strict=True))
        types = ("text", "text", "text", "text", "float8", "int8", "float8", "text", "text")
        unnest = ", ".join(f"%s::{t}[]" for t in types)
        with self._lock:
            conn = self._connect()
            try:
                with conn.cursor() as cur:
                    cur.execute(f"INSERT INTO crossrec_events ({', '.join(COLUMNS)}) "
                                f"SELECT * FROM unnest({unnest}) "
                                "ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
                                [list(c) for c in cols])
                    stored = {r[0] for r in cur.fetchall()}
                conn.commit()
            except BaseException:
                if not conn.closed:
                    conn.rollback()
                raise
        new = []
        for e in events:  # an id repeated within ``events``: its first occurrence was stored
            if e.event_id in stored:
                new.append(e)
                stored.discard(e.event_id)
        return new

    def _query(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            conn = self._connect()
            try:
                with conn.cursor() as cur:
                    cur.execute(sql, args)
                    rows = cur.fetchall()
                conn.commit()
            except BaseException:
                if not conn.closed:
                    conn.rollback()
                raise
        return rows

    def get(self, event_id: str) -> Event | None:
        rows = self._query(f"SELECT {', '.join(COLUMNS)} FROM crossrec_events "
                           "WHERE event_id = %s", (event_id,))
        return _row(rows[0]) if rows else None

    def count(self) -> int:
        return int(self._query("SELECT COUNT(*) FROM crossrec_events")[0][0])

    def since(self, received_after: float = 0.0, limit: int | None = None) -> list[Event]:
        sql = (f"SELECT {', '.join(COLUMNS)} FROM crossrec_events WHERE received_at > %s "
               "ORDER BY received_at, event_id")
        if limit is not None:
            return [_row(r) for r in self._query(sql + " LIMIT %s", (received_after, limit))]
        return [_row(r) for r in self._query(sql, (received_after,))]

    def ping(self) -> bool:
        try:
            self._query("SELECT 1")
            return True
        except self._psycopg.Error:
            return False

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()


def open_event_store(where: str | Path) -> EventStore:
    """A SQLite file path, or a ``postgresql://`` / ``postgres://`` URL."""
    text = str(where)
    if text.startswith(("postgresql://", "postgres://")):
        return PostgresEventStore(text)
    return SQLiteEventStore(text)
