"""The ``crossrec`` command: thin wrappers around crossrec.experiment, crossrec.data, Bundle."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import click
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

from crossrec.cli_benchmark import SeedsOpt, SetOpt, benchmark, parse_seeds
from crossrec.cli_serve import recommend, serve
from crossrec.cli_store import store_app
from crossrec.cli_update import update
from crossrec.config import load_config
from crossrec.console import console
from crossrec.console import fail as _fail
from crossrec.errors import CrossrecError

if TYPE_CHECKING:
    from crossrec.config import ExperimentConfig

DEBUG_FLAG = "--debug"
FORMATS = "tabular, recbole, amazon_reviews, arts_office, cdrib"  # crossrec.data.sources.READERS
READER_OPTIONS = {  # the keyword options of each reader (a test checks they are all listed)
    "tabular": "split=FILE (a predefined split: user_id, item_id, domain, part = "
               "train/valid/test; rows it does not list are train), items=FILE (item_id, "
               "domain, title, text, categories, brand), domain=NAME (files without a domain "
               "column), name=NAME (dataset name; default: the interactions file's name), "
               "format=csv|tsv|parquet|jsonl (instead of the file extensions), "
               "columns='{user_id = \"reviewerID\"}' (your column names)",
    "recbole": "domains='{music = [\"Jazz\"]}' or a list of genres, domain_by=FIELD (default "
               "genre / class), name=NAME",
    "amazon_reviews": "files='{books = \"Books.csv\"}', meta='{books = \"meta_Books.json\"}', "
                      "csv_order=user_item|item_user|auto, name=NAME",
    "arts_office": "name=NAME",
    "cdrib": "pair=cloth_sport|game_video, common_users=N, name=NAME",
}


def _argument_help() -> None:
    """Render ``typer.Argument(help=...)``: typer 0.20 sets an argument's help before click
    8.2+'s ``Argument.__init__`` (which has its own ``help``) resets it to None."""
    from typer.core import TyperArgument

    if getattr(TyperArgument.__init__, "_keeps_help", False):
        return
    init = TyperArgument.__init__

    def keep_help(self: TyperArgument, *args: Any, help: str | None = None, **kw: Any) -> None:
        init(self, *args, help=help, **kw)
        self.help = help

    keep_help._keeps_help = True  # type: ignore[attr-defined]
    TyperArgument.__init__ = keep_help  # type: ignore[method-assign]


class _App(typer.Typer):
    """The ``crossrec`` app: an unexpected error (a bug, not bad input) is one line on stderr
    and exit status 1, with the traceback (no locals) only under ``--debug``."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        argv = kwargs.get("args", args[0] if args else None)
        try:
            return super().__call__(*args, **kwargs)
        except Exception as e:
            if DEBUG_FLAG in (sys.argv[1:] if argv is None else list(argv)):
                raise
            Console(stderr=True).print(f"[bold red]unexpected error:[/] {type(e).__name__}: "
                                       f"{escape(str(e))} (run with {DEBUG_FLAG} for the "
                                       "traceback)", soft_wrap=True)
            raise SystemExit(1) from None


class _OneLineUsage(TyperGroup):
    """Usage errors (unknown command or option, a value out of range) as one ``error:`` line
    on stderr with exit status 2, instead of click's boxed usage block."""

    def main(self, args: Any = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True, **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, **extra)
        except click.UsageError as e:
            Console(stderr=True).print(f"[bold red]error:[/] {escape(e.format_message())}",
                                       soft_wrap=True)
            sys.exit(2)
        except click.Abort:
            Console(stderr=True).print("[bold red]error:[/] aborted", soft_wrap=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


_argument_help()
app = _App(add_completion=False, no_args_is_help=True, pretty_exceptions_show_locals=False,
           cls=_OneLineUsage,
           help="Cross-domain recommendation: prepare data, train, evaluate, benchmark.")
data_app = typer.Typer(no_args_is_help=True, pretty_exceptions_show_locals=False,
                       help="Inspect prepared datasets.")
app.add_typer(data_app, name="data")


def _version(value: bool) -> None:
    if value:
        from crossrec import __version__

        console.print(f"crossrec {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit")] = False,
    debug: Annotated[bool, typer.Option(DEBUG_FLAG, help="Show the traceback of an "
                                        "unexpected error")] = False,
    threads: Annotated[int | None, typer.Option(
        "--threads", min=0, help="CPU threads for torch, BLAS and LightGBM (default: "
        "$CROSSREC_THREADS, else $OMP_NUM_THREADS, else the idle CPUs this process may use; "
        "0 = automatic)")] = None,
) -> None:
    """Cross-domain recommendation: prepare data, train, evaluate, benchmark."""
    from crossrec.threads import configure

    try:
        configure(threads)
    except CrossrecError as e:
        _fail(e)


