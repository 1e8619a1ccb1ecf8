"""``crossrec update``: refit a served bundle store on the events the server stored, roll back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from crossrec.console import console
from crossrec.console import fail as _fail
from crossrec.errors import CrossrecError

GUARD_REFUSED = 3  # exit code: the new version was written but the metric guard kept it off


def _versions_table(store) -> Table:  # noqa: ANN001 - BundleStore, imported lazily
    state = store.state()
    t = Table(title=f"versions in {store.root}")
    for col in ("version", "live", "created", "origin", "parent", "events used",
                "keys excluded"):
        t.add_column(col)
    for v, rec in state["versions"].items():
        t.add_row(v, "*" if v == state["live"] else "", str(rec.get("created_at", "")),
                  str(rec.get("origin", "")), str(rec.get("parent") or ""),
                  str(rec.get("events_used", "")), ", ".join(rec.get("excluded_keys") or []))
    return t


def _summary(result) -> None:  # noqa: ANN001 - UpdateResult, imported lazily
    c = result.counts
    t = Table(title="events")
    for col in ("read", "used (new pairs)", "duplicates", "unknown items", "unknown domains",
                "excluded keys", "new users"):
        t.add_column(col, justify="right")
    t.add_row(*(f"{x:,}" for x in (c.read, c.used, c.duplicates, c.unknown_items,
                                   c.unknown_domains, c.excluded, c.new_users)))
    console.print(t)
    if result.new_version is None:
        return
    console.print(f"training interactions {result.train_rows[0]:,} -> {result.train_rows[1]:,}; "
                  f"refit from scratch in {result.fit_seconds:.1f}s")
    ev = result.evaluation
    if ev is not None:
        t = Table(title=f"old {result.old_version} vs new {result.new_version} on the same "
                        f"held-out users ({ev.config}, group {ev.group})")
        for col in ("part", "users", "metric", "old", "new", "new - old"):
            t.add_column(col, justify="left" if col in ("part", "metric") else "right")
        for part, vals in ev.values.items():
            for m, (o, n) in vals.items():
                t.add_row(part, str(ev.n_users[part]), m, f"{o:.4f}", f"{n:.4f}", f"{n - o:+.4f}")
        console.print(t)
        g = result.guard
        console.print(f"metric guard: {g['metric']} of {g['part']} users {g['new']:.4f} (new) vs "
                      f"{g['old']:.4f} (old), tolerance {g['tolerance']}: "
                      f"{'passed' if g['passed'] else '[bold red]failed[/]'}")
        for name, chk in ev.checks.items():
            if chk["truth_in_train"]:
                console.print(f"[bold red]warning:[/] {chk['truth_in_train']} held-out rows are "
                              f"in the training data of the {name} version: its figures are "
                              "not held-out figures")


def update(
    store: Annotated[Path, typer.Argument(help="Bundle store directory (created by --add)")],
    events: Annotated[str | None, typer.Option(help="Event store the server writes: SQLite "
                                               "file or postgresql:// URL")] = None,
    eval_config: Annotated[Path | None, typer.Option(help="Experiment TOML whose split gives "
                                                     "the held-out users for old vs new")] = None,
    activate: Annotated[bool, typer.Option("--activate", help="Make the new version live if "
                                           "the metric guard passes")] = False,
    force: Annotated[bool, typer.Option("--force", help="With --activate: ignore the metric "
                                        "guard")] = False,
    tolerance: Annotated[float, typer.Option(help="Metric guard: the new validation headline "
                                             "metric may be worse by at most this")] = 0.005,
    all_events: Annotated[bool, typer.Option("--all-events", help="Read every stored event, "
                                             "not only those after the live version's")] = False,
    exclude_key: Annotated[list[str] | None, typer.Option(
        "--exclude-key", help="Drop the events posted with this API key id (its name= or "
        "the 12-hex digest prefix the server logs); repeatable")] = None,
    rollback: Annotated[bool, typer.Option("--rollback", help="Make the previously live "
                                           "version live again (now: crossrec store "
                                           "rollback)")] = False,
    add: Annotated[Path | None, typer.Option(help="Put this bundle directory into the store "
                                             "(creating it); live if none is (now: crossrec "
                                             "store add)")] = None,
    device: Annotated[str, typer.Option(help="Where the refit runs")] = "cpu",
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the summary as "
                                                   "JSON")] = None,
) -> None:
    """Refit STORE's live version on the events stored since, as a new version.

    Events are mapped to the bundle's ids (unknown items skipped and counted, new users
    added), appended to its training interactions without duplicates, and the model is refitted
    from scratch with the bundle's own config and seed. With --eval-config, old and new are
    evaluated on the same held-out users. The new version goes live only with --activate (and
    a passing metric guard, or --force); then reload the server (POST /admin/reload or SIGHUP).
    """
    from crossrec.cli_store import store_add, store_rollback
    from crossrec.serving.store import BundleStore
    from crossrec.serving.update import run_update

    if add is not None:
        console.print("[dim]note: `crossrec store add STORE BUNDLE` is the new home of --add[/]")
        store_add(store, add, activate=activate)
        return
    if rollback:
        console.print("[dim]note: `crossrec store rollback STORE` is the new home of "
                      "--rollback[/]")
        store_rollback(store)
        return
    try:
        bs = BundleStore(store)
        if events is None:
            raise CrossrecError("give --events (the event store), or --rollback / --add")
        result = run_update(bs, events, eval_config=eval_config, activate=activate,
                            force=force, tolerance=tolerance, all_events=all_events,
                            device=device, exclude_keys=exclude_key or (),
                            log=lambda m: console.print(f"[dim]{m}[/]"))
    except CrossrecError as e:
        _fail(e)
    _summary(result)
    console.print(_versions_table(bs))
    console.print(result.message)
    if json_path is not None:
        from crossrec.atomic import atomic_file

        text = json.dumps(result.to_dict(), indent=2, default=str)
        atomic_file(json_path, lambda tmp: tmp.write_text(text))
    if activate and not result.activated and result.new_version is not None:
        raise typer.Exit(code=GUARD_REFUSED)
