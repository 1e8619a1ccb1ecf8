"""Atomic writes: an artifact appears whole or not at all, and never replaces a good one
with a half-written one. ``check_output_dir`` is the one rule every command that writes a
directory applies first: it never replaces what is not its own kind of artifact unless told to.
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from crossrec.errors import CrossrecError


class OutputExistsError(CrossrecError):
    """An output path holds something that writing there would destroy."""


@functools.cache
def _umask() -> int:
    """The process umask (read once: ``os.umask`` can only be read by setting it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _chmod(path: Path, mode: int) -> None:
    """Give ``path`` ``mode`` less the umask (``mkstemp``/``mkdtemp`` create 0600/0700)."""
    os.chmod(path, mode & ~_umask())


def remove_path(path: Path) -> None:
    """Remove a file, a link or a directory tree at ``path`` (nothing there: nothing done)."""
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.exists():
        shutil.rmtree(path, ignore_errors=True)


def check_output_dir(path: str | Path, *, is_own: Callable[[Path], bool] | None = None,
                     overwrite: bool = False, what: str = "output directory") -> None:
    """Refuse (``OutputExistsError``) to write the directory ``path`` over anything else.

    Allowed: nothing at ``path``, an empty directory, a directory ``is_own`` recognises (an
    artifact of the kind being written, replaced atomically), or anything with ``overwrite``.
    Refused: an existing file, or a non-empty directory that is not ``what``.
    """
    path = Path(path)
    if overwrite or not (path.exists() or path.is_symlink()):
        return
    if not path.is_dir():
        raise OutputExistsError(f"{path}: exists and is not a directory; choose another "
                                "output path, or pass --overwrite to replace it")
    if not any(path.iterdir()) or (is_own is not None and is_own(path)):
        return
    raise OutputExistsError(f"{path}: exists, is not empty and is not a {what}; choose "
                            "another output path, or pass --overwrite to replace it")


def new_directory(base: str | Path) -> Path:
    """Create and return ``base``, or ``base-2``, ``base-3``, ... the first that did not exist."""
    base = Path(base)
    base.parent.mkdir(parents=True, exist_ok=True)
    n = 1
    while True:
        path = base if n == 1 else base.with_name(f"{base.name}-{n}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            n += 1


@contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """Yield a temporary directory beside ``path``; on success it is renamed to ``path``.

    If the body raises, the temporary directory is removed and an existing ``path`` is left
    as it was. An existing ``path`` (directory or file) is replaced only once the new content
    is complete (and is put back if that final rename fails). Callers that write where a user
    pointed them check that first with ``check_output_dir``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        _chmod(tmp, 0o777)
        yield tmp
        if path.exists() or path.is_symlink():
            old = path.with_name(f".{path.name}.old")
            remove_path(old)
            os.rename(path, old)
            try:
                os.rename(tmp, path)
            except BaseException:
                os.rename(old, path)  # put the previous content back
                raise
            remove_path(old)
        else:
            os.rename(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_file(path: str | Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then ``os.replace`` it.

    The file gets the mode an ``open()`` would give it (0666 less the umask), not 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        _chmod(Path(tmp), 0o666)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