def _parse_options(items: list[str] | None) -> dict:
    from crossrec.config import _parse_value

    out: dict = {}
    for item in items or []:
        if "=" not in item:
            raise CrossrecError(f"--option expects key=value, got {item!r}")
        k, v = item.split("=", 1)
        out[k.strip()] = _parse_value(v.strip())
    return out


def _stats_table(stats: dict, title: str) -> Table:
    t = Table(title=title)
    for col in ("domain", "users", "items", "items w/ interactions", "interactions", "density"):
        t.add_column(col, justify="right" if col != "domain" else "left")
    for d, s in stats["domains"].items():
        t.add_row(d, f"{s['users']:,}", f"{s['items']:,}", f"{s['items_with_interactions']:,}",
                  f"{s['interactions']:,}", f"{s['density']:.2e}")
    return t


def _print_stats(stats: dict, report: dict | None, title: str) -> None:
    console.print(_stats_table(stats, title))
    ov = Table(title="users in both domains")
    ov.add_column("pair")
    ov.add_column("overlapping users", justify="right")
    for pair, n in stats["overlap"].items():
        ov.add_row(pair.replace("|", " & "), f"{n:,}")
    console.print(ov)
    if report and report.get("steps"):
        rep = Table(title="cleaning report")
        rep.add_column("step")
        rep.add_column("rows dropped", justify="right")
        for step in report["steps"]:
            rep.add_row(step["step"], f"{step['dropped']:,}")
        console.print(rep)


@app.command(epilog="Reader options (-o key=value):\n\n" + "\n\n".join(
    f"{name}: {text}" for name, text in READER_OPTIONS.items())
    + "\n\nThen point an experiment at OUT with [data] prepared = \"OUT\".")
