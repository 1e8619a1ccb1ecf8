"""``crossrec store add|list|activate|rollback``: manage the versions of a bundle store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from crossrec.console import console
from crossrec.console import fail as _fail
from crossrec.errors import CrossrecError

RELOAD_HINT = "reload the server (POST /admin/reload or SIGHUP) to serve it"

store_app = typer.Typer(no_args_is_help=True, pretty_exceptions_show_locals=False,
                        help="Bundle stores: the versions a server can serve, and which is "
                             "live.")

StoreArg = Annotated[Path, typer.Argument(help="Bundle store directory (store.json + "
                                               "versions/)")]


@store_app.command("add")
def store_add(
    store: StoreArg,
    bundle: Annotated[Path, typer.Argument(help="A bundle directory written by 'crossrec "
                                                "train' (verified, then copied in)")],
    activate: Annotated[bool, typer.Option("--activate", help="Make it live (it is anyway "
                                           "when the store has no live version)")] = False,
) -> None:
    """Copy BUNDLE into STORE (created when absent) as a version named by its content hash."""
    from crossrec.cli_update import _versions_table
    from crossrec.serving.store import BundleStore

    try:
        bs = BundleStore.create(store)
        version = bs.add_directory(bundle)
        if bs.live is None or activate:
            bs.activate(version)
        console.print(f"added {version} to {store}; live: {bs.live}")
        console.print(_versions_table(bs))
    except CrossrecError as e:
        _fail(e)


@store_app.command("list")
def store_list(
    store: StoreArg,
    json_out: Annotated[bool, typer.Option("--json", help="Print store.json's versions, live "
                                           "version and history as JSON")] = False,
) -> None:
    """The versions of STORE, the live one starred, with where each came from."""
    from crossrec.cli_update import _versions_table
    from crossrec.serving.store import BundleStore

    try:
        bs = BundleStore(store)
        state = bs.state()
    except CrossrecError as e:
        _fail(e)
    if json_out:
        print(json.dumps({k: state[k] for k in ("live", "history", "versions")}, indent=2,
                         default=str))
        return
    console.print(_versions_table(bs))
    console.print(f"activation history (newest last): {' -> '.join(state['history']) or '-'}")


@store_app.command("activate")
def store_activate(
    store: StoreArg,
    version: Annotated[str, typer.Argument(help="A version of the store, or a unique prefix")],
) -> None:
    """Make VERSION live (every file verified first; pushed on the activation history)."""
    from crossrec.serving.store import BundleStore

    try:
        previous, now = BundleStore(store).activate(version)
    except CrossrecError as e:
        _fail(e)
    if previous == now:
        console.print(f"{now} is already live")
    else:
        console.print(f"{now} is live (was {previous or 'none'}); {RELOAD_HINT}")


@store_app.command("rollback")
def store_rollback(store: StoreArg) -> None:
    """Make the version that was live before the current one live again."""
    from crossrec.cli_update import _versions_table
    from crossrec.serving.store import BundleStore

    try:
        bs = BundleStore(store)
        was, now = bs.rollback()
    except CrossrecError as e:
        _fail(e)
    console.print(f"rolled back: {now} is live again (was {was}); {RELOAD_HINT}")
    console.print(_versions_table(bs))
