"""API keys: stored as sha256 digests, compared in constant time, never logged.

A key is presented as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``. Keys come from a
file (one per line) and/or an environment variable (comma-separated); either may hold the plain
key or its digest as ``sha256:<64 hex>``, so a deployment can keep only digests on disk.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from pathlib import Path

from crossrec.errors import ConfigError

DIGEST = re.compile(r"^sha256:([0-9a-f]{64})$")


def digest(key: str) -> bytes:
    """sha256 of a key (what is kept in memory instead of the key)."""
    return hashlib.sha256(key.encode("utf-8")).digest()


def _parse(entry: str, where: str) -> bytes:
    if entry.lower().startswith("sha256:"):
        m = DIGEST.match(entry.lower())
        if m is None:
            raise ConfigError(f"{where}: malformed key digest (expected sha256:<64 hex digits>)")
        return bytes.fromhex(m.group(1))
    if len(entry) < 16:
        raise ConfigError(f"{where}: API key shorter than 16 characters")
    return digest(entry)


class KeyRing:
    """The accepted keys, as sha256 digests."""

    def __init__(self, digests: list[bytes]) -> None:
        self._digests = list(digests)

    def __len__(self) -> int:
        return len(self._digests)

    def __repr__(self) -> str:  # never show the digests either
        return f"KeyRing({len(self)} keys)"

    @classmethod
    def load(cls, keys_file: Path | None = None, env: str | None = None) -> KeyRing:
        """Read keys from ``keys_file`` (one per line, ``#`` comments) and ``$env``.

        Raises:
            ConfigError: a missing file or a malformed line, named by file and line number
                (the key itself is never printed).
        """
        digests: list[bytes] = []
        if keys_file is not None:
            path = Path(keys_file)
            if not path.is_file():
                raise ConfigError(f"keys file {path} not found")
            for n, line in enumerate(path.read_text().splitlines(), 1):
                entry = line.split("#", 1)[0].strip()
                if entry:
                    digests.append(_parse(entry, f"{path}, line {n}"))
        if env and os.environ.get(env):
            for n, entry in enumerate(os.environ[env].split(","), 1):
                if entry.strip():
                    digests.append(_parse(entry.strip(), f"${env}, entry {n}"))
        return cls(digests)

    def check(self, presented: str) -> bool:
        """True when ``presented`` is one of the keys; every digest is compared (constant
        time per comparison, no early exit), so timing does not tell which one matched."""
        d = digest(presented)
        ok = False
        for stored in self._digests:
            ok |= hmac.compare_digest(d, stored)
        return ok


def presented_key(authorization: str | None, x_api_key: str | None) -> str | None:
    """The key of a request, from ``Authorization: Bearer`` or ``X-API-Key`` (else None)."""
    if x_api_key:
        return x_api_key
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return None


def user_hash(key: bytes, user_id: str | None) -> str:
    """Keyed hash (HMAC-SHA256, 16 hex digits) of a user id for logs; ``-`` for none."""
    if not user_id:
        return "-"
    return hmac.new(key, user_id.encode("utf-8"), hashlib.sha256).hexdigest()[:16]
