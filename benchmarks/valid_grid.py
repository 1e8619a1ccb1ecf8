"""Choose a model's settings on validation users only: a grid of overrides, one fit each.

Run: ``OMP_NUM_THREADS=1 python benchmarks/valid_grid.py CONFIG --model NAME_OR_LABEL
--grid '{"objective": ["bce", "softmax"], "learning_rate": [0.001, 0.01]}' [--seed 0]
[--set key=value ...] [--json PATH]``.

Takes the model table of CONFIG (by label or name), makes the config's split for ``--seed``
and fits one model per combination of the grid (the table's own settings, then the grid's
overrides), with early stopping on the validation users as in ``crossrec benchmark``. It
reads **only the validation users** (the early-stopping metric, ``train.early_stopping``, of
the best epoch, recomputed once after the fit): test users are never scored, so the chosen
settings can then be tested once with ``crossrec benchmark``. Prints a table best first.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from crossrec.config import load_config
from crossrec.experiment import (
    build_model,
    fit_options,
    load_dataset,
    make_split,
    model_label,
)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("config", type=Path)
    p.add_argument("--model", required=True, help="label or name of a model table of CONFIG")
    p.add_argument("--grid", required=True, help="JSON object: field -> list of values")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", action="append", default=[], dest="overrides")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    console = Console()
    cfg = load_config(args.config, args.overrides)
    specs = [s for s in cfg.model_specs() if args.model in (model_label(s), s["name"])]
    if not specs:
        console.print(f"[red]no model {args.model!r} in {args.config}")
        return 2
    grid = json.loads(args.grid)
    names = list(grid)
    split = make_split(load_dataset(cfg.data), cfg.split, args.seed)
    metric = cfg.train.early_stopping
    rows = []
    for values in itertools.product(*(grid[n] for n in names)):
        spec = {**specs[0], **dict(zip(names, values, strict=True))}
        options = fit_options(cfg, split, args.seed, progress=False)
        start = time.perf_counter()
        model = build_model(spec).fit(split.train, options)
        seconds = time.perf_counter() - start
        value = float(options.validate(model))
        summary = getattr(model, "training_summary", None)
        epochs = ("/".join(f"{s.best_epoch}" for s in summary.stages if s.best_epoch)
                  if summary is not None else "")
        rows.append({**dict(zip(names, values, strict=True)), "valid": value,
                     "best_epoch": epochs, "fit_s": round(seconds, 1)})
        console.print(f"{dict(zip(names, values, strict=True))}: valid {metric} = {value:.4f} "
                      f"(best epoch {epochs or '-'}, fit {seconds:.0f} s)", highlight=False)
    rows.sort(key=lambda r: -r["valid"])
    table = Table(title=f"{model_label(specs[0])} on {cfg.name}, seed {args.seed}: "
                        f"validation {metric} (test users not scored)")
    for col in [*names, f"valid {metric}", "best epoch", "fit s"]:
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(*(str(r[n]) for n in names), f"{r['valid']:.4f}", str(r["best_epoch"]),
                      f"{r['fit_s']:.0f}")
    console.print(table)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"config": str(args.config), "model": args.model,
                                         "seed": args.seed, "metric": metric, "rows": rows},
                                        indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
