"""``crossrec benchmark``: several models x seeds on one dataset and split (and the options
every command shares: ``--set``, ``--seeds``)."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from crossrec.config import load_config
from crossrec.console import console
from crossrec.console import fail as _fail
from crossrec.errors import CrossrecError

# printed; every metric goes to report.md / JSON
SHOWN = ["recall", "ndcg", "hr", "mrr", "mae", "rmse"]

SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Override: key.path=value")]
SeedsOpt = Annotated[str | None, typer.Option(
    "--seeds", help="Comma-separated run seeds, e.g. 0,1,2 (default: train.seeds)")]


def parse_seeds(text: str, option: str = "--seeds") -> list[int]:
    """``"0,1,2"`` -> ``[0, 1, 2]``: the one seeds syntax of every command.

    Raises:
        CrossrecError: not comma-separated non-negative integers (the message quotes it).
    """
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    if not parts or not all(p.isdigit() for p in parts):
        raise CrossrecError(f"{option} {text!r}: expected comma-separated non-negative "
                            "integers, e.g. 0,1,2")
    return [int(p) for p in parts]



def benchmark(
    configs: Annotated[list[Path], typer.Argument(help="Experiment TOML file(s) with [[models]]")],
    out: Annotated[Path | None, typer.Option(help="Report directory (one config) or parent "
                                             "of one directory per config")] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write rows as JSON (with "
                                                   "several configs: NAME-<config>.json)")] = None,
    seeds: SeedsOpt = None,
    seed: Annotated[str | None, typer.Option("--seed", hidden=True,
                                             help="Old spelling of --seeds")] = None,
    only: Annotated[str | None, typer.Option(help="Comma-separated model names or labels: "
                                             "run only these models of the file")] = None,
    resume: Annotated[bool, typer.Option(help="Read back the (model, seed) runs already in "
                                         "OUT/runs and continue an interrupted neural fit "
                                         "from its last finished epoch (every run is kept "
                                         "there: per-user rows, run.json, per-epoch "
                                         "train_log.jsonl)")] = False,
    set_: SetOpt = None,
) -> None:
    """Several models x seeds on one dataset and split: table, report.md, PNG, JSON.

    Given several configs (e.g. configs/cdr-*.toml), runs each in turn. With --resume
    an interrupted benchmark, run again with the same command, fits only what is missing.
    """
    overrides = list(set_ or [])
    try:
        if seeds is not None and seed is not None:
            raise CrossrecError("give --seeds (--seed is its old spelling), not both")
        if seeds is not None or seed is not None:
            chosen = parse_seeds(seeds if seeds is not None else seed)
            overrides.append(f"train.seeds={chosen}")
    except CrossrecError as e:
        _fail(e)
    command = "crossrec " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    for config in configs:
        try:
            cfg = load_config(config, overrides)
            if only:
                cfg = _only(cfg, only)
            if out is None:
                where = Path("runs") / f"benchmark-{cfg.name}"
            else:
                where = out if len(configs) == 1 else out / cfg.name
            js = json_path
            if js is not None and len(configs) > 1:
                js = js.with_name(f"{js.stem}-{cfg.name}{js.suffix or '.json'}")
            _benchmark_one(cfg, where, js, command, resume)
        except CrossrecError as e:
            _fail(e)


def _only(cfg, only: str):  # noqa: ANN001, ANN202
    """``cfg`` with only the model tables whose name or label is in ``only`` (comma-separated)."""
    from crossrec.experiment import model_label

    wanted = {w.strip() for w in only.split(",") if w.strip()}
    specs = [s for s in cfg.model_specs() if s["name"] in wanted or model_label(s) in wanted]
    if not specs:
        labels = ", ".join(model_label(s) for s in cfg.model_specs())
        raise CrossrecError(f"--only {only}: no model of {cfg.name} has that name or label "
                            f"(labels: {labels})")
    return cfg.model_copy(update={"models": specs, "model": None})


def _benchmark_one(cfg, out: Path, json_path: Path | None, command: str,  # noqa: ANN001
                   resume: bool = False) -> None:
    import pandas as pd

    from crossrec.atomic import atomic_file
    from crossrec.eval.report import distinct_groups, format_table, write_report
    from crossrec.experiment import benchmark as run_benchmark
    from crossrec.experiment import headline_metric, paired_against_best, paired_cross_vs_baseline

    console.rule(cfg.name)
    result = run_benchmark(cfg, log=console.print, runs=out / "runs", resume=resume)
    rows = pd.concat([result.rows, result.domain_rows], ignore_index=True)
    group = cfg.eval.report_group
    main = headline_metric(cfg)
    tests = paired_against_best(result, main, group)
    cross = paired_cross_vs_baseline(result, main, group)
    tested = "squared error per rating, for rmse" if main == "rmse" else main
    report_cfg = {**cfg.model_dump(), "protocol": result.protocol, "splits": result.splits,
                  "paired_tests": tests.to_dict("records"),
                  "paired_cross_vs_baseline": cross.to_dict("records")}
    path = write_report(rows, out, title=f"{cfg.name} ({result.protocol})",
                        command=command, config=report_cfg,
                        tests={f"best model vs every other ({tested}, {group} users)": tests,
                               f"best cross-domain model vs best baseline ({tested}, {group} "
                               "users)": cross})
    if json_path:
        text = json.dumps({"rows": result.rows.to_dict("records"),
                           "domain_rows": result.domain_rows.to_dict("records"),
                           "config": report_cfg}, indent=2, default=str)
        atomic_file(json_path, lambda tmp: tmp.write_text(text))
    present = [g for g in ("all", "cold", "warm") if (rows["group"] == g).any()]
    for g in distinct_groups(rows, present)[0]:
        sub = rows[rows["group"] == g]
        if len(sub):
            sub = sub[sub["metric"].isin(SHOWN)]
            console.print(format_table(sub, title=f"{cfg.name}: {g} users ({result.protocol})"))
    for title, frame in ((f"paired tests on the same users ({main}, {group})", tests),
                         (f"best cross-domain model vs best baseline ({main}, {group})", cross)):
        if not len(frame):
            continue
        t = Table(title=title)
        for c in ("best", "other", "mean_diff", "p_wilcoxon", "p_ttest", "n"):
            t.add_column(c)
        for r in frame.to_dict("records"):
            t.add_row(str(r["best"]), str(r["other"]), f"{r.get('mean_diff', float('nan')):+.4f}",
                      f"{r.get('p_wilcoxon', float('nan')):.2g}",
                      f"{r.get('p_ttest', float('nan')):.2g}", str(r.get("n")))
        console.print(t)
    console.print(f"report: {path}")
