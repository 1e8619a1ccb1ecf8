"""From an experiment's ``[data]`` and ``[split]`` tables to a dataset and its split."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from crossrec.config import (
    ColdStartItemsSplit,
    ColdStartUsersSplit,
    DataConfig,
    LeaveOneOutSplit,
    NewDomainSplit,
    PredefinedSplit,
    SplitConfig,
    TemporalSplit,
)
from crossrec.data import split as splits
from crossrec.data.dataset import FORMAT_VERSION, MultiDomainDataset, is_dataset_dir
from crossrec.errors import ConfigError, DataError
from crossrec.paths import cache_dir, data_dir

PREPARED_HINT = "to use a prepared dataset, set [data] prepared = DIR"
"""What every error about ``[data]`` pointing at something that is not raw data says."""


def resolve_data_path(path: str) -> Path:
    """A path from a config: absolute, relative to the working dir, or to the data dir."""
    p = Path(path).expanduser()
    if p.is_absolute() or p.exists():
        return p
    return data_dir() / p


def _fingerprint(path: Path) -> list:
    files = [path] if path.is_file() else sorted(q for q in path.rglob("*") if q.is_file())
    return [(str(q.relative_to(path.parent)), q.stat().st_size, int(q.stat().st_mtime))
            for q in files]


def load_dataset(cfg: DataConfig, *, use_cache: bool = True) -> MultiDomainDataset:
    """Read (or reuse the cached build of) the dataset a config describes."""
    from crossrec.data import sources

    if cfg.prepared:
        return MultiDomainDataset.load(resolve_data_path(cfg.prepared))
    if cfg.format not in sources.READERS:
        raise ConfigError(f"data.format: unknown data format {cfg.format!r} (known: "
                          f"{', '.join(sorted(sources.READERS))}); {PREPARED_HINT}")
    if not cfg.path:
        raise ConfigError(f"data.path is empty: give the raw data path; {PREPARED_HINT}")
    path = resolve_data_path(cfg.path)
    if path.is_dir() and (is_dataset_dir(path) or cfg.format == "tabular"):
        what = ("a prepared dataset" if is_dataset_dir(path)
                else "a directory, and the tabular reader reads files")
        raise ConfigError(f"data.path {cfg.path}: {what}; {PREPARED_HINT}")
    if not path.exists():
        hint = sources.download_hint(cfg.format)
        raise DataError(
            f"data not found at {path} (data directory: {data_dir()}; set CROSSREC_DATA to "
            f"change it).{(' ' + hint) if hint else ''}"
        )
    key = hashlib.sha256(json.dumps(
        [FORMAT_VERSION, cfg.model_dump(), _fingerprint(path)], sort_keys=True, default=str
    ).encode()).hexdigest()[:16]
    cached = cache_dir() / "datasets" / f"{cfg.format}-{key}"
    if use_cache and (cached / "meta.json").exists():
        return MultiDomainDataset.load(cached)
    builder = sources.read(cfg.format, path, **cfg.options)
    dataset = builder.build(k_core=cfg.k_core, domains=cfg.domains or None)
    if use_cache:
        dataset.save(cached)
    return dataset


def make_split(dataset: MultiDomainDataset, cfg: SplitConfig, seed: int = 0) -> splits.Split:
    """Build the split a config asks for (seeded where the protocol draws anything), few-shot
    when ``n_shots`` or ``shot_pool`` is set. A predefined split without ``target`` (next-item
    evaluation) takes the domain with the most test rows as the models' target role."""
    if cfg.target is None:
        cfg = cfg.model_copy(update={"target": busiest_test_domain(dataset)})
    split = _base_split(dataset, cfg, seed)
    if isinstance(cfg, ColdStartUsersSplit | PredefinedSplit) and (cfg.n_shots or cfg.shot_pool):
        split = splits.few_shot(split, cfg.n_shots, cfg.shot_pool)
    return split


def _base_split(dataset: MultiDomainDataset, cfg: SplitConfig, seed: int) -> splits.Split:
    if isinstance(cfg, ColdStartUsersSplit):
        source = cfg.source or [d for d in dataset.domains if d != cfg.target]
        return splits.cold_start_users(dataset, source, cfg.target, cfg.ratio,
                                       valid_share=cfg.valid_share, seed=cfg.split_seed(seed))
    if isinstance(cfg, ColdStartItemsSplit):
        return splits.cold_start_items(dataset, cfg.target, cfg.ratio, valid_share=cfg.valid_share,
                                       seed=cfg.split_seed(seed))
    if isinstance(cfg, NewDomainSplit):
        return splits.new_domain(dataset, cfg.target, cfg.source or None,
                                 valid_share=cfg.valid_share, seed=cfg.split_seed(seed))
    if isinstance(cfg, LeaveOneOutSplit):
        return splits.leave_one_out(dataset, cfg.target, min_interactions=cfg.min_interactions)
    if isinstance(cfg, TemporalSplit):
        return splits.temporal(dataset, cfg.target, valid_frac=cfg.valid_frac,
                               test_frac=cfg.test_frac)
    return splits.predefined(dataset, cfg.target)


def busiest_test_domain(dataset: MultiDomainDataset) -> str:
    """The domain with the most ``part == "test"`` rows (the first domain on a tie or without
    a predefined split)."""
    inter = dataset.interactions
    if "part" not in inter.columns:
        return dataset.domains[0]
    test = inter["domain"].to_numpy()[inter["part"].astype(str).to_numpy() == "test"]
    counts = [int((test == i).sum()) for i in range(len(dataset.domains))]
    return dataset.domains[counts.index(max(counts))]
