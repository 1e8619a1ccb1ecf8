"""write_report / format_table."""

from __future__ import annotations

import json

import pandas as pd
from rich.console import Console

from crossrec.eval.report import format_table, write_report


def rows() -> pd.DataFrame:
    out = []
    for model, base in (("pop", 0.1), ("emcdr", 0.2)):
        for group, shift in (("all", 0.0), ("cold", -0.05), ("warm", 0.03)):
            for metric, k in (("ndcg", 10), ("recall", 10), ("ndcg", 20), ("auc", None)):
                out.append({"model": model, "group": group, "metric": metric, "k": k,
                            "mean": base + shift, "std": 0.01, "n_users": 100, "seeds": 3})
    frame = pd.DataFrame(out)
    frame["k"] = frame["k"].astype("Int64")
    return frame


def test_write_report(tmp_path) -> None:
    out = tmp_path / "rep"
    path = write_report(rows(), out, title="Arts -> Office", command="crossrec benchmark x.toml",
                        config={"eval": {"report_group": "cold"}, "protocol": "full"})
    assert path == out / "report.md"
    md = path.read_text()
    assert "# Arts -> Office" in md and "crossrec benchmark x.toml" in md
    assert "Protocol: **full**" in md
    assert "| model | ndcg@10 | ndcg@20 | recall@10 | auc | users | seeds |" in md
    assert "| emcdr | 0.1500 ± 0.0100 |" in md  # cold is the main group, first table
    assert md.index("## cold users (main)") < md.index("## all users")
    data = json.loads((out / "results.json").read_text())
    assert len(data["rows"]) == 24 and data["config"]["protocol"] == "full"
    assert data["rows"][3]["k"] is None
    assert (out / "metrics.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files left


def test_protocol_from_rows(tmp_path) -> None:
    r = rows().assign(protocol="sampled-999")
    md = write_report(r, tmp_path, title="t", command="c", config={}).read_text()
    assert "sampled-999" in md


def test_format_table() -> None:
    table = format_table(rows(), title="x")
    headers = [c.header for c in table.columns]
    assert headers == ["model", "group", "ndcg@10", "ndcg@20", "recall@10", "auc", "users"]
    assert table.row_count == 6
    one = format_table(rows(), group="all")
    assert [c.header for c in one.columns][0] == "model" and one.row_count == 2
    text = Console(width=200, record=True)
    text.print(one)
    assert "0.2000 ± 0.0100" in text.export_text()