def prepare(
    format: Annotated[str, typer.Argument(help=f"Reader: {FORMATS}")],
    path: Annotated[str, typer.Argument(help="Raw data file or folder (relative paths also "
                                        "resolve against CROSSREC_DATA)")],
    out: Annotated[Path, typer.Argument(help="Output dataset directory")],
    option: Annotated[list[str] | None, typer.Option(
        "--option", "-o", help="Reader option key=value, repeatable (values are TOML: "
        "strings may be bare); the options of each FORMAT are listed below")] = None,
    k_core: Annotated[int, typer.Option(help="Per-domain k-core filter (0 = off)")] = 0,
    engine: Annotated[str, typer.Option(help="memory (pandas), duckdb (out of core, tabular "
                                        "format: files, directories, globs), or auto: duckdb "
                                        "for a directory, a glob or files over 1 GiB")] = "auto",
    memory_limit: Annotated[str | None, typer.Option(help="duckdb: memory limit, e.g. 2GB "
                                                     "(beyond it, spill to disk)")] = None,
    temp_dir: Annotated[Path | None, typer.Option(help="duckdb: where to spill")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace OUT even if it is "
                                            "not a dataset directory (a file, other files)")
                         ] = False,
    drop_bad_rows: Annotated[bool, typer.Option(
        "--drop-bad-rows", help="Drop rows with a bad rating or timestamp (not a number, not "
        "finite, out of range) and item rows in another domain than the item's interactions, "
        "counted in the cleaning report (tabular, recbole; default: refuse them)")] = False,
) -> None:
    """Read raw files, clean (dedupe, k-core), index and save a dataset directory.

    OUT must be new, empty or an earlier dataset (replaced atomically), unless --overwrite.
    Bad rows stop with their file and line, unless --drop-bad-rows.
    """
    from crossrec.atomic import check_output_dir
    from crossrec.data import sources
    from crossrec.data.dataset import is_dataset_dir
    from crossrec.experiment import resolve_data_path

    try:
        if engine not in ("auto", "memory", "duckdb"):
            raise CrossrecError(f"--engine {engine!r}: expected auto, memory or duckdb")
        check_output_dir(out, is_own=is_dataset_dir, overwrite=overwrite,
                         what="crossrec dataset directory")
        from crossrec.data.large.inputs import is_pattern

        src = Path(path) if is_pattern(path) else resolve_data_path(path)
        if not is_pattern(path) and not src.exists():
            from crossrec.paths import data_dir

            raise CrossrecError(f"{path}: no such file or directory"
                                + ("" if Path(path).is_absolute()
                                   else f" (nor under the data directory {data_dir()})"))
        if engine == "duckdb" or (engine == "auto" and format == "tabular"):
            from crossrec.data.large import LARGE_OPTIONS, prepare_large, use_large

            if engine == "duckdb" and format != "tabular":
                raise CrossrecError(f"--engine duckdb reads the tabular format, not {format!r}")
            if engine == "duckdb" or use_large(src):
                opts = _parse_options(option)
                extra = sorted(set(opts) - set(LARGE_OPTIONS))
                if extra:
                    raise CrossrecError(f"--engine duckdb: option(s) {extra} not supported "
                                        f"(supported: {', '.join(LARGE_OPTIONS)})")
                with console.status(f"preparing {src} with DuckDB ..."):
                    meta = prepare_large(src, out, k_core=k_core, memory_limit=memory_limit,
                                         temp_dir=temp_dir, drop_bad_rows=drop_bad_rows, **opts)
                _print_stats(meta["stats"], meta["report"],
                             f"{meta['name']} -> {out} (duckdb, {meta['seconds']:.1f} s)")
                _print_split(out)
                return
        with console.status(f"reading {format} data from {path} ..."):
            opts = _parse_options(option)
            if drop_bad_rows:
                opts["drop_bad_rows"] = True
            builder = sources.read(format, src, **opts)
            dataset = builder.build(k_core=k_core, drop_bad_rows=drop_bad_rows)
            dataset.save(out)
    except CrossrecError as e:
        _fail(e)
    _print_stats(dataset.stats(), dataset.report, f"{dataset.name} -> {out}")
    _print_split(out)


def _print_split(out: Path) -> None:
    """``predefined split: N valid / M test rows (T train)`` when the prepared dataset in
    ``out`` has one (a split file, or a ``part`` column)."""
    import pyarrow.parquet as pq

    path = out / "interactions.parquet"
    if "part" not in pq.read_schema(path).names:
        return
    parts = pq.read_table(path, columns=["part"]).column("part").to_pandas().astype(str)
    n = parts.value_counts()
    console.print(f"predefined split: {int(n.get('valid', 0)):,} valid / "
                  f"{int(n.get('test', 0)):,} test rows ({int(n.get('train', 0)):,} train); "
                  f'use it with [split] kind = "predefined" and [data] prepared = "{out}"',
                  markup=False, highlight=False)


@data_app.command("stats")
def data_stats(directory: Annotated[Path, typer.Argument(help="A prepared dataset directory")]
               ) -> None:
    """Users, items, interactions, density per domain; user overlap per domain pair."""
    from crossrec.data.dataset import MultiDomainDataset

    try:
        ds = MultiDomainDataset.load(directory)
    except CrossrecError as e:
        _fail(e)
    _print_stats(ds.stats(), ds.report, ds.name)


