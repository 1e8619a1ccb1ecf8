"""The "Your own data" page (docs/own-data.md), followed literally on a dataset written here:
two domains, item sequences, a split file -> per-domain full and sampled-999 next-item tables
from one ``crossrec benchmark`` run."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from crossrec.cli import app

PAGE = Path(__file__).resolve().parents[1] / "docs" / "own-data.md"
N_ITEMS = {"books": 1100, "music": 1050}


def write_shop(where: Path, n_users: int = 80, seed: int = 0) -> None:
    """``interactions.csv`` (12 time-ordered rows per user, both domains), ``items.csv`` (every
    item, titled) and ``split.csv`` (the last row per domain of every 4th+1 user valid, of
    every 4th+2 user test)."""
    rng = np.random.default_rng(seed)
    rows, split = [], []
    for u in range(n_users):
        t, seq = 0, []
        for _ in range(12):
            d = "books" if rng.random() < 0.5 else "music"
            item = int(((u * 7) % N_ITEMS[d] + rng.integers(0, 30)) % N_ITEMS[d])
            t += int(rng.integers(1, 100))
            seq.append((f"u{u}", f"{d[0]}{item}", d, t))
        rows += seq
        if u % 4 in (1, 2):
            for d in N_ITEMS:
                last = [r for r in seq if r[2] == d]
                if last:
                    split.append((*last[-1][:3], "valid" if u % 4 == 1 else "test"))
    pd.DataFrame(rows, columns=["user_id", "item_id", "domain", "timestamp"]).to_csv(
        where / "interactions.csv", index=False)
    pd.DataFrame(split, columns=["user_id", "item_id", "domain", "part"]).to_csv(
        where / "split.csv", index=False)
    items = [(f"{d[0]}{i}", d, f"{d} item {i}") for d, n in N_ITEMS.items() for i in range(n)]
    pd.DataFrame(items, columns=["item_id", "domain", "title"]).to_csv(where / "items.csv",
                                                                         index=False)


def page_parts() -> tuple[dict[str, str], list[str]]:
    """The page's files (code blocks with a ``title``) and its ``crossrec`` commands."""
    text = PAGE.read_text()
    files = dict(re.findall(r'```toml title="([^"]+)"\n(.*?)```', text, flags=re.S))
    commands = [line.strip() for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S)
                for line in block.splitlines() if line.strip().startswith("crossrec ")]
    return files, commands


def test_the_own_data_page_runs_as_written(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CROSSREC_CACHE", str(tmp_path / "cache"))
    write_shop(tmp_path)
    files, commands = page_parts()
    assert set(files) == {"shop-full.toml", "shop-sampled.toml"}
    assert [c.split()[1] for c in commands] == ["prepare", "benchmark"]
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    outputs = []
    for command in commands:
        r = CliRunner().invoke(app, shlex.split(command)[1:], env={"COLUMNS": "200"})
        assert r.exit_code == 0, r.output
        outputs.append(r.output)
    assert "predefined split: 40 valid / 40 test rows" in outputs[0]

    out = tmp_path / "runs" / "shop"
    for name, protocol in (("shop-full", "next-item/domain"), ("shop-sampled", "sampled-999")):
        data = json.loads((out / name / "results.json").read_text())
        assert data["protocol"] == protocol
        domains = {r["domain"] for r in data["domain_rows"]}
        assert domains == {"books", "music"}
        have = {(r["model"], r["domain"], f"{r['metric']}@{r['k']}") for r in data["domain_rows"]}
        for d in domains:
            for m in ("hr@1", "hr@5", "hr@10", "ndcg@1", "ndcg@5", "ndcg@10"):
                assert ("itemknn(train_on=all)", d, m) in have
        assert {r["domain"] for r in data["rows"]} == {"all"}
        md = (out / name / "report.md").read_text()
        assert "| model | domain | hr@1 |" in md and "| itemknn(train_on=all) | books |" in md
        runs = [json.loads(p.read_text()) for p in (out / name / "runs").glob("*/run.json")]
        assert sorted(r["label"] for r in runs) == ["itemknn(train_on=all)", "pop", "transition"]
        assert {r["seed"] for r in runs} == {0}
    assert "sampled-999" in outputs[1] and "next-item/domain" in outputs[1]

    # the negatives: 999 distinct items of the truth's own domain, none from the history
    drawn = pd.read_parquet(out / "shop-sampled" / "negatives" / "test-seed0-n999.parquet")
    from crossrec.data.dataset import MultiDomainDataset

    ds = MultiDomainDataset.load(tmp_path / "shop")
    inter = ds.interactions
    history = inter[inter["part"].astype(str) != "test"].groupby("user")["item"].apply(set)
    for row in drawn.itertuples():
        neg = np.asarray(row.negatives)
        span = ds.domain_items(row.domain)
        assert len(np.unique(neg)) == 999 and row.item not in set(neg)
        assert neg.min() >= span.start and neg.max() < span.stop
        assert not set(neg) & history.get(row.user, set())
