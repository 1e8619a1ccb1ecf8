"""Where things are (the data directory and the cache directory) and what a file holds
(its sha256).

The bottom floor of the package: it imports nothing of crossrec, so any module (encoders,
data readers, the config) can locate files without import circles. Only two settings come
from the environment: ``CROSSREC_DATA`` and ``CROSSREC_CACHE``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

__all__ = ["cache_dir", "data_dir", "file_sha256"]


def data_dir() -> Path:
    """The data directory: ``$CROSSREC_DATA``, else ``../shared/data`` beside the project (or
    the working directory) when it exists, else ``~/.cache/crossrec/data``."""
    env = os.environ.get("CROSSREC_DATA")
    if env:
        return Path(env).expanduser()
    candidates = [Path.cwd().parent / "shared" / "data"]
    for parent in Path(__file__).resolve().parents:
        if (parent / "pyproject.toml").exists():
            candidates.append(parent.parent / "shared" / "data")
            break
    for c in candidates:
        if c.is_dir():
            return c.resolve()
    return cache_dir() / "data"


def cache_dir() -> Path:
    """The cache directory: ``$CROSSREC_CACHE`` or ``~/.cache/crossrec``."""
    return Path(os.environ.get("CROSSREC_CACHE", "~/.cache/crossrec")).expanduser()


def file_sha256(path: Path) -> str:
    """Hex sha256 digest of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