@app.command()
def encode(
    source: Annotated[str, typer.Argument(help="Experiment TOML file (its [data] and [encoder]) "
                                          "or a prepared dataset directory")],
    encoder: Annotated[str | None, typer.Option(help="Encoder name (minilm, mpnet)")] = None,
    template: Annotated[str | None, typer.Option(help="Item text template, e.g. "
                                                 "'{title}. {categories}'")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Texts per model call")] = None,
    backend: Annotated[str | None, typer.Option(help="torch, onnx, onnx-int8, torch-int8")] = None,
    max_seq_length: Annotated[int | None, typer.Option(help="Tokens kept per text")] = None,
    cache: Annotated[Path | None, typer.Option(help="Vector cache root (default: "
                                               "$CROSSREC_CACHE/vectors)")] = None,
    out: Annotated[Path | None, typer.Option(help="Also write the vectors as .npy "
                                             "(float32 [n_items, dim])")] = None,
    workers: Annotated[int, typer.Option(help="Encode the missing texts on N Ray workers "
                                         "(0 = in this process)")] = 0,
    address: Annotated[str | None, typer.Option(help="Ray cluster address for --workers "
                                                "(default: a local one)")] = None,
    set_: SetOpt = None,
) -> None:
    """Encode every item text of a dataset into the vector cache (a second run encodes nothing)."""
    import numpy as np
    from pydantic import ValidationError

    from crossrec.atomic import atomic_file
    from crossrec.config import DataConfig, EncoderConfig
    from crossrec.encoders import encode_with_stats, item_texts, load_encoder
    from crossrec.experiment import load_dataset

    flags = {"name": encoder, "template": template, "batch_size": batch_size,
             "backend": backend, "max_seq_length": max_seq_length}
    try:
        if source.endswith(".toml"):
            cfg = load_config(source, set_)
            data, enc_cfg = cfg.data, cfg.encoder
        else:
            data, enc_cfg = DataConfig(prepared=source), EncoderConfig()
        enc_cfg = EncoderConfig(**{**enc_cfg.model_dump(),
                                   **{k: v for k, v in flags.items() if v is not None}})
        dataset = load_dataset(data)
        texts = item_texts(dataset, enc_cfg.template)
        with console.status(f"loading encoder {enc_cfg.name} ({enc_cfg.backend}) ..."):
            model = load_encoder(enc_cfg.name, max_seq_length=enc_cfg.max_seq_length,
                                 backend=enc_cfg.backend)
        where = cache if cache is not None else "default"
        if workers:
            from functools import partial

            from crossrec.encoders import base
            from crossrec.encoders.distributed import encode_distributed

            factory = partial(base.load_encoder, enc_cfg.name,
                              max_seq_length=enc_cfg.max_seq_length, backend=enc_cfg.backend)
            vectors, stats = encode_distributed(texts, model, factory, workers=workers,
                                                cache=where, batch_size=enc_cfg.batch_size,
                                                address=address, progress=True)
        else:
            vectors, stats = encode_with_stats(texts, model, batch_size=enc_cfg.batch_size,
                                               cache=where, progress=True)
        if out is not None:
            def write(tmp: Path) -> None:
                with open(tmp, "wb") as fh:  # np.save(path) would add a suffix to tmp
                    np.save(fh, vectors)

            atomic_file(out, write)
    except CrossrecError as e:
        _fail(e)
    except ValidationError as e:  # a bad option value
        _fail(CrossrecError("; ".join(
            (f"--{str(err['loc'][0]).replace('_', '-')}: " if err["loc"] else "") + err["msg"]
            for err in e.errors())))
    console.print(f"{dataset.name}: {model.key} ({vectors.shape[1]}-d)")
    console.print(stats.summary())


@app.command()
def train(
    config: Annotated[Path, typer.Argument(help="Experiment TOML file")],
    out: Annotated[Path | None, typer.Option(help="Run directory (bundle + logs); must be new "
                                             "or empty (default: a new runs/train-<config "
                                             "name>-<UTC time>)")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Delete what is in OUT "
                                            "(e.g. an earlier run) and train there")] = False,
    seeds: SeedsOpt = None,
    seed: Annotated[str | None, typer.Option("--seed", hidden=True,
                                             help="Old spelling of --seeds")] = None,
    model: Annotated[str, typer.Option(help="Which model table of the file: its name, its "
                                       "label (as in benchmark tables, e.g. "
                                       "'itemknn(train_on=all)') or its 0-based index")] = "0",
    resume: Annotated[bool, typer.Option(help="Continue the run in OUT from its last "
                                               "end-of-epoch checkpoint")] = False,
    workers: Annotated[int, typer.Option(help="Train on N Ray Train workers (DDP; 0 = in this "
                                         "process); the model's batch_size stays the global batch")
                       ] = 0,
    address: Annotated[str | None, typer.Option(help="Ray cluster for --workers: ray://host:"
                                                "10001, host:6379 or auto (default: a local "
                                                "one)")] = None,
    max_failures: Annotated[int, typer.Option(help="With --workers: restarts of the worker "
                                              "group after a lost worker, each from the "
                                              "last finished epoch")] = 3,
    set_: SetOpt = None,
) -> None:
    """Train one model, evaluate it on valid and test, and save a bundle to OUT.

    A run killed during training continues with --resume and the same arguments: finished
    epochs are skipped and the result equals that of an uninterrupted run.

    With --workers N the same training runs data-parallel on N Ray workers; under
    'torchrun --nproc_per_node N -m crossrec train ...' on N processes (OUT must be on
    storage every worker sees).

    OUT is never replaced silently: an existing non-empty OUT is refused unless --resume
    (an earlier run) or --overwrite.
    """
    from crossrec.eval.report import format_long
    from crossrec.experiment import fit_and_evaluate, load_dataset, make_split, save_run
    from crossrec.training.distributed import under_torchrun
    from crossrec.training.rundir import run_dir

    chosen, existed = out is None, out is not None and out.exists()
    try:
        cfg = load_config(config, set_)
        seed = _one_seed(cfg, seeds, seed)
        specs = cfg.model_specs()
        model = _model_index(cfg, model)
        out = run_dir(out, cfg.name, resume=resume, overwrite=overwrite)
        if chosen:
            console.print(f"run directory: {out}")
        if workers or under_torchrun():
            shown = _train_distributed(cfg, model, seed, out, resume, workers, address,
                                       max_failures)
            if shown is None:
                return  # a torchrun rank other than 0: rank 0 reports
        else:
            split = make_split(load_dataset(cfg.data), cfg.split, seed)
            res = fit_and_evaluate(cfg, specs[model], split, seed, run_dir=out, resume=resume)
            save_run(res, out)
            shown = {"label": res.label, "split": split.name, "protocol": res.test.protocol,
                     "fit_seconds": res.fit_seconds, "summary": res.test.summary,
                     "by_domain": res.test.by_domain}
    except CrossrecError as e:
        if out is not None and not existed and out.is_dir() and not any(out.iterdir()):
            out.rmdir()  # created here and nothing written: leave nothing behind
        _fail(e)
    summary = shown.get("by_domain", shown["summary"])
    rows = summary.assign(model=shown["label"], mean=summary["value"], std=0.0, seeds=1)
    console.print(format_long(rows, title=f"{shown['label']} on {shown['split']}, "
                                          f"{shown['protocol']}"))
    console.print(f"fit {shown['fit_seconds']:.1f}s; bundle: {out / 'bundle'}")


