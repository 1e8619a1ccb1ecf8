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


def _cold_only() -> pd.DataFrame:
    """Every test user cold: the "cold" rows equal the "all" rows; two domains plus pooled."""
    out = []
    for model, base in (("pop", 0.1), ("ease", 0.3)):
        for domain, shift in (("all", 0.0), ("books", 0.02), ("music", -0.02)):
            for group in ("all", "cold"):
                for k in (1, 5, 10):
                    out.append({"model": model, "domain": domain, "group": group,
                                "metric": "ndcg", "k": k, "mean": base + shift + k / 100,
                                "std": 0.0, "n_users": 50, "seeds": 1})
    frame = pd.DataFrame(out)
    frame["k"] = frame["k"].astype("Int64")
    return frame


def test_a_group_equal_to_all_users_is_reported_once(tmp_path, monkeypatch) -> None:
    from crossrec.eval import report

    panels = []
    real = report._chart

    def spy(rows, groups, same, *args):
        panels.append((list(groups), dict(same)))
        return real(rows, groups, same, *args)

    monkeypatch.setattr(report, "_chart", spy)
    md = write_report(_cold_only(), tmp_path, title="t", command="c",
                      config={"eval": {"report_group": "cold"}}).read_text()
    assert panels == [(["cold"], {"all": "cold"})]  # one chart panel, not two equal ones
    assert md.count("| model | domain |") == 1 and "The same users as all users" in md
    assert "| ease | books | 0.3300 | 0.3700 | 0.4200 | 50 | 1 |" in md
    data = json.loads((tmp_path / "results.json").read_text())
    assert {r["domain"] for r in data["rows"]} == {"all"}
    assert {r["domain"] for r in data["domain_rows"]} == {"books", "music"}


def test_format_long_fits_80_columns() -> None:
    from crossrec.eval.report import format_long

    out = []
    for group, mean in (("all", 0.0111), ("cold", 0.0222), ("warm", 0.0333)):
        for metric in ("recall", "ndcg", "hr", "mrr", "precision"):
            for k in (10, 20):
                out.append({"model": "bpr(train_on=all,epochs=30)", "group": group,
                            "metric": metric, "k": k, "mean": mean, "std": 0.0,
                            "n_users": 1234, "seeds": 1})
    frame = pd.DataFrame(out)
    console = Console(width=80, record=True)
    console.print(format_long(frame, title="bpr on cold_start_users, full"))
    text = console.export_text()
    assert "…" not in text and all(text.count(v) == 10 for v in ("0.0111", "0.0222", "0.0333"))
    wide = Console(width=80, record=True)
    wide.print(format_table(frame))
    assert "…" in wide.export_text()  # what `crossrec train` printed before
