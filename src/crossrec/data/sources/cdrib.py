"""The Amazon cold-start pairs of CDRIB (Cao et al., ICDE 2022): Cloth/Sport and Game/Video.

Layout (see ``SOURCE.md`` beside the data): one folder per domain of a pair, ``X_Y/`` holding
domain X and ``Y_X/`` holding domain Y, each with ``train.txt``, ``valid.txt``, ``test.txt`` of
``user<TAB>item`` lines (implicit feedback, no timestamps). Item ids are local to a folder. User ids
``0..C-1`` are the users present in both domains and mean the same person in both folders; ids
``>= C`` are single-domain users numbered separately in each folder.

What the reader makes of them: ``user_id`` = the id for shared users (``< C``) and
``"<domain>:<id>"`` for single-domain users, so they never collide; ``item_id`` = the local id;
``part`` = the file (train / valid / test), so ``crossrec.data.split.predefined`` reproduces the
authors' cold-start split. Domain names: ``cloth``/``sport``, ``game``/``video``; note that
"game" is Amazon's *Toys and Games* category, "video" is *Video Games*.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from crossrec.data.builder import DatasetBuilder
from crossrec.data.sources.table import check_file, read_table
from crossrec.errors import DataError

# Number of shared users C per pair, from SOURCE.md ("C is 9828 for Cloth/Sport and 2179 for
# Game/Video"; it equals `common user num` in sport_cloth/cloth_sport_data_info.txt and
# video_game/game_video_data_info.txt, the logs of the run that wrote these files).
COMMON_USERS = {"cloth_sport": 9828, "game_video": 2179}
PARTS = ("train", "valid", "test")


def read_cdrib(
    root: str | Path,
    pair: str = "cloth_sport",
    *,
    common_users: int | None = None,
    name: str | None = None,
    builder: DatasetBuilder | None = None,
) -> DatasetBuilder:
    """Add both domains of a CDRIB pair, with the authors' split as ``part``.

    Args:
        root: the folder holding the pair folders (``cloth_sport/``, ``sport_cloth/``, ...).
        pair: ``"cloth_sport"`` or ``"game_video"`` (either order; ``"X_Y"`` reads ``X_Y/`` and
            ``Y_X/``). Other pairs of the CDRIB repository work given ``common_users`` or their
            ``Y_X/X_Y_data_info.txt`` log.
        common_users: C, the number of shared users (default: known value for the two pairs
            above, else the ``common user num`` line of the log).
        name: dataset name when a new builder is created (default: the pair).
        builder: add to this builder instead of a new one.

    Returns:
        The builder; call ``.build()`` on it.

    Raises:
        DataError: missing folders or files, malformed lines (file and line number).
    """
    root = Path(root)
    parts = pair.split("_")
    if len(parts) != 2 or not all(parts):
        raise DataError(f"pair must look like 'cloth_sport', got {pair!r}")
    if f"{parts[1]}_{parts[0]}" in COMMON_USERS:
        parts.reverse()
    x, y = parts
    key = f"{x}_{y}"
    if common_users is None:
        common_users = COMMON_USERS.get(key)
    if common_users is None:
        common_users = _common_users(root / f"{y}_{x}" / f"{key}_data_info.txt")
    builder = builder if builder is not None else DatasetBuilder(name or key)
    for domain, folder in ((x, root / key), (y, root / f"{y}_{x}")):
        if not folder.is_dir():
            raise DataError(
                f"{folder}: no such folder (CDRIB pair {key!r} needs {key}/ and {y}_{x}/)"
            )
        for part in PARTS:
            builder.add_interactions(
                _read_part(folder / f"{part}.txt", domain, part, common_users),
                domain=domain,
                source=str(folder / f"{part}.txt"),
            )
    return builder


def _read_part(path: Path, domain: str, part: str, common_users: int) -> pd.DataFrame:
    table = read_table(check_file(path), format="tsv", names=["user", "item"], quote=False)
    frame = table.frame
    for col in ("user", "item"):
        bad = ~frame[col].str.fullmatch(r"\d+").to_numpy()
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"{table.where(row)}: {col} {frame[col].iloc[row]!r} is not an integer id"
            )
    users = frame["user"].to_numpy(dtype=object)
    single = frame["user"].astype(np.int64).to_numpy() >= common_users
    users[single] = (domain + ":" + frame["user"][single]).to_numpy()
    return pd.DataFrame({"user_id": users, "item_id": frame["item"].to_numpy(), "part": part})


def _common_users(log: Path) -> int:
    if not log.exists():
        raise DataError(
            f"{log}: not found, and the number of shared users of this pair is not known; "
            "pass common_users="
        )
    match = re.search(r"common user num\s+(\d+)", log.read_text(encoding="utf-8"))
    if match is None:
        raise DataError(f"{log}: no 'common user num' line; pass common_users=")
    return int(match.group(1))
