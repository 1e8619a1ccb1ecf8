"""API keys: stored as sha256 digests, compared in constant time, never logged; each has a role.

A key is presented as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``. Keys come from a
file (one per line) and/or an environment variable (comma-separated); either may hold the plain
key or its digest as ``sha256:<64 hex>``, so a deployment can keep only digests on disk. After
the key, an entry may give ``role=read|write|admin`` and ``name=<id>``::

    3f9c...e1                       # role write (the default of a keys file), id = digest prefix
    sha256:5e88...42 role=read name=web-frontend

Roles nest: ``read`` opens ``/recommend``, ``/recommend/text`` and ``/metrics``; ``write`` also
``POST /events``; ``admin`` also ``/admin/*``. A key's id (its ``name``, else the first 12 hex
digits of its sha256) is stored with the events it posts, never the key itself.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from dataclasses import dataclass
from pathlib import Path

from crossrec.errors import ConfigError

DIGEST = re.compile(r"^sha256:([0-9a-f]{64})$")
NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
ROLES = ("read", "write", "admin")  # each opens what the ones before it open
DEFAULT_ROLE = "write"  # a key without role=: what every key could do before roles existed


@dataclass(frozen=True)
class ApiKey:
    """A key as kept in memory: its sha256, its role and its id (never the key)."""

    digest: bytes
    role: str = DEFAULT_ROLE
    id: str = ""

    def __post_init__(self) -> None:
        if not self.id:
            object.__setattr__(self, "id", self.digest.hex()[:12])

    def allows(self, role: str) -> bool:
        """True when this key's role includes ``role``."""
        return ROLES.index(self.role) >= ROLES.index(role)


def digest(key: str) -> bytes:
    """sha256 of a key (what is kept in memory instead of the key)."""
    return hashlib.sha256(key.encode("utf-8")).digest()


def _digest_of(entry: str, where: str) -> bytes:
    if entry.lower().startswith("sha256:"):
        m = DIGEST.match(entry.lower())
        if m is None:
            raise ConfigError(f"{where}: malformed key digest (expected sha256:<64 hex digits>)")
        return bytes.fromhex(m.group(1))
    if len(entry) < 16:
        raise ConfigError(f"{where}: API key shorter than 16 characters")
    return digest(entry)


def _parse(entry: str, where: str, role: str | None) -> ApiKey:
    """One entry: ``KEY [role=R] [name=N]``; ``role`` given: the role of every entry."""
    key, *fields = entry.split()
    found: dict[str, str] = {}
    for f in fields:
        name, eq, value = f.partition("=")
        if not eq or name not in ("role", "name") or name in found:
            raise ConfigError(f"{where}: unexpected {f!r} after the key (expected role=... "
                              "and/or name=...)")
        found[name] = value
    if found.get("role", DEFAULT_ROLE) not in ROLES:
        raise ConfigError(f"{where}: role {found['role']!r} is not one of {', '.join(ROLES)}")
    if "name" in found and NAME.match(found["name"]) is None:
        raise ConfigError(f"{where}: name {found['name']!r} must be 1-64 letters, digits, "
                          "'.', '_' or '-'")
    return ApiKey(_digest_of(key, where), role or found.get("role", DEFAULT_ROLE),
                  found.get("name", ""))


class KeyRing:
    """The accepted keys (sha256 digests with their roles and ids)."""

    def __init__(self, keys: list[bytes | ApiKey], role: str | None = None) -> None:
        """``keys``: digests (role ``role`` or the default) or ApiKeys (``role`` overrides
        theirs when given)."""
        self._keys = [ApiKey(k, role or DEFAULT_ROLE) if isinstance(k, bytes)
                      else k if role is None else ApiKey(k.digest, role, k.id) for k in keys]

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:  # never show the digests either
        return f"KeyRing({len(self)} keys)"

    def __add__(self, other: KeyRing) -> KeyRing:
        return KeyRing([*self._keys, *other._keys])

    def ids(self) -> list[str]:
        """The keys' ids (names or digest prefixes), in file order."""
        return [k.id for k in self._keys]

    def roles(self) -> set[str]:
        return {k.role for k in self._keys}

    @classmethod
    def load(cls, keys_file: Path | None = None, env: str | None = None,
             role: str | None = None) -> KeyRing:
        """Read keys from ``keys_file`` (one per line, ``#`` comments) and ``$env``;
        ``role``: the role of every key read (the admin keys file), else each entry's.

        Raises:
            ConfigError: a missing file or a malformed line, named by file and line number
                (the key itself is never printed).
        """
        digests: list[ApiKey] = []
        if keys_file is not None:
            path = Path(keys_file)
            if not path.is_file():
                raise ConfigError(f"keys file {path} not found")
            for n, line in enumerate(path.read_text().splitlines(), 1):
                entry = line.split("#", 1)[0].strip()
                if entry:
                    digests.append(_parse(entry, f"{path}, line {n}", role))
        if env and os.environ.get(env):
            for n, entry in enumerate(os.environ[env].split(","), 1):
                if entry.strip():
                    digests.append(_parse(entry.strip(), f"${env}, entry {n}", role))
        return cls(digests)

    def lookup(self, presented: str) -> ApiKey | None:
        """The key ``presented`` is, or None; every digest is compared (constant time per
        comparison, no early exit), so timing does not tell which one matched."""
        d = digest(presented)
        found = None
        for stored in self._keys:
            if hmac.compare_digest(d, stored.digest) and found is None:
                found = stored
        return found

    def check(self, presented: str) -> bool:
        """True when ``presented`` is one of the keys (``lookup``)."""
        return self.lookup(presented) is not None


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