def _one_seed(cfg: ExperimentConfig, seeds: str | None, old: str | None) -> int:
    """The seed ``train`` fits with: ``--seeds`` (one), its old spelling ``--seed``, else the
    first of ``train.seeds``."""
    if seeds is not None and old is not None:
        raise CrossrecError("give --seeds (--seed is its old spelling), not both")
    given = seeds if seeds is not None else old
    if given is None:
        return cfg.train.seeds[0] if cfg.train.seeds else 0
    chosen = parse_seeds(given)
    if len(chosen) != 1:
        raise CrossrecError(f"--seeds {given}: train fits one model with one seed; give one "
                            "(benchmark runs several)")
    return chosen[0]


def _model_index(cfg: ExperimentConfig, wanted: str) -> int:
    """The model table ``--model`` names: a 0-based index, a label or a name (unique)."""
    from crossrec.models import model_label

    specs = cfg.model_specs()
    labels = [model_label(s) for s in specs]
    if wanted.strip().isdigit():
        if int(wanted) < len(specs):
            return int(wanted)
        raise CrossrecError(f"--model {wanted}: the file has {len(specs)} model table(s) "
                            f"(0 to {len(specs) - 1}: {', '.join(labels)})")
    for found in ([i for i, lab in enumerate(labels) if lab == wanted],
                  [i for i, s in enumerate(specs) if s["name"] == wanted]):
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise CrossrecError(f"--model {wanted}: {len(found)} model tables match; give "
                                f"a label or an index (labels: {', '.join(labels)})")
    raise CrossrecError(f"--model {wanted}: no model table of {cfg.name} has that name or "
                        f"label (labels: {', '.join(labels)}; or an index 0 to "
                        f"{len(specs) - 1})")


