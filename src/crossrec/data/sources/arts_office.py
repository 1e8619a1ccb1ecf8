"""The Amazon Arts -> Office cross-domain sequential data of URLLM (Shen et al., 2024).

Files (see ``SOURCE.md`` beside the data): ``item_listA_F.csv`` (Arts) and
``item_listO_AA_F.csv`` (Office) with ``idBefore,item_title,idAfter,item_attribute``, where
``idAfter`` is the id the sequences use; ``userlist.txt`` with ``<reviewer id>\\t<user index>``;
``train_F2.txt`` / ``valid_F2.txt`` / ``test_F2.txt`` with two lines per user,
``user_index \\t k \\t item|p|p \\t ...``: both lines share the items at positions 0..k-1 and
differ in the last one (the prediction target).

What the reader makes of them:

- domains ``"arts"`` and ``"office"``, by the item list an item is in;
- ``user_id`` = the Amazon reviewer id, ``item_id`` = ``idAfter`` as a string;
- ``title`` = ``item_title``; ``categories`` = the whole ``item_attribute`` (category path words
  followed by the brand, which cannot be split reliably);
- ``timestamp`` = position in the sequence: p for the shared prefix, k for both targets;
- ``part``: users of ``train_F2`` -> all rows "train"; users of ``valid_F2`` (``test_F2``) ->
  prefix rows "train", target rows "valid" ("test").

A target that repeats an item of the prefix (148 users) is removed by the builder's dedupe, which
keeps the earliest row.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd

from crossrec.data.builder import DatasetBuilder
from crossrec.data.sources.table import check_file, open_text
from crossrec.errors import DataError

DOMAINS = {"arts": "item_listA_F.csv", "office": "item_listO_AA_F.csv"}
SEQUENCES = {"train": "train_F2.txt", "valid": "valid_F2.txt", "test": "test_F2.txt"}
USERS = "userlist.txt"
ITEM_HEADER = ["idBefore", "item_title", "idAfter", "item_attribute"]


def read_arts_office(
    root: str | Path, *, name: str = "arts_office", builder: DatasetBuilder | None = None
) -> DatasetBuilder:
    """Add the Arts/Office users, items and interactions (with the authors' split as ``part``).

    Args:
        root: the folder holding the item lists, ``userlist.txt`` and the ``*_F2.txt`` files.
        name: dataset name when a new builder is created.
        builder: add to this builder instead of a new one.

    Returns:
        The builder; ``.build()`` then ``crossrec.data.split.predefined(dataset, "office")``
        reproduces the authors' split.

    Raises:
        DataError: a missing file, or a malformed line (file and line number).
    """
    root = Path(root)
    items = pd.concat([_items(root / f, d) for d, f in DOMAINS.items()], ignore_index=True)
    dup = items["item_id"].duplicated()
    if dup.any():
        raise DataError(f"{root}: item {items['item_id'][dup].iloc[0]} is in both item lists")
    domain_of = dict(zip(items["item_id"], items["domain"], strict=True))
    users = _users(root / USERS)
    rows: dict[str, list] = {k: [] for k in ("user_id", "item_id", "domain", "timestamp", "part")}
    done: dict[str, str] = {}
    for part, file in SEQUENCES.items():
        path = check_file(root / file)
        for line_no, user, prefix, target in _sequences(path, users, domain_of):
            if user in done:
                raise DataError(f"{path}, line {line_no}: user {user} is also in {done[user]}")
            done[user] = file
            seq = [(item, pos, "train") for item, pos in prefix]
            seq += [(item, pos, part) for item, pos in target]
            for item, pos, row_part in seq:
                rows["user_id"].append(user)
                rows["item_id"].append(item)
                rows["domain"].append(domain_of[item])
                rows["timestamp"].append(pos)
                rows["part"].append(row_part)
    builder = builder if builder is not None else DatasetBuilder(name)
    builder.add_interactions(pd.DataFrame(rows), source=str(root))
    builder.add_items(items, source=str(root))
    return builder


def _items(path: Path, domain: str) -> pd.DataFrame:
    path = check_file(path)
    out = []
    with open_text(path) as f:
        reader = csv.reader(f)
        try:
            header = next(reader)
            if header != ITEM_HEADER:
                raise DataError(f"{path}, line 1: expected header {','.join(ITEM_HEADER)}")
            for fields in reader:
                if len(fields) != 4 or not fields[2].strip().isdigit():
                    raise DataError(
                        f"{path}, line {reader.line_num}: expected 4 fields with an integer "
                        f"idAfter, found {len(fields)} field(s)"
                    )
                out.append((fields[2].strip(), domain, fields[1], fields[3]))
        except csv.Error as e:
            raise DataError(f"{path}, line {reader.line_num}: {e}") from None
    return pd.DataFrame(out, columns=["item_id", "domain", "title", "categories"])


def _users(path: Path) -> dict[str, str]:
    """User index -> Amazon reviewer id."""
    path = check_file(path)
    out: dict[str, str] = {}
    with open_text(path) as f:
        for line_no, line in enumerate(f, 1):
            fields = line.rstrip("\r\n").split("\t")
            if len(fields) != 2 or not fields[1].isdigit() or not fields[0]:
                raise DataError(f"{path}, line {line_no}: expected '<reviewer id>\\t<index>'")
            if fields[1] in out:
                raise DataError(f"{path}, line {line_no}: user index {fields[1]} repeated")
            out[fields[1]] = fields[0]
    return out


def _sequences(path: Path, users: dict[str, str], domain_of: dict[str, str]):
    """(line, reviewer id, prefix [(item, pos)], targets [(item, pos)]) per user of a file.

    The lines of a user must be consecutive and share everything but the last item.
    """
    current: tuple | None = None
    with open_text(path) as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            user, seq = _sequence_line(path, line_no, line, users, domain_of)
            if current is not None and current[1] == user:
                if seq[:-1] != current[2]:
                    raise DataError(
                        f"{path}, line {line_no}: the history differs from the line before "
                        "(the lines of a user must differ only in the last item)"
                    )
                current[3].append(seq[-1])
                continue
            if current is not None:
                yield current
            current = (line_no, user, seq[:-1], [seq[-1]])
    if current is None:
        raise DataError(f"{path}: the file is empty")
    yield current


def _sequence_line(
    path: Path, line_no: int, line: str, users: dict[str, str], domain_of: dict[str, str]
) -> tuple[str, list[tuple[str, int]]]:
    fields = line.rstrip("\r\n").rstrip("\t").split("\t")
    where = f"{path}, line {line_no}"
    if len(fields) < 3 or not fields[0].isdigit() or not fields[1].isdigit():
        raise DataError(f"{where}: expected 'user_index<TAB>k<TAB>item|p|p ...'")
    if fields[0] not in users:
        raise DataError(f"{where}: user index {fields[0]} is not in {USERS}")
    k = int(fields[1])
    if len(fields) - 2 != k + 1:
        raise DataError(f"{where}: k = {k} but {len(fields) - 2} items (expected k + 1)")
    seq = []
    for pos, token in enumerate(fields[2:]):
        parts = token.split("|")
        if len(parts) != 3 or not all(p.isdigit() for p in parts) or int(parts[1]) != pos:
            raise DataError(f"{where}: item {pos + 1} is {token!r}, expected 'item|{pos}|{pos}'")
        if parts[0] not in domain_of:
            raise DataError(f"{where}: item {parts[0]} is in neither item list")
        seq.append((parts[0], pos))
    return users[fields[0]], seq