def _train_distributed(cfg, model: int, seed: int, out: Path, resume: bool,  # noqa: ANN001
                       workers: int, address: str | None, max_failures: int) -> dict | None:
    """``train`` on Ray workers (``workers`` > 0) or as one torchrun process: what to print
    (``distributed.report`` with the summary as a frame), None on torchrun ranks but 0."""
    import pandas as pd

    from crossrec.experiment import load_dataset, make_split
    from crossrec.training import distributed

    job = distributed.TrainJob(cfg.model_dump(), model, seed, str(out.resolve()), resume,
                               progress=not workers and sys.stderr.isatty())
    if workers:
        if not (address or "").startswith("ray://"):  # the data are here: check them first
            make_split(load_dataset(cfg.data), cfg.split, seed)

        def epoch(r: dict) -> None:
            valid = "" if r["valid"] is None else f"  valid {r['valid']:.4f}"
            console.print(f"stage {r['stage']} epoch {r['epoch']}: loss {r['loss']:.4f}{valid}"
                          f"  ({r['seconds']:.1f}s)")

        shown = distributed.train_ray(job, workers, address=address, max_failures=max_failures,
                                      on_epoch=epoch)
    else:
        res = distributed.train_torchrun(job)
        shown = None if res is None else distributed.report(res)
    if shown is None:
        return None
    summary = pd.DataFrame(shown["summary"])
    summary["k"] = summary["k"].astype("Int64")
    return {**shown, "summary": summary}


@app.command()
def evaluate(
    bundle: Annotated[Path, typer.Argument(help="A bundle directory written by 'crossrec train'")],
    part: Annotated[str, typer.Option(help="valid or test")] = "test",
    workers: Annotated[int, typer.Option(help="Split the users over N Ray tasks (0 = in this "
                                         "process); the merged result is the same")] = 0,
    address: Annotated[str | None, typer.Option(help="Ray cluster address for --workers "
                                                "(default: a local one)")] = None,
) -> None:
    """Re-evaluate a saved bundle on the split its config describes (its eval protocol:
    ranking, sampled, next_item or rating error)."""
    from crossrec.bundle import Bundle
    from crossrec.config import ExperimentConfig
    from crossrec.eval.report import format_long
    from crossrec.eval.run import run
    from crossrec.experiment import load_dataset, make_split

    try:
        b = Bundle.load(bundle)
        cfg = ExperimentConfig(**b.config["experiment"])
        split = make_split(load_dataset(cfg.data), cfg.split, int(b.config["seed"]))
        res = run(b.model, split, cfg.eval, part=part, seed=int(b.config["seed"]),
                  workers=workers, address=address)
    except CrossrecError as e:
        _fail(e)
    by_domain = res.by_domain
    rows = by_domain.assign(model=b.config["model"]["name"], mean=by_domain["value"], std=0.0,
                            seeds=1)
    console.print(format_long(rows, title=f"{bundle} on {split.name} ({part}), {res.protocol}"))


app.command()(benchmark)
app.command()(recommend)
app.command()(serve)
app.command()(update)
app.add_typer(store_app, name="store")


def main() -> None:  # pragma: no cover
    app()
